find_package(CLI11 REQUIRED)
# mnist_mlp_cuda (built by nvcc when CUDA is found) trains on the GPU with --device cuda / auto.
cumulus_add_program(mnist_mlp SOURCES ${CMAKE_CURRENT_LIST_DIR}/mnist_mlp.cpp CUDA LIBS CLI11::CLI11 cumulus_example_data)
