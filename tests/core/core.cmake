# Core: shapes, devices, tensors, allocation, element types, RNG, thread pool, errors.
cumulus_add_test(core_shape_device_test ${CMAKE_CURRENT_LIST_DIR}/shape_device_test.cpp LABELS cpu)
cumulus_add_test(core_tensor_test ${CMAKE_CURRENT_LIST_DIR}/tensor_test.cpp LABELS cpu)
cumulus_add_test(core_dtype_test ${CMAKE_CURRENT_LIST_DIR}/dtype_test.cpp LABELS cpu)
cumulus_add_test(core_random_test ${CMAKE_CURRENT_LIST_DIR}/random_test.cpp LABELS cpu)
cumulus_add_test(core_parallel_test ${CMAKE_CURRENT_LIST_DIR}/parallel_test.cpp LABELS cpu)
cumulus_add_test(core_error_test ${CMAKE_CURRENT_LIST_DIR}/error_test.cpp LABELS cpu)
