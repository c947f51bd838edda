cumulus_add_test(tfrecord_test ${CMAKE_CURRENT_LIST_DIR}/tfrecord_test.cpp LABELS cpu)
cumulus_add_test(example_test ${CMAKE_CURRENT_LIST_DIR}/example_test.cpp LABELS cpu)
# Against real TensorFlow (tests/data/tfrecord_gen.py, python from tools/setup-venv); skips (77) without it.
cumulus_add_test(tfrecord_interop_test ${CMAKE_CURRENT_LIST_DIR}/tfrecord_interop_test.cpp LABELS cpu interop TIMEOUT 300)
