# CPU GEMM throughput on the MNIST MLP shapes and squares; compared with
# cblas_sgemm only when a CBLAS happens to be installed (never required).
cumulus_add_program(cpu_gemm_bench SOURCES ${CMAKE_CURRENT_LIST_DIR}/cpu_gemm_bench.cpp LIBS benchmark::benchmark)
find_path(CUMULUS_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas)
find_library(CUMULUS_CBLAS_LIBRARY NAMES openblas cblas blis)
if(CUMULUS_CBLAS_INCLUDE_DIR AND CUMULUS_CBLAS_LIBRARY)
  target_compile_definitions(cpu_gemm_bench PRIVATE CUMULUS_BENCH_CBLAS=1)
  target_include_directories(cpu_gemm_bench PRIVATE ${CUMULUS_CBLAS_INCLUDE_DIR})
  target_link_libraries(cpu_gemm_bench PRIVATE ${CUMULUS_CBLAS_LIBRARY})
endif()
