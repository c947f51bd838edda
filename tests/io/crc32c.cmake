cumulus_add_test(crc32c_test ${CMAKE_CURRENT_LIST_DIR}/crc32c_test.cpp LABELS cpu)
cumulus_add_test(protobuf_test ${CMAKE_CURRENT_LIST_DIR}/protobuf_test.cpp LABELS cpu)
