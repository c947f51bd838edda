# CPU GEMM: every transpose, epilogue and instruction set against a double reference.
cumulus_add_test(cpu_gemm_test ${CMAKE_CURRENT_LIST_DIR}/gemm_test.cpp LABELS cpu)
