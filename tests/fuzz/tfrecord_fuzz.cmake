# libFuzzer targets for TFRecord framing (tfrecord_fuzz) and tf.train.Example
# parsing (example_fuzz), built as tests/fuzz/fuzz.cmake builds idx_fuzz:
# clang only, where -fsanitize=fuzzer links. Run: ./tfrecord_fuzz [-max_total_time=60] [corpus_dir]
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
    # Seeds: the small real record files (both targets read record files as they are).
    set(seed_files ${PROJECT_SOURCE_DIR}/../shared/data/tfrecord/tiny_one_record.tfrecords
                   ${PROJECT_SOURCE_DIR}/../shared/data/tfrecord/dialog_validation_3rec.tfrecords)
    foreach(target tfrecord_fuzz example_fuzz)
      add_executable(${target} ${CMAKE_CURRENT_LIST_DIR}/${target}.cpp)
      # Not cumulus_dev_flags: its CUMULUS_SANITIZE flags may clash with these.
      target_link_libraries(${target} PRIVATE cumulus::cumulus)
      target_compile_options(${target} PRIVATE ${fuzz_flags} -Wall -Wextra)
      target_link_options(${target} PRIVATE ${fuzz_flags})
      set(seed_dir ${CMAKE_CURRENT_BINARY_DIR}/${target}_corpus)
      file(MAKE_DIRECTORY ${seed_dir})
      foreach(seed IN LISTS seed_files)
        if(EXISTS ${seed})
          file(COPY ${seed} DESTINATION ${seed_dir} NO_SOURCE_PERMISSIONS)
        endif()
      endforeach()
      add_test(NAME ${target}_smoke COMMAND ${target} -runs=20000 -seed=1 -max_len=8192 ${seed_dir})
      set_tests_properties(${target}_smoke PROPERTIES LABELS "cpu;fuzz" TIMEOUT 300)
    endforeach()
  endif()
endif()
