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
