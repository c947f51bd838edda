# The trainers' data loading (pickle, TFRecord, IDX, gs://), compiled once and linked into each trainer
# (examples/data_sources.hpp). PUBLIC: the trainers get cumulus::gcs's libcurl and OpenSSL with it.
add_library(cumulus_example_data OBJECT ${CMAKE_CURRENT_LIST_DIR}/data_sources.cpp)
target_link_libraries(cumulus_example_data PUBLIC cumulus::cumulus cumulus_dev_flags)
if(CUMULUS_HAS_GCS)
  target_link_libraries(cumulus_example_data PUBLIC cumulus::gcs)
endif()
