# The numpy-pickle reader and writer. The interop test (numpy writes, cumulus
# reads, and back) needs a python3 with numpy; without one it exits with the
# skip code.
cumulus_add_test(pickle_test ${CMAKE_CURRENT_LIST_DIR}/pickle_test.cpp LABELS cpu)
cumulus_add_test(pickle_interop_test ${CMAKE_CURRENT_LIST_DIR}/pickle_interop_test.cpp LABELS interop TIMEOUT 600)
