// Everything in cumulus, for programs that want it all. Tests and library
// headers include only what they use. Not here: gs:// support
// (<cumulus/io/gcs.hpp>, which needs libcurl and OpenSSL: link cumulus::gcs),
// the CLI11 trainer flags (<cumulus/train/task_flags.hpp>) and the CUDA
// backend (<cumulus/cuda.hpp>).
#pragma once

#include <cumulus/core/allocator.hpp>
#include <cumulus/core/config.hpp>
#include <cumulus/core/device.hpp>
#include <cumulus/core/dtype.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/op_types.hpp>
#include <cumulus/core/parallel.hpp>
#include <cumulus/core/philox.hpp>
#include <cumulus/core/random.hpp>
#include <cumulus/core/shape.hpp>
#include <cumulus/core/tensor.hpp>

#include <cumulus/ops/conv.hpp>
#include <cumulus/ops/data.hpp>
#include <cumulus/ops/dropout.hpp>
#include <cumulus/ops/elementwise.hpp>
#include <cumulus/ops/gemm.hpp>
#include <cumulus/ops/optimizer.hpp>
#include <cumulus/ops/pool.hpp>
#include <cumulus/ops/reduce.hpp>
#include <cumulus/ops/softmax_xent.hpp>

#include <cumulus/nn/activation.hpp>
#include <cumulus/nn/conv2d.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/init.hpp>
#include <cumulus/nn/layer.hpp>
#include <cumulus/nn/loss.hpp>
#include <cumulus/nn/pool.hpp>
#include <cumulus/nn/sequential.hpp>

#include <cumulus/optim/adam.hpp>
#include <cumulus/optim/optimizer.hpp>
#include <cumulus/optim/rmsprop.hpp>
#include <cumulus/optim/sgd.hpp>

#include <cumulus/data/dataset.hpp>
#include <cumulus/data/example.hpp>
#include <cumulus/data/idx.hpp>
#include <cumulus/data/mnist.hpp>
#include <cumulus/data/mnist_sources.hpp>
#include <cumulus/data/pickle.hpp>
#include <cumulus/data/tfrecord.hpp>

#include <cumulus/io/checkpoint.hpp>
#include <cumulus/io/crc32c.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/fs.hpp>
#include <cumulus/io/fs_registry.hpp>
#include <cumulus/io/gzip.hpp>
#include <cumulus/io/protobuf.hpp>
#include <cumulus/io/safetensors.hpp>
#include <cumulus/io/tfevents.hpp>
#include <cumulus/io/zstream.hpp>

#include <cumulus/train/callbacks.hpp>
#include <cumulus/train/fit.hpp>
#include <cumulus/train/checkpoint_manager.hpp>
#include <cumulus/train/export.hpp>
#include <cumulus/train/hypertune.hpp>
#include <cumulus/train/progress.hpp>
#include <cumulus/train/task.hpp>
#include <cumulus/train/task_outputs.hpp>
#include <cumulus/train/tensorboard.hpp>
