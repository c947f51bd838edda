# The CUDA tests on the CPU: tests/cuda/*.cu built by g++ against tests/emu,
# a functional emulation of the CUDA runtime (threads as fibers, barriers
# and warp shuffles, launch checks, stream capture and graph replay; see
# tests/emu/include/cuemu.hpp). Every kernel in kernels/cumulus/cuda/ then
# runs and is checked against the CPU on a machine without a GPU; that is no
# substitute for tools/gpu-check (no real concurrency, memory model, timing
# or compute-sanitizer), but logic errors, out-of-tile indexing, missing or
# divergent barriers and capture mistakes fail here. Label cuda-emu.
# In a sanitized build (tools/test's build-asan/) the same tests run under
# AddressSanitizer + UBSan, which the emulation tells of its fiber switches
# and of the caching allocator's block ends: a kernel that reads or writes
# out of bounds, or a misaligned vector access, fails there, as under
# compute-sanitizer's memcheck. There they also run with their threads
# (and blocks) in reverse order (CUEMU_THREAD_ORDER), so that a missing
# barrier fails in one of the two builds whichever thread writes first.
option(CUMULUS_CUDA_EMULATION "Build and run the CUDA tests on the CPU emulation of CUDA (tests/emu)" ON)
find_package(Python3 COMPONENTS Interpreter QUIET)
# The fibers are announced to AddressSanitizer only: not under other sanitizers (TSan, MSan).
set(emu_sanitizers_ok TRUE)
if(CUMULUS_SANITIZE AND NOT CUMULUS_SANITIZE MATCHES "^(address|undefined)(,(address|undefined))?$")
  set(emu_sanitizers_ok FALSE)
