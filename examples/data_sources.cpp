// See data_sources.hpp.
#include "data_sources.hpp"

#include <cumulus/data/mnist_sources.hpp>

#include "gcs_support.hpp"  // registers gs:// (when built with cumulus::gcs)

namespace examples {

cumulus::data::Mnist load_mnist_from(const std::string& path) { return cumulus::data::load_mnist_from(path); }

cumulus::data::MnistSplit load_mnist_split_from(const std::string& path) {
    return cumulus::data::load_mnist_split_from(path);
}

cumulus::data::Mnist load_mnist(cumulus::data::MnistKind kind, const std::string& dir) {
    return cumulus::data::load_mnist(kind, dir);
}

bool lacks_idx_files(const std::string& dir) {
    return cumulus::data::detail::mnist_missing_files(dir).size() == cumulus::data::mnist_file_names().size();
}

}  // namespace examples
