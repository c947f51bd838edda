cumulus_add_test(train_fit_test ${CMAKE_CURRENT_LIST_DIR}/fit_test.cpp LABELS cpu)