endif()
if(CUMULUS_CUDA_EMULATION AND emu_sanitizers_ok AND Python3_Interpreter_FOUND
   AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(emu_dir ${CMAKE_CURRENT_BINARY_DIR}/emu-src)
  file(GLOB emu_kernels CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/cumulus/cuda/*.cuh)
  file(GLOB emu_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/../cuda/*.cu ${CMAKE_CURRENT_LIST_DIR}/../cuda/*.hpp)
  set(emu_outputs "")
  foreach(f IN LISTS emu_kernels)
    get_filename_component(n ${f} NAME)
    list(APPEND emu_outputs ${emu_dir}/cumulus/cuda/${n})
  endforeach()
  foreach(f IN LISTS emu_tests)
    get_filename_component(n ${f} NAME_WE)
    get_filename_component(e ${f} EXT)
    if(e STREQUAL ".cu")
      list(APPEND emu_outputs ${emu_dir}/tests/${n}.cpp)
    else()
      list(APPEND emu_outputs ${emu_dir}/tests/${n}${e})
    endif()
  endforeach()
  # cuda_bench too (a smoke run of it, below), when Google Benchmark is there.
  set(emu_bench_sources ${PROJECT_SOURCE_DIR}/benchmarks/cuda_bench.cu ${PROJECT_SOURCE_DIR}/benchmarks/cuda_bench_util.hpp)
  find_package(benchmark QUIET)
  set(emu_bench_outputs "")
  if(CUMULUS_BUILD_BENCHMARKS AND benchmark_FOUND)
    set(emu_bench_outputs ${emu_dir}/benchmarks/cuda_bench.cpp ${emu_dir}/benchmarks/cuda_bench_util.hpp)
  endif()
  set(rewrite ${CMAKE_CURRENT_LIST_DIR}/rewrite.py)
  add_custom_command(OUTPUT ${emu_outputs} ${emu_bench_outputs}
    COMMAND ${Python3_EXECUTABLE} ${rewrite} ${emu_dir} ${PROJECT_SOURCE_DIR}/kernels ${emu_kernels}
    COMMAND ${Python3_EXECUTABLE} ${rewrite} ${emu_dir}/tests ${CMAKE_CURRENT_LIST_DIR}/../cuda ${emu_tests}
    COMMAND ${Python3_EXECUTABLE} ${rewrite} ${emu_dir}/benchmarks ${PROJECT_SOURCE_DIR}/benchmarks ${emu_bench_sources}
    DEPENDS ${rewrite} ${emu_kernels} ${emu_tests} ${emu_bench_sources}
    COMMENT "Rewriting the CUDA kernels' launches for the CPU emulation")
  add_custom_target(cuda_emu_sources DEPENDS ${emu_outputs} ${emu_bench_outputs})

  set(emu_tests_run "")
  foreach(t runtime_test allocator_test ops_vs_cpu_test training_test conv_vs_cpu_test)
    set(name cuda_emu_${t})
    add_executable(${name} ${emu_dir}/tests/${t}.cpp)
    add_dependencies(${name} cuda_emu_sources)
    # The rewritten kernels and the emulated runtime come before the real headers.
    target_include_directories(${name} BEFORE PRIVATE ${emu_dir} ${CMAKE_CURRENT_LIST_DIR}/include)
    target_compile_definitions(${name} PRIVATE __CUDACC__=1 CUMULUS_WITH_CUDA=1 CUMULUS_CUDA_EMULATION=1
      CUMULUS_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/../shared/data" CUMULUS_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
    # nvcc includes cuda_runtime.h in every .cu file; so does this.
    target_compile_options(${name} PRIVATE -include cuda_runtime.h -Wno-unknown-pragmas -Wno-sign-compare)
    target_link_libraries(${name} PRIVATE cumulus::cumulus cumulus_dev_flags cumulus_test_flags)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS "cuda-emu" SKIP_RETURN_CODE ${CUMULUS_SKIP_CODE} TIMEOUT 600)
    list(APPEND emu_tests_run ${name})
    if(CUMULUS_SANITIZE)
      # The emulated kernels at -O0 under ASan run the tests ~20x slower than Release.
      target_compile_options(${name} PRIVATE -O1)
    endif()
  endforeach()
  # The GPU benchmark program on the emulation: a few small cases of every
  # benchmark family run, and tools/gpu-summary makes its table from their
  # JSON, so neither meets a GPU untried. The times are the CPU's, and mean
  # nothing.
  if(emu_bench_outputs)
    add_executable(cuda_emu_bench ${emu_dir}/benchmarks/cuda_bench.cpp)
    add_dependencies(cuda_emu_bench cuda_emu_sources)
    target_include_directories(cuda_emu_bench BEFORE PRIVATE ${emu_dir} ${CMAKE_CURRENT_LIST_DIR}/include)
    target_compile_definitions(cuda_emu_bench PRIVATE __CUDACC__=1 CUMULUS_WITH_CUDA=1 CUMULUS_CUDA_EMULATION=1)
    target_compile_options(cuda_emu_bench PRIVATE -include cuda_runtime.h -Wno-unknown-pragmas -Wno-sign-compare)
    target_link_libraries(cuda_emu_bench PRIVATE cumulus::cumulus cumulus_dev_flags benchmark::benchmark)
    add_test(NAME cuda_emu_bench COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/bench_test.py
             $<TARGET_FILE:cuda_emu_bench> ${PROJECT_SOURCE_DIR}/tools/gpu-summary ${CMAKE_CURRENT_BINARY_DIR}/cuda_emu_bench.out)
    set_tests_properties(cuda_emu_bench PROPERTIES LABELS "cuda-emu" TIMEOUT 300)
  endif()
  # The emulation itself: barriers, shuffles, launch checks, capture and replay.
  cumulus_add_test(cuemu_test ${CMAKE_CURRENT_LIST_DIR}/cuemu_test.cpp LABELS cuda-emu cpu)
  target_include_directories(cuemu_test BEFORE PRIVATE ${CMAKE_CURRENT_LIST_DIR}/include)
  target_compile_options(cuemu_test PRIVATE -Wno-unknown-pragmas -Wno-sign-compare)
  # The sanitized build runs them with the threads in the other order.
  if(CUMULUS_SANITIZE)
    set_tests_properties(${emu_tests_run} cuemu_test PROPERTIES ENVIRONMENT CUEMU_THREAD_ORDER=reverse)
  endif()
elseif(CUMULUS_CUDA_EMULATION AND NOT emu_sanitizers_ok)
  message(STATUS "cumulus: the CUDA tests on the CPU emulation (cuda-emu) run under address and undefined only, "
                 "not -DCUMULUS_SANITIZE=${CUMULUS_SANITIZE}; not built")
elseif(CUMULUS_CUDA_EMULATION)
  message(STATUS "cumulus: the CUDA tests on the CPU emulation (cuda-emu) need python3 and g++ or clang++; not built")
endif()
