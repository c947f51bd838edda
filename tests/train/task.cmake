# Trainer-task conventions (include/cumulus/train/task.hpp, hypertune.hpp, io/tfevents.hpp).
find_package(CLI11 REQUIRED)
cumulus_add_test(train_task_test ${CMAKE_CURRENT_LIST_DIR}/task_test.cpp LABELS cpu)
target_link_libraries(train_task_test PRIVATE CLI11::CLI11)
cumulus_add_test(train_checkpoint_manager_test ${CMAKE_CURRENT_LIST_DIR}/checkpoint_manager_test.cpp LABELS cpu)
# Against TensorBoard and cloudml-hypertune from pip (tests/train/trainer_interop.py, python from
# tools/setup-venv); skips (77) without the venv, fails instead when CI=true.
cumulus_add_test(train_interop_test ${CMAKE_CURRENT_LIST_DIR}/trainer_interop_test.cpp LABELS cpu interop TIMEOUT 300)
# The trainer programs as jobs on gs:// against the GCS emulator (label interop; skips without the venv,
# fails under CI=true): mnist_mlp and, on TFRecords that cumulus-records writes into the bucket, mnist_cnn.
if(TARGET cumulus::gcs AND CUMULUS_BUILD_EXAMPLES AND CUMULUS_BUILD_TOOLS)
  cumulus_add_test(train_job_gcs_interop_test ${CMAKE_CURRENT_LIST_DIR}/job_gcs_interop_test.cpp
    LABELS cpu interop TIMEOUT 900)
  target_link_libraries(train_job_gcs_interop_test PRIVATE cumulus::gcs)
  target_compile_definitions(train_job_gcs_interop_test PRIVATE CUMULUS_MNIST_MLP="$<TARGET_FILE:mnist_mlp>"
    CUMULUS_MNIST_CNN="$<TARGET_FILE:mnist_cnn>" CUMULUS_RECORDS="$<TARGET_FILE:cumulus_records>")
  add_dependencies(train_job_gcs_interop_test mnist_mlp mnist_cnn cumulus_records)
endif()
