// The final model, exported for serving: <job-dir>/export/<unix secs>/ (as
// TensorFlow's timestamped export directories), or straight into
// $AIP_MODEL_DIR on Vertex AI. The directory holds
//   model.json         the architecture (io/checkpoint.hpp, Keras-like config)
//   model.safetensors  the weights, "<layer>/<param>"
//   signature.json     the serving signature, as TF's SavedModel would list it:
//     {"format": "cumulus.signature", "version": 1,
//      "signatures": {"serving_default": {
//          "method_name": "tensorflow/serving/predict",
//          "inputs":  {"inputs": {"dtype": "float32", "shape": [null, 784]}},
//          "outputs": {"classes": {"dtype": "int64", "shape": [null]},
//                      "probabilities": {"dtype": "float32", "shape": [null, 10]}}},
//        "prediction": <the same>}}
// The input shape is the model's input shape after the batch dimension;
// classes is the argmax of probabilities, which are the softmax of the
// model's outputs (the outputs themselves when it ends in a softmax).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <cumulus/io/checkpoint.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/nn/sequential.hpp>
#include <cumulus/train/task.hpp>

namespace cumulus::train {

inline constexpr const char* kSignatureJson = "signature.json";

template <typename T>
nlohmann::json serving_signature(nn::Sequential<T>& model) {
    nlohmann::json in_shape = nlohmann::json::array({nullptr});
    for (auto d : model.input_shape()) in_shape.push_back(d);
    nlohmann::json prob_shape = nlohmann::json::array({nullptr});
    for (auto d : model.output_shape()) prob_shape.push_back(d);
    const std::string dt(dtype_name(dtype_v<T>));
    nlohmann::json sig = {
        {"method_name", "tensorflow/serving/predict"},
        {"inputs", {{"inputs", {{"dtype", dt}, {"shape", in_shape}}}}},
        {"outputs",
         {{"classes", {{"dtype", "int64"}, {"shape", nlohmann::json::array({nullptr})}}},
          {"probabilities", {{"dtype", dt}, {"shape", prob_shape}}}}},
        {"probabilities", model.ends_with_softmax() ? "model output" : "softmax of the model output"}};
    return {{"format", "cumulus.signature"},
            {"version", 1},
            {"model", io::kModelJson},
            {"weights", io::kModelWeights},
            {"signatures", {{"serving_default", sig}, {"prediction", sig}}}};
}

// Writes model.json, model.safetensors and signature.json into `dir`.
template <typename T>
void export_model_to(nn::Sequential<T>& model, const std::string& dir) {
    detail::make_dirs(dir);
    io::save_model(model, dir);
    const std::string text = serving_signature(model).dump(2) + "\n";
    io::write_file_atomic(join_path(dir, kSignatureJson), text.data(), text.size());
}

// <base>/<unix seconds>, one second later while that exists (two exports in
// the same second).
inline std::string timestamped_export_dir(const std::string& base, std::int64_t secs = -1) {
    if (secs < 0)
        secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                   .count();
    std::string dir = join_path(base, std::to_string(secs));
    while (detail::path_exists(dir)) dir = join_path(base, std::to_string(++secs));
    return dir;
}

// Exports to $AIP_MODEL_DIR when set, else <output_dir>/export/<timestamp>/;
// returns the directory ("" when the task has no output directory).
template <typename T>
std::string export_model(nn::Sequential<T>& model, const TaskConfig& c) {
    std::string dir;
    if (!c.model_dir.empty())
        dir = c.model_dir;
    else if (!c.export_base_dir.empty())
        dir = timestamped_export_dir(c.export_base_dir);
    else
        return "";
    export_model_to(model, dir);
    Logger::global().info("exported the model to ", dir);
    return dir;
}

}  // namespace cumulus::train
