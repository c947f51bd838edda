# cumulus-data inspect FILE: one JSON document describing an IDX, pickle or TFRecord file.
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
cumulus_add_program(cumulus_data SOURCES ${CMAKE_CURRENT_LIST_DIR}/cumulus_data.cpp
  LIBS CLI11::CLI11 nlohmann_json::nlohmann_json GCS)
