# CPU convolution and pooling: TensorFlow's padding arithmetic and values, fast path vs the double reference.
cumulus_add_test(cpu_conv_test ${CMAKE_CURRENT_LIST_DIR}/conv_test.cpp LABELS cpu)
cumulus_add_test(cpu_pool_test ${CMAKE_CURRENT_LIST_DIR}/pool_test.cpp LABELS cpu)
