# CUDA runtime smoke test: built by nvcc whenever CUDA is available, so the
# core headers are compiled under nvcc in every CI run; it runs its kernel only
# where a device exists and otherwise exits with the skip code. Not in a
# sanitized build: nvcc code is not instrumented (as for cumulus_add_program).
if(CUMULUS_HAS_CUDA AND NOT CUMULUS_SANITIZE)
  add_executable(cuda_runtime_test ${CMAKE_CURRENT_LIST_DIR}/runtime_test.cu)
  target_compile_definitions(cuda_runtime_test PRIVATE CUMULUS_WITH_CUDA=1)
  target_compile_options(cuda_runtime_test PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
  set_target_properties(cuda_runtime_test PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  target_link_libraries(cuda_runtime_test PRIVATE cumulus::cumulus cumulus_dev_flags CUDA::cudart)
  add_test(NAME cuda_runtime_test COMMAND cuda_runtime_test)
  set_tests_properties(cuda_runtime_test PROPERTIES LABELS cuda SKIP_RETURN_CODE ${CUMULUS_SKIP_CODE})
endif()
