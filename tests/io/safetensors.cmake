# The interop case (a numpy reader/writer run with python3) is its own ctest entry, labelled interop too.
cumulus_add_test(safetensors_test ${CMAKE_CURRENT_LIST_DIR}/safetensors_test.cpp LABELS cpu
                 ARGS --test-case-exclude=*interop*)
add_test(NAME safetensors_interop_test COMMAND safetensors_test --test-case=*interop*)
set_tests_properties(safetensors_interop_test PROPERTIES LABELS "cpu;interop" SKIP_RETURN_CODE ${CUMULUS_SKIP_CODE})
