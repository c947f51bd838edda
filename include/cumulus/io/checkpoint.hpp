// Saving and loading models: the architecture as JSON (model.json, in the
// shape of a Keras model config) and the weights as safetensors
// (model.safetensors, tensors named "<layer>/<param>", e.g. "dense/kernel"),
// side by side in one directory. The optimizer's state may ride along in the
// same safetensors file ("optimizer/<param index>/<slot>") so that training
// can resume.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include <cumulus/io/file.hpp>
#include <cumulus/io/fs.hpp>
#include <cumulus/io/safetensors.hpp>
#include <cumulus/nn/activation.hpp>
#include <cumulus/nn/conv2d.hpp>
#include <cumulus/nn/dense.hpp>
#include <cumulus/nn/dropout.hpp>
#include <cumulus/nn/flatten.hpp>
#include <cumulus/nn/pool.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/optim/optimizer.hpp>

namespace cumulus::io {

inline constexpr const char* kModelJson = "model.json";
inline constexpr const char* kModelWeights = "model.safetensors";

namespace detail {

template <typename T>
nlohmann::json layer_config(nn::Layer<T>& l) {
    nlohmann::json c;
    c["name"] = l.name();
    if (auto* d = dynamic_cast<nn::Dense<T>*>(&l)) {
        c["units"] = d->units();
        c["activation"] = std::string(nn::activation_name(d->activation()));
        c["use_bias"] = d->use_bias();
    } else if (auto* dr = dynamic_cast<nn::Dropout<T>*>(&l)) {
        c["rate"] = dr->rate();
    } else if (auto* cv = dynamic_cast<nn::Conv2D<T>*>(&l)) {
        c["filters"] = cv->filters();
        c["kernel_size"] = {cv->kernel_size().h, cv->kernel_size().w};
        c["strides"] = {cv->strides().h, cv->strides().w};
        c["padding"] = nn::padding_name(cv->padding());
        c["activation"] = std::string(nn::activation_name(cv->activation()));
        c["use_bias"] = cv->use_bias();
    } else if (auto* pl = dynamic_cast<nn::Pool2D<T>*>(&l)) {
        c["pool_size"] = {pl->pool_size().h, pl->pool_size().w};
        c["strides"] = {pl->strides().h, pl->strides().w};
        c["padding"] = nn::padding_name(pl->padding());
    } else if (dynamic_cast<nn::ReLU<T>*>(&l) || dynamic_cast<nn::Softmax<T>*>(&l) ||
               dynamic_cast<nn::Flatten<T>*>(&l)) {
    } else {
        CUMULUS_FAIL("save_model: ", l.where(), " has no serialised form");
    }
    return nlohmann::json{{"class_name", l.type()}, {"config", c}};
}

template <typename T>
std::unique_ptr<nn::Layer<T>> layer_from_config(const nlohmann::json& j, const std::string& where) {
    const std::string cls = j.at("class_name").get<std::string>();
    const auto& c = j.at("config");
    if (cls == "Dense")
        return std::make_unique<nn::Dense<T>>(c.at("units").get<std::int64_t>(),
                                              nn::parse_activation(c.value("activation", std::string("linear"))),
                                              c.value("use_bias", true));
    if (cls == "Dropout") return std::make_unique<nn::Dropout<T>>(c.at("rate").get<float>());
    auto size2 = [&](const char* key) {
        const auto v = c.at(key).get<std::vector<std::int64_t>>();
        CUMULUS_CHECK(v.size() == 2, where, ": '", key, "' must be [height, width], found ", c.at(key).dump());
        return nn::Size2(v[0], v[1]);
    };
    if (cls == "Conv2D")
        return std::make_unique<nn::Conv2D<T>>(
            c.at("filters").get<std::int64_t>(), size2("kernel_size"), size2("strides"),
            nn::parse_padding(c.value("padding", std::string("valid"))),
            nn::parse_activation(c.value("activation", std::string("linear"))), c.value("use_bias", true));
    if (cls == "MaxPooling2D" || cls == "AveragePooling2D")
        return std::make_unique<nn::Pool2D<T>>(cls == "MaxPooling2D" ? nn::PoolMode::Max : nn::PoolMode::Average,
                                               size2("pool_size"), size2("strides"),
                                               nn::parse_padding(c.value("padding", std::string("valid"))));
    if (cls == "ReLU") return std::make_unique<nn::ReLU<T>>();
    if (cls == "Softmax") return std::make_unique<nn::Softmax<T>>();
    if (cls == "Flatten") return std::make_unique<nn::Flatten<T>>();
    CUMULUS_FAIL(where, ": unknown layer class '", cls, "'");
}

inline std::string path_in(const std::string& dir, const char* file) { return fs::join(dir, file); }

}  // namespace detail

// Writes dir/model.json and dir/model.safetensors (creating dir; dir may be a
// gs:// URL). With an optimizer, its state and iteration count are saved too.
template <typename T>
void save_model(nn::Sequential<T>& model, const std::string& dir, optim::Optimizer<T>* optimizer = nullptr) {
    fs::make_dirs(dir);

    nlohmann::json layers = nlohmann::json::array();
    for (std::size_t i = 0; i < model.size(); ++i) layers.push_back(detail::layer_config(model.layer(i)));
    nlohmann::json arch = {
        {"format", "cumulus.model"},
        {"version", 1},
        {"class_name", "Sequential"},
        {"dtype", std::string(dtype_name(dtype_v<T>))},
        {"config",
         {{"name", model.name()},
          {"input_shape", std::vector<std::int64_t>(model.input_shape().begin(), model.input_shape().end())},
          {"seed", model.seed()},
          {"layers", layers}}}};
    const std::string text = arch.dump(2) + "\n";

    SafetensorsFile st;
    for (std::size_t i = 0; i < model.size(); ++i) {
        auto& l = model.layer(i);
        for (auto* p : l.parameters()) st.add(l.name() + "/" + p->name, p->value.to(Device::cpu()));
    }
    st.metadata()["format"] = "cumulus.model";
    if (optimizer) {
        st.metadata()["optimizer"] = optimizer->name();
        st.metadata()["optimizer.iterations"] = std::to_string(optimizer->iterations());
        st.metadata()["optimizer.learning_rate"] = std::to_string(optimizer->learning_rate());
        for (auto& [name, t] : optimizer->state()) st.add("optimizer/" + name, t->to(Device::cpu()));
    }
    // Weights first: a model.json never points at weights that are not there yet.
    st.save(detail::path_in(dir, kModelWeights));
    write_file_atomic(detail::path_in(dir, kModelJson), text.data(), text.size());
}

// Loads weights saved by save_model into `model` (same architecture), and the
// optimizer's state when one is given and the file holds it.
template <typename T>
void load_weights(nn::Sequential<T>& model, const std::string& dir, optim::Optimizer<T>* optimizer = nullptr) {
    const std::string path = detail::path_in(dir, kModelWeights);
    SafetensorsFile st = SafetensorsFile::load(path);
    for (std::size_t i = 0; i < model.size(); ++i) {
        auto& l = model.layer(i);
        for (auto* p : l.parameters()) {
            const std::string key = l.name() + "/" + p->name;
            Tensor<T> t = st.template tensor<T>(key);
            CUMULUS_CHECK(t.shape() == p->value.shape(), path, ": tensor '", key, "' has shape ", t.shape().str(),
                          " but ", l.where(), " expects ", p->value.shape().str());
            p->value.copy_from(t);
        }
    }
    if (optimizer && st.metadata().count("optimizer")) {
        CUMULUS_CHECK(st.metadata().at("optimizer") == optimizer->name(), path, ": holds ", st.metadata().at("optimizer"),
                      " state, not ", optimizer->name());
        optimizer->create_slots(model.parameters());
        for (auto& [name, t] : optimizer->state()) {
            Tensor<T> s = st.template tensor<T>("optimizer/" + name);
            CUMULUS_CHECK(s.numel() == t->numel(), path, ": optimizer state '", name, "' has ", s.numel(),
                          " elements, expected ", t->numel());
            t->copy_from(s);
        }
        optimizer->set_iterations(std::stoll(st.metadata().at("optimizer.iterations")));
    }
}

// Rebuilds a model from dir/model.json and loads its weights.
template <typename T = float>
nn::Sequential<T> load_model(const std::string& dir) {
    const std::string path = detail::path_in(dir, kModelJson);
    const std::vector<std::uint8_t> bytes = read_file(path);
    const std::string text(bytes.begin(), bytes.end());
    nlohmann::json arch;
    try {
        arch = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        CUMULUS_FAIL(path, ": not valid JSON: ", e.what());
    }
    try {
        CUMULUS_CHECK(arch.value("format", "") == "cumulus.model", path, ": not a cumulus model (format is '",
                      arch.value("format", ""), "')");
        CUMULUS_CHECK(arch.value("dtype", "") == dtype_name(dtype_v<T>), path, ": model saved as ",
                      arch.value("dtype", ""), ", loaded as ", dtype_name(dtype_v<T>));
        const auto& c = arch.at("config");
        const auto dims = c.at("input_shape").get<std::vector<std::int64_t>>();
        nn::Sequential<T> model(Shape(dims.begin(), dims.end()), c.value("seed", std::uint64_t{0}),
                                c.value("name", std::string("sequential")));
        std::size_t i = 0;
        for (const auto& lj : c.at("layers")) {
            const std::string where = path + ": layer " + std::to_string(i++);
            model.add(detail::layer_from_config<T>(lj, where), lj.at("config").at("name").get<std::string>());
        }
        load_weights(model, dir);
        return model;
    } catch (const nlohmann::json::exception& e) {
        CUMULUS_FAIL(path, ": malformed model description: ", e.what());
    }
}

}  // namespace cumulus::io
