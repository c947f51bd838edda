cumulus_add_test(io_checkpoint_test ${CMAKE_CURRENT_LIST_DIR}/checkpoint_test.cpp LABELS cpu)
