# The CNN trainers: the distributed-MNIST tutorial model and a Fashion-MNIST CNN.
# With CUDA (and CUMULUS_CUDA_TRAINERS) also mnist_cnn_cuda and fashion_mnist_cnn_cuda.
find_package(CLI11 REQUIRED)
set(cnn_cuda "")
if(CUMULUS_CUDA_TRAINERS)
  set(cnn_cuda CUDA)
endif()
cumulus_add_program(mnist_cnn SOURCES ${CMAKE_CURRENT_LIST_DIR}/mnist_cnn.cpp LIBS CLI11::CLI11 cumulus_example_data ${cnn_cuda})
cumulus_add_program(fashion_mnist_cnn SOURCES ${CMAKE_CURRENT_LIST_DIR}/fashion_mnist_cnn.cpp LIBS CLI11::CLI11 cumulus_example_data
                    ${cnn_cuda})
# The Fashion-MNIST trainer end to end on the CPU: 30 steps on the Debian
# package's data (tools/setup installs it), an evaluation of the whole test
# split and the export. A second run in the same build resumes at step 30
# and only evaluates.
if(CUMULUS_BUILD_TESTS)
  add_test(NAME fashion_mnist_cnn_smoke COMMAND fashion_mnist_cnn --device cpu --train-steps 30 --eval-every 0
           --job-dir ${CMAKE_CURRENT_BINARY_DIR}/fashion_mnist_cnn_smoke)
  set_tests_properties(fashion_mnist_cnn_smoke PROPERTIES LABELS cpu TIMEOUT 300
                       PASS_REGULAR_EXPRESSION "Test accuracy: 0\\.[5-9]")
endif()
