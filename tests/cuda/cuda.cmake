# The CUDA tests: plain mains built by nvcc whenever CUDA is available, so
# every kernel compiles in every CI run; each runs only where a device exists
# and otherwise exits with the skip code, saying why. Not in a sanitized
# build: nvcc code is not instrumented (as for cumulus_add_program).
if(CUMULUS_HAS_CUDA AND NOT CUMULUS_SANITIZE)
  set(cumulus_cuda_test_definitions CUMULUS_WITH_CUDA=1 CUMULUS_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/../shared/data"
      CUMULUS_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  # cumulus_add_cuda_test(NAME SOURCE [LIBS ...])
  function(cumulus_add_cuda_test name source)
    cmake_parse_arguments(T "" "" "LIBS" ${ARGN})
    add_executable(${name} ${source})
    target_compile_definitions(${name} PRIVATE ${cumulus_cuda_test_definitions})
    target_compile_options(${name} PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${CUMULUS_NVCC_OPTIONS}>")
    set_target_properties(${name} PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
    target_link_libraries(${name} PRIVATE cumulus::cumulus cumulus_dev_flags cumulus_test_flags CUDA::cudart ${T_LIBS})
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS cuda SKIP_RETURN_CODE ${CUMULUS_SKIP_CODE} TIMEOUT 600)
  endfunction()

  cumulus_add_cuda_test(cuda_runtime_test ${CMAKE_CURRENT_LIST_DIR}/runtime_test.cu)
  cumulus_add_cuda_test(cuda_ops_vs_cpu_test ${CMAKE_CURRENT_LIST_DIR}/ops_vs_cpu_test.cu LIBS CUDA::cublas)
  cumulus_add_cuda_test(cuda_training_test ${CMAKE_CURRENT_LIST_DIR}/training_test.cu)
  cumulus_add_cuda_test(cuda_allocator_test ${CMAKE_CURRENT_LIST_DIR}/allocator_test.cu)
  # Convolution and pooling against the CPU, and against cuDNN where it is installed.
  if(TARGET cumulus_cudnn_ref)
    cumulus_add_cuda_test(cuda_conv_vs_cpu_test ${CMAKE_CURRENT_LIST_DIR}/conv_vs_cpu_test.cu LIBS cumulus_cudnn_ref)
  else()
    cumulus_add_cuda_test(cuda_conv_vs_cpu_test ${CMAKE_CURRENT_LIST_DIR}/conv_vs_cpu_test.cu)
  endif()

  # What ptxas makes of every kernel the tests above launch, for sm_90 with
  # the GPU build's flags (no GPU needed; about 50 s of CPU): no spills or
  # stack frames, launch bounds that hold, every kernel of
  # kernels/cumulus/cuda/ compiled by some test. Prints a register / shared
  # memory / blocks-per-SM table. Label cuda-static: it runs without a GPU.
  # The nvcc flags come from here, one per line, in kernel_resources.flags
  # (also for running the script by hand, e.g. with --cuobjdump).
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND AND "90" IN_LIST CMAKE_CUDA_ARCHITECTURES)
    set(std_flag "${CMAKE_CUDA20_STANDARD_COMPILE_OPTION}")
    if(NOT std_flag)
      set(std_flag -std=c++20)
    endif()
    set(flags ${std_flag} ${CUMULUS_CUDA_RELEASE_FLAGS} ${CUMULUS_NVCC_OPTIONS})
    foreach(d IN LISTS cumulus_cuda_test_definitions)
      list(APPEND flags "-D${d}")
    endforeach()
    list(JOIN flags "\n" flags_text)
    file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/kernel_resources.flags "${flags_text}\n")
    file(GLOB cuda_test_sources ${CMAKE_CURRENT_LIST_DIR}/*.cu)
    add_test(NAME cuda_kernel_resources
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/kernel_resources.py --nvcc ${CMAKE_CUDA_COMPILER}
                     --flags-file ${CMAKE_CURRENT_BINARY_DIR}/kernel_resources.flags --root ${PROJECT_SOURCE_DIR}
                     --out ${CMAKE_CURRENT_BINARY_DIR}/kernel_resources --jobs 2 ${cuda_test_sources})
    set_tests_properties(cuda_kernel_resources PROPERTIES LABELS cuda-static TIMEOUT 600)
  endif()
endif()
