// The data loading of the trainer programs, compiled once for all of them
// (examples/data_sources.cpp, the object library cumulus_example_data): the
// pickle, TFRecord and gs:// code is the larger part of a trainer's compile
// time, and every trainer needs the same. Linking that object library also
// registers the gs:// backend (when cumulus::gcs exists). The functions are
// those of <cumulus/data/mnist_sources.hpp> and <cumulus/data/mnist.hpp>.
#pragma once

#include <string>

#include <cumulus/data/mnist.hpp>

namespace examples {

// data::load_mnist_from: an IDX or TFRecords directory, a pickle of both
// splits, or a training file with its test split beside it (by content).
cumulus::data::Mnist load_mnist_from(const std::string& path);

// data::load_mnist_split_from: one split from one file (by content).
cumulus::data::MnistSplit load_mnist_split_from(const std::string& path);

// data::load_mnist: the four IDX files from `dir`, or from the usual places.
cumulus::data::Mnist load_mnist(cumulus::data::MnistKind kind, const std::string& dir = "");

// True when `dir` holds none of the four MNIST IDX files (so it is read as TFRecords or the like).
bool lacks_idx_files(const std::string& dir);

}  // namespace examples
