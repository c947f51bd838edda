# libFuzzer targets, one per parser: built only by clang, and only where
# -fsanitize=fuzzer links (AppleClang and g++ have no libFuzzer). Each also
# gets a short ctest smoke run seeded with real files from ../shared/data.
# Run one for longer: ./pickle_fuzz -max_total_time=600 [corpus_dir]
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=fuzzer")
  check_cxx_source_compiles(
    "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }"
    CUMULUS_HAS_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
endif()

# cumulus_add_fuzzer(NAME SEED_DIR dir SEEDS file...): NAME.cpp in this folder;
# the corpus starts with tests/fuzz/seeds/<dir>/* and the named files of ../shared/data.
function(cumulus_add_fuzzer name)
  cmake_parse_arguments(F "" "SEED_DIR" "SEEDS" ${ARGN})
  set(fuzz_flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
  add_executable(${name} ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/${name}.cpp)
  # Not cumulus_dev_flags: its CUMULUS_SANITIZE flags may clash with these.
  target_link_libraries(${name} PRIVATE cumulus::cumulus)
  target_compile_options(${name} PRIVATE ${fuzz_flags} -Wall -Wextra)
  target_link_options(${name} PRIVATE ${fuzz_flags})
  set(seed_dir ${CMAKE_CURRENT_BINARY_DIR}/${name}_corpus)
  file(MAKE_DIRECTORY ${seed_dir})
  file(GLOB own_seeds ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/seeds/${F_SEED_DIR}/*)
  list(FILTER own_seeds EXCLUDE REGEX "README")
  if(own_seeds)
    file(COPY ${own_seeds} DESTINATION ${seed_dir} NO_SOURCE_PERMISSIONS)
  endif()
  foreach(seed IN LISTS F_SEEDS)
    set(src ${PROJECT_SOURCE_DIR}/../shared/data/${seed})
    if(EXISTS ${src})
      file(COPY ${src} DESTINATION ${seed_dir} NO_SOURCE_PERMISSIONS)
    endif()
  endforeach()
  add_test(NAME ${name}_smoke COMMAND ${name} -runs=20000 -seed=1 -max_len=16384 ${seed_dir})
  set_tests_properties(${name}_smoke PROPERTIES LABELS "cpu;fuzz" TIMEOUT 300)
endfunction()

if(CUMULUS_HAS_LIBFUZZER)
  cumulus_add_fuzzer(idx_fuzz SEED_DIR idx SEEDS mnist/t10k-labels-idx1-ubyte.gz)
  cumulus_add_fuzzer(pickle_fuzz SEED_DIR pickle SEEDS mnist-pkl/sample_weight.pkl mnist-pkl/deep_convnet_params.2022.pkl)
  cumulus_add_fuzzer(tfrecord_fuzz SEED_DIR tfrecord
    SEEDS tfrecord/tiny_one_record.tfrecords tfrecord/dialog_validation_3rec.tfrecords)
  cumulus_add_fuzzer(example_fuzz SEED_DIR example
    SEEDS tfrecord/tiny_one_record.tfrecords tfrecord/dialog_validation_3rec.tfrecords)
endif()
