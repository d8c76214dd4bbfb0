#include "squeeze/models/zoo.h"

#include <ATen/ATen.h>

#include <functional>

#include "squeeze/ir/builder.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "vit.h"

namespace squeeze::models {

namespace {

using ir::GraphBuilder;

struct Args {
  std::string model;
  std::map<std::string, std::string> raw;
  std::map<std::string, bool> used;
  std::string key_path = "model.params";  // where the params were given, for messages

  int64_t get(const std::string& key, int64_t fallback, int64_t min = 1) {
    used[key] = true;
    auto it = raw.find(key);
    if (it == raw.end()) return fallback;
    try {
      size_t pos = 0;
      int64_t v = std::stoll(it->second, &pos);
      if (pos != it->second.size()) throw std::invalid_argument("trailing");
      if (v < min) throw std::out_of_range("min");
      return v;
    } catch (const std::exception&) {
      throw ConfigError(msg(key_path, ".", key, ": '", it->second, "' is not valid for ", model,
                            " (expected an integer >= ", min, ")"));
    }
  }
  std::string get_str(const std::string& key, const std::string& fallback) {
    used[key] = true;
    auto it = raw.find(key);
    return it == raw.end() ? fallback : it->second;
  }
};

// Image models: input [C, H, W].
ir::Shape image_shape(Args& a, int64_t default_channels, int64_t default_size) {
  int64_t c = a.get("in_channels", default_channels);
  int64_t size = a.get("input_size", default_size);
  int64_t h = a.get("height", size), w = a.get("width", size);
  return {c, h, w};
}

std::vector<int64_t> int_list(Args& a, const std::string& key, const std::string& fallback) {
  std::string text = a.get_str(key, fallback);
  std::vector<int64_t> out;
  size_t start = 0;
  std::string s = text;
  for (char& ch : s)
    if (ch == '[' || ch == ']') ch = ' ';
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) {
      try {
        out.push_back(std::stoll(item));
      } catch (const std::exception&) {
        throw ConfigError(msg(a.key_path, ".", key, ": '", text, "' is not a list of integers"));
      }
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (out.empty()) throw ConfigError(msg(a.key_path, ".", key, ": expected a list of integers, got '", text, "'"));
  return out;
}

ir::Graph mlp(Args& a, uint64_t seed) {
  GraphBuilder b("mlp", seed);
  auto hidden = int_list(a, "hidden", "256,128");
  int64_t classes = a.get("num_classes", 10);
  // Image inputs too: given in_channels / input_size / height / width (a workflow fills them from
  // image data), the input is [C, H, W] and the first op flattens it; otherwise [in_features].
  std::string x;
  if (a.raw.count("in_channels") || a.raw.count("input_size") || a.raw.count("height") || a.raw.count("width")) {
    ir::Shape s = image_shape(a, 1, 28);
    const int64_t in = s[0] * s[1] * s[2];
    if (a.raw.count("in_features") && a.get("in_features", in) != in)
      throw ConfigError(msg("model.params.in_features: ", a.raw.at("in_features"), " does not match the image input ",
                            s[0], "x", s[1], "x", s[2], " (", in, " features); give one or the other"));
    x = b.flatten(b.input("input", s));
  } else {
    x = b.input("input", {a.get("in_features", 784)});
  }
  for (int64_t h : hidden) x = b.act("Relu", b.linear(x, h));
  return b.finish({b.linear(x, classes, true, "classifier")});
}

ir::Graph jet_tagger(Args& a, uint64_t seed) {
  // The hls4ml jet-tagging benchmark: 16 -> 64 -> 32 -> 32 -> 5, ReLU.
  GraphBuilder b("jet_tagger", seed);
  int64_t in = a.get("in_features", 16);
  int64_t classes = a.get("num_classes", 5);
  std::string x = b.input("input", {in});
  x = b.act("Relu", b.linear(x, 64, true, "fc1"));
  x = b.act("Relu", b.linear(x, 32, true, "fc2"));
  x = b.act("Relu", b.linear(x, 32, true, "fc3"));
  return b.finish({b.linear(x, classes, true, "output")});
}

ir::Graph lenet5(Args& a, uint64_t seed) {
  GraphBuilder b("lenet5", seed);
  auto s = image_shape(a, 1, 28);
  int64_t classes = a.get("num_classes", 10);
  std::string x = b.input("input", s);
  x = b.maxpool(b.act("Relu", b.conv(x, 6, 5, 1, 2)), 2, 2);
  x = b.maxpool(b.act("Relu", b.conv(x, 16, 5, 1, 0)), 2, 2);
  x = b.flatten(x);
  x = b.act("Relu", b.linear(x, 120));
  x = b.act("Relu", b.linear(x, 84));
  return b.finish({b.linear(x, classes, true, "classifier")});
}

ir::Graph small_cnn(Args& a, uint64_t seed) {
  GraphBuilder b("small_cnn", seed);
  auto s = image_shape(a, 1, 28);
  int64_t classes = a.get("num_classes", 10);
  int64_t w = a.get("channels", 32);
  std::string x = b.input("input", s);
  x = b.maxpool(b.act("Relu", b.conv(x, w, 3, 1, 1, 1, true, "conv1")), 2, 2);
  x = b.maxpool(b.act("Relu", b.conv(x, 2 * w, 3, 1, 1, 1, true, "conv2")), 2, 2);
  x = b.flatten(x);
  x = b.act("Relu", b.linear(x, 4 * w, true, "fc1"));
  x = b.dropout(x, 0.25);
  return b.finish({b.linear(x, classes, true, "fc2")});
}

std::string conv_bn(GraphBuilder& b, const std::string& x, int64_t out, int64_t k, int64_t stride, int64_t pad,
                    const std::string& name, int64_t groups = 1) {
  return b.batchnorm(b.conv(x, out, k, stride, pad, groups, false, name), name + "_bn");
}

std::string basic_block(GraphBuilder& b, const std::string& x, int64_t out, int64_t stride, const std::string& name) {
  std::string y = b.act("Relu", conv_bn(b, x, out, 3, stride, 1, name + "_conv1"));
  y = conv_bn(b, y, out, 3, 1, 1, name + "_conv2");
  std::string shortcut = x;
  if (stride != 1 || b.channels(x) != out) shortcut = conv_bn(b, x, out, 1, stride, 0, name + "_down");
  return b.act("Relu", b.add(y, shortcut), name + "_out");
}

ir::Graph cifar_resnet(Args& a, uint64_t seed, int blocks_per_stage, const std::string& name) {
  GraphBuilder b(name, seed);
  auto s = image_shape(a, 3, 32);
  int64_t classes = a.get("num_classes", 10);
  int64_t w = a.get("channels", 16);
  std::string x = b.input("input", s);
  x = b.act("Relu", conv_bn(b, x, w, 3, 1, 1, "stem"));
  for (int stage = 0; stage < 3; ++stage)
    for (int i = 0; i < blocks_per_stage; ++i)
      x = basic_block(b, x, w << stage, (stage > 0 && i == 0) ? 2 : 1,
                      "layer" + std::to_string(stage + 1) + "_" + std::to_string(i));
  x = b.flatten(b.global_avgpool(x));
  return b.finish({b.linear(x, classes, true, "fc")});
}

ir::Graph resnet18(Args& a, uint64_t seed) {
  // torchvision layout: 7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks.
  GraphBuilder b("resnet18", seed);
  auto s = image_shape(a, 3, 224);
  int64_t classes = a.get("num_classes", 1000);
  std::string x = b.input("input", s);
  x = b.act("Relu", conv_bn(b, x, 64, 7, 2, 3, "conv1"));
  x = b.maxpool(x, 3, 2, 1);
  for (int stage = 0; stage < 4; ++stage)
    for (int i = 0; i < 2; ++i)
      x = basic_block(b, x, 64 << stage, (stage > 0 && i == 0) ? 2 : 1,
                      "layer" + std::to_string(stage + 1) + "_" + std::to_string(i));
  x = b.flatten(b.global_avgpool(x));
  return b.finish({b.linear(x, classes, true, "fc")});
}

ir::Graph mobilenet_v2_tiny(Args& a, uint64_t seed) {
  GraphBuilder b("mobilenet_v2_tiny", seed);
  auto s = image_shape(a, 3, 32);
  int64_t classes = a.get("num_classes", 10);
  std::string x = b.input("input", s);
  x = b.act("Relu6", conv_bn(b, x, 16, 3, 1, 1, "stem"));
  // (expansion t, channels c, repeats n, stride s) as in MobileNetV2, scaled down.
  const int64_t cfg[][4] = {{1, 16, 1, 1}, {4, 24, 2, 2}, {4, 32, 2, 2}, {4, 64, 2, 2}};
  int block = 0;
  for (const auto& row : cfg) {
    for (int64_t i = 0; i < row[2]; ++i) {
      std::string name = "block" + std::to_string(block++);
      int64_t stride = i == 0 ? row[3] : 1;
      int64_t in_ch = b.channels(x), hidden = in_ch * row[0];
      std::string y = x;
      if (row[0] != 1) y = b.act("Relu6", conv_bn(b, y, hidden, 1, 1, 0, name + "_expand"));
      y = b.act("Relu6", conv_bn(b, y, hidden, 3, stride, 1, name + "_dw", hidden));
      y = conv_bn(b, y, row[1], 1, 1, 0, name + "_project");
      x = (stride == 1 && in_ch == row[1]) ? b.add(x, y) : y;
    }
  }
  x = b.act("Relu6", conv_bn(b, x, 128, 1, 1, 0, "head"));
  x = b.flatten(b.global_avgpool(x));
  x = b.dropout(x, 0.2);
  return b.finish({b.linear(x, classes, true, "classifier")});
}

struct Entry {
  ZooEntry info;
  std::function<ir::Graph(Args&, uint64_t)> build;
};

const std::vector<Entry>& entries() {
  static const std::vector<std::string> image = {"num_classes", "in_channels", "input_size", "height", "width"};
  // `channels` scales the first layer's channel count (the rest follow).
  static const std::vector<std::string> scalable = {"num_classes", "in_channels", "input_size", "height", "width",
                                                    "channels"};
  static const std::vector<Entry> all = {
      {{"mlp", "multi-layer perceptron (in_features, hidden: \"256,128\"; image inputs are flattened)",
        {"num_classes", "in_features", "hidden", "in_channels", "input_size", "height", "width"}},
       mlp},
      {{"jet_tagger", "hls4ml jet tagger 16-64-32-32-5", {"num_classes", "in_features"}}, jet_tagger},
      {{"lenet5", "LeNet-5", image}, lenet5},
      {{"small_cnn", "two conv layers + two linear layers (channels: first conv's, default 32)", scalable}, small_cnn},
      {{"resnet8", "CIFAR-style ResNet-8 (channels: stem's, default 16)", scalable},
       [](Args& a, uint64_t s) { return cifar_resnet(a, s, 1, "resnet8"); }},
      {{"resnet20", "CIFAR-style ResNet-20 (channels: stem's, default 16)", scalable},
       [](Args& a, uint64_t s) { return cifar_resnet(a, s, 3, "resnet20"); }},
      {{"resnet18", "ResNet-18, torchvision layout", image}, resnet18},
      {{"mobilenet_v2_tiny", "a small MobileNetV2 (inverted residuals, depthwise convs)", image}, mobilenet_v2_tiny},
      {{"vit_tiny", "a tiny Vision Transformer (patch embedding, multi-head attention, MLP, LayerNorm, mean pooling)",
        {"num_classes", "in_channels", "input_size", "height", "width", "patch", "dim", "depth", "heads", "mlp_dim",
         "pos_embed"}},
       [](Args& a, uint64_t s) {
         VitConfig c;
         auto shape = image_shape(a, 3, 32);
         c.in_channels = shape[0], c.height = shape[1], c.width = shape[2];
         c.num_classes = a.get("num_classes", c.num_classes);
         c.patch = a.get("patch", c.patch);
         c.dim = a.get("dim", c.dim);
         c.depth = a.get("depth", c.depth);
         c.heads = a.get("heads", c.heads);
         c.mlp_dim = a.get("mlp_dim", c.mlp_dim);
         c.pos_embed = a.get("pos_embed", 0, 0) != 0;
         return vit_tiny(c, s);
       }},
  };
  return all;
}

}  // namespace

const std::vector<ZooEntry>& zoo() {
  static const std::vector<ZooEntry> infos = [] {
    std::vector<ZooEntry> v;
    for (const auto& e : entries()) v.push_back(e.info);
    return v;
  }();
  return infos;
}

std::string ModelSpec::describe() const {
  const std::string head = head_classes > 0 ? " (head " + std::to_string(head_classes) + ")" : "";
  if (!onnx.empty()) return onnx + head;
  if (!checkpoint.empty()) return checkpoint + head;
  std::string out = "zoo:" + zoo;
  if (!params.empty()) {
    out += "(";
    bool first = true;
    for (const auto& [k, v] : params) out += (first ? "" : ", ") + k + "=" + v, first = false;
    out += ")";
  }
  return out + head;
}

void fill_params_from_data(const std::string& name, std::map<std::string, std::string>& params,
                           const std::vector<int64_t>& sample_shape, int64_t num_classes) {
  const ZooEntry* entry = nullptr;
  for (const auto& e : zoo())
    if (e.name == name) entry = &e;
  if (!entry) return;
  auto set = [&](const std::string& key, int64_t v) {
    const bool accepted = std::find(entry->params.begin(), entry->params.end(), key) != entry->params.end();
    if (accepted && !params.count(key)) params[key] = std::to_string(v);
  };
  set("num_classes", num_classes);
  const auto& s = sample_shape;
  if (s.size() == 1) {
    set("in_features", s[0]);
  } else if (s.size() == 3) {
    set("in_channels", s[0]);
    if (s[1] == s[2]) {
      set("input_size", s[1]);
    } else {
      set("height", s[1]);
      set("width", s[2]);
    }
  }
}

ir::Graph build(const std::string& name, const std::map<std::string, std::string>& params, uint64_t seed,
                const std::string& key_path) {
  for (const auto& e : entries()) {
    if (e.info.name != name) continue;
    for (const auto& [key, value] : params)
      if (std::find(e.info.params.begin(), e.info.params.end(), key) == e.info.params.end()) {
        std::string valid;
        for (const auto& p : e.info.params) valid += (valid.empty() ? "" : ", ") + p;
        std::string hint = did_you_mean(key, e.info.params);
        throw ConfigError(msg(key_path, ": unknown parameter '", key, "' for zoo model ", name, " (valid: ", valid,
                              ")", hint.empty() ? "" : msg("; did you mean '", hint, "'?")));
      }
    Args args{name, params, {}, key_path};
    ir::Graph g = e.build(args, seed);
    g.metadata["zoo"] = name;
    return g;
  }
  std::vector<std::string> names;
  std::string valid;
  for (const auto& e : entries()) {
    names.push_back(e.info.name);
    valid += (valid.empty() ? "" : ", ") + e.info.name;
  }
  std::string hint = did_you_mean(name, names);
  throw ConfigError(msg("unknown zoo model '", name, "' (valid: ", valid, ")",
                        hint.empty() ? "" : msg("; did you mean '", hint, "'?")));
}

}  // namespace squeeze::models
