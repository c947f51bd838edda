# cumulus-gcs (run through the script tools/cumulus-gcs): needs libcurl and OpenSSL (cumulus::gcs).
if(TARGET cumulus::gcs)
  cumulus_add_program(cumulus_gcs SOURCES ${CMAKE_CURRENT_LIST_DIR}/cumulus_gcs.cpp LIBS cumulus::gcs)
else()
  message(STATUS "cumulus: cumulus-gcs not built (libcurl, OpenSSL or nlohmann-json missing: run tools/setup)")
endif()
