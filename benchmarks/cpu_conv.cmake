# CPU convolution / pooling throughput at the CNN shapes (forward, backward-data, backward-filter).
cumulus_add_program(cpu_conv_bench SOURCES ${CMAKE_CURRENT_LIST_DIR}/cpu_conv_bench.cpp LIBS benchmark::benchmark)
