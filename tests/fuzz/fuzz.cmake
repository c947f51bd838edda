# libFuzzer targets: built only by clang, and only where -fsanitize=fuzzer links
# (AppleClang and g++ have no libFuzzer). Run: ./idx_fuzz [-max_total_time=60] [corpus_dir]
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=fuzzer")
  check_cxx_source_compiles(
    "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }"
    CUMULUS_HAS_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(CUMULUS_HAS_LIBFUZZER)
    set(fuzz_flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
    add_executable(idx_fuzz ${CMAKE_CURRENT_LIST_DIR}/idx_fuzz.cpp)
    # Not cumulus_dev_flags: its CUMULUS_SANITIZE flags may clash with these.
    target_link_libraries(idx_fuzz PRIVATE cumulus::cumulus)
    target_compile_options(idx_fuzz PRIVATE ${fuzz_flags} -Wall -Wextra)
    target_link_options(idx_fuzz PRIVATE ${fuzz_flags})
    # A short smoke run, seeded with a real gzipped IDX file when there is one.
    set(seed_dir ${CMAKE_CURRENT_BINARY_DIR}/idx_fuzz_corpus)
    file(MAKE_DIRECTORY ${seed_dir})
    set(seed_src ${PROJECT_SOURCE_DIR}/../shared/data/mnist/t10k-labels-idx1-ubyte.gz)
    if(EXISTS ${seed_src})
      file(COPY ${seed_src} DESTINATION ${seed_dir} NO_SOURCE_PERMISSIONS)
    endif()
    add_test(NAME idx_fuzz_smoke COMMAND idx_fuzz -runs=20000 -seed=1 -max_len=8192 ${seed_dir})
    set_tests_properties(idx_fuzz_smoke PROPERTIES LABELS "cpu;fuzz" TIMEOUT 300)
  endif()
endif()
