# MNIST adapters (data/mnist_sources.hpp), and the data tools run as programs:
# cumulus-records round trips, cumulus-data inspect; the interop test compares
# both with numpy and TensorFlow (tests/data/inspect_ref.py; skips with 77
# without them).
cumulus_add_test(mnist_sources_test ${CMAKE_CURRENT_LIST_DIR}/mnist_sources_test.cpp LABELS cpu)
if(CUMULUS_BUILD_TOOLS)
  foreach(t data_tools_test data_tools_interop_test)
    if(t STREQUAL "data_tools_test")
      cumulus_add_test(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp LABELS cpu TIMEOUT 300)
    else()
      cumulus_add_test(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp LABELS interop TIMEOUT 600)
    endif()
    target_compile_definitions(${t} PRIVATE CUMULUS_RECORDS_BIN="$<TARGET_FILE:cumulus_records>"
                                            CUMULUS_DATA_BIN="$<TARGET_FILE:cumulus_data>")
    add_dependencies(${t} cumulus_records cumulus_data)
  endforeach()
endif()
