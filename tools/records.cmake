# cumulus-records: MNIST (IDX or pickle) -> the tutorials' train/validation/test.tfrecords.
find_package(CLI11 REQUIRED)
cumulus_add_program(cumulus_records SOURCES ${CMAKE_CURRENT_LIST_DIR}/cumulus_records.cpp LIBS CLI11::CLI11 GCS)
