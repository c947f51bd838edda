# Fuzz targets, one per parser (NAME.cpp defines LLVMFuzzerTestOneInput).
# Every compiler builds NAME_replay (replay.cpp's main) with the build's own
# flags, so the sanitizer build of tools/test runs it under ASan + UBSan: the
# committed corpus (tests/fuzz/corpus/DIR, libFuzzer-merged from tools/fuzz
# runs), the seeds, and 100 fixed-seed mutants of each. Where clang's
# -fsanitize=fuzzer links (not g++, not AppleClang) NAME itself is built too,
# with a short coverage-guided ctest smoke run.
# Run one for longer: tools/fuzz, or ./pickle_fuzz -max_total_time=600 [corpus_dir]
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
# the corpus starts with tests/fuzz/seeds/<dir>/*, tests/fuzz/corpus/<dir>/*
# and the named files of ../shared/data.
function(cumulus_add_fuzzer name)
  cmake_parse_arguments(F "" "SEED_DIR" "SEEDS" ${ARGN})
  set(here ${CMAKE_CURRENT_FUNCTION_LIST_DIR})
  add_executable(${name}_replay ${here}/${name}.cpp ${here}/replay.cpp)
  target_link_libraries(${name}_replay PRIVATE cumulus::cumulus cumulus_dev_flags cumulus_test_flags)
  add_test(NAME ${name}_replay
    COMMAND ${name}_replay --mutations 100 --crash-dir ${CMAKE_CURRENT_BINARY_DIR}
            ${here}/corpus/${F_SEED_DIR} ${here}/seeds/${F_SEED_DIR})
  set_tests_properties(${name}_replay PROPERTIES LABELS "cpu;fuzz" TIMEOUT 300)
  if(NOT CUMULUS_HAS_LIBFUZZER)
    return()
  endif()
  set(fuzz_flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
  add_executable(${name} ${here}/${name}.cpp)
  # Not cumulus_dev_flags: its CUMULUS_SANITIZE flags may clash with these.
  target_link_libraries(${name} PRIVATE cumulus::cumulus)
  target_compile_options(${name} PRIVATE ${fuzz_flags} -Wall -Wextra)
  target_link_options(${name} PRIVATE ${fuzz_flags})
  set(seed_dir ${CMAKE_CURRENT_BINARY_DIR}/${name}_corpus)
  file(MAKE_DIRECTORY ${seed_dir})
  file(GLOB own_seeds ${here}/seeds/${F_SEED_DIR}/* ${here}/corpus/${F_SEED_DIR}/*)
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

cumulus_add_fuzzer(idx_fuzz SEED_DIR idx SEEDS mnist/t10k-labels-idx1-ubyte.gz)
cumulus_add_fuzzer(pickle_fuzz SEED_DIR pickle SEEDS mnist-pkl/sample_weight.pkl mnist-pkl/deep_convnet_params.2022.pkl)
cumulus_add_fuzzer(tfrecord_fuzz SEED_DIR tfrecord
  SEEDS tfrecord/tiny_one_record.tfrecords tfrecord/dialog_validation_3rec.tfrecords)
cumulus_add_fuzzer(example_fuzz SEED_DIR example
  SEEDS tfrecord/tiny_one_record.tfrecords tfrecord/dialog_validation_3rec.tfrecords)
