# The CUDA kernels next to cuBLAS and the bandwidth floor (built by nvcc only
# when CUDA is available; tools/gpu-check runs it on a GPU machine).
if(CUMULUS_HAS_CUDA AND NOT CUMULUS_SANITIZE)
  add_executable(cuda_bench ${CMAKE_CURRENT_LIST_DIR}/cuda_bench.cu)
  target_compile_definitions(cuda_bench PRIVATE CUMULUS_WITH_CUDA=1)
  target_compile_options(cuda_bench PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${CUMULUS_NVCC_OPTIONS}>")
  set_target_properties(cuda_bench PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  target_link_libraries(cuda_bench PRIVATE cumulus::cumulus cumulus_dev_flags CUDA::cudart CUDA::cublas
                        benchmark::benchmark)
endif()
# The conv and pool kernels next to cuDNN, and a mnist_cnn epoch (needs cuDNN's headers and library).
if(CUMULUS_HAS_CUDA AND NOT CUMULUS_SANITIZE AND TARGET cumulus_cudnn_ref)
  add_executable(cuda_conv_bench ${CMAKE_CURRENT_LIST_DIR}/cuda_conv_bench.cu)
  target_compile_definitions(cuda_conv_bench PRIVATE CUMULUS_WITH_CUDA=1)
  target_compile_options(cuda_conv_bench PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${CUMULUS_NVCC_OPTIONS}>")
  set_target_properties(cuda_conv_bench PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  target_link_libraries(cuda_conv_bench PRIVATE cumulus::cumulus cumulus_dev_flags CUDA::cudart cumulus_cudnn_ref
                        benchmark::benchmark)
endif()
