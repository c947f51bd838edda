# Conv2D / MaxPool2D / AvgPool2D layers: gradient checks, Keras shapes and summary, a CNN that learns.
cumulus_add_test(nn_conv_test ${CMAKE_CURRENT_LIST_DIR}/conv_test.cpp LABELS cpu)
