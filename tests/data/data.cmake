cumulus_add_test(idx_test ${CMAKE_CURRENT_LIST_DIR}/idx_test.cpp LABELS cpu)
cumulus_add_test(mnist_test ${CMAKE_CURRENT_LIST_DIR}/mnist_test.cpp LABELS cpu)
