find_package(CLI11 REQUIRED)
cumulus_add_program(mnist_mlp SOURCES ${CMAKE_CURRENT_LIST_DIR}/mnist_mlp.cpp LIBS CLI11::CLI11)
