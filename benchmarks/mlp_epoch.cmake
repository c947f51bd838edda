cumulus_add_program(mlp_epoch_bench SOURCES ${CMAKE_CURRENT_LIST_DIR}/mlp_epoch_bench.cpp LIBS benchmark::benchmark)
