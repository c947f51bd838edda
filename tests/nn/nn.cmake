cumulus_add_test(nn_gradcheck_test ${CMAKE_CURRENT_LIST_DIR}/gradcheck_test.cpp LABELS cpu)
cumulus_add_test(nn_sequential_test ${CMAKE_CURRENT_LIST_DIR}/sequential_test.cpp LABELS cpu)
