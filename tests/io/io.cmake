cumulus_add_test(gzip_test ${CMAKE_CURRENT_LIST_DIR}/gzip_test.cpp LABELS cpu)
