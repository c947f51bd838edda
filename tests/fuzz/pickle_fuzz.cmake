# libFuzzer target for the pickle reader: built only by clang, and only where
# -fsanitize=fuzzer links, as fuzz.cmake does for idx_fuzz.
# Run: ./pickle_fuzz [-max_total_time=180] [corpus_dir]
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
    set(pickle_fuzz_flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
    add_executable(pickle_fuzz ${CMAKE_CURRENT_LIST_DIR}/pickle_fuzz.cpp)
    # Not cumulus_dev_flags: its CUMULUS_SANITIZE flags may clash with these.
    target_link_libraries(pickle_fuzz PRIVATE cumulus::cumulus)
    target_compile_options(pickle_fuzz PRIVATE ${pickle_fuzz_flags} -Wall -Wextra)
    target_link_options(pickle_fuzz PRIVATE ${pickle_fuzz_flags})
    # A short smoke run, seeded with the real pickles when they are there.
    set(seed_dir ${CMAKE_CURRENT_BINARY_DIR}/pickle_fuzz_corpus)
    file(MAKE_DIRECTORY ${seed_dir})
    foreach(seed sample_weight.pkl deep_convnet_params.2022.pkl)
      set(seed_src ${PROJECT_SOURCE_DIR}/../shared/data/mnist-pkl/${seed})
      if(EXISTS ${seed_src})
        file(COPY ${seed_src} DESTINATION ${seed_dir} NO_SOURCE_PERMISSIONS)
      endif()
    endforeach()
    add_test(NAME pickle_fuzz_smoke COMMAND pickle_fuzz -runs=20000 -seed=1 -max_len=8192 ${seed_dir})
    set_tests_properties(pickle_fuzz_smoke PROPERTIES LABELS "cpu;fuzz" TIMEOUT 300)
  endif()
endif()
