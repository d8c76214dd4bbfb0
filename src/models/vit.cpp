#include "vit.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>

#include "squeeze/ir/builder.h"
#include "squeeze/util/error.h"

namespace squeeze::models {

ir::Graph vit_tiny(const VitConfig& c, uint64_t seed) {
  if (c.dim % c.heads != 0)
    throw ConfigError(msg("model.params.dim: ", c.dim, " is not a multiple of heads=", c.heads));
  if (c.height % c.patch != 0 || c.width % c.patch != 0)
    throw ConfigError(msg("model.params.patch: ", c.patch, " does not divide the input size ", c.height, "x", c.width));
  ir::GraphBuilder b("vit_tiny", seed);
  const int64_t d = c.dim, h = c.heads, dh = c.dim / c.heads;
  const int64_t tokens = (c.height / c.patch) * (c.width / c.patch);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 7919);
  auto constant = [&](const at::Tensor& value, const std::string& name, bool trainable = true) {
    std::map<std::string, ir::Param> params;
    params["value"].value = value;
    params["value"].trainable = trainable;
    return b.node("Constant", {}, {}, params, name);
  };
  std::string x = b.input("input", {c.in_channels, c.height, c.width});
  x = b.conv(x, d, c.patch, c.patch, 0, 1, true, "patch_embed");
  x = b.node("Reshape", {x}, {{"shape", std::vector<int64_t>{0, d, -1}}}, {}, "patch_flatten");
  x = b.node("Transpose", {x}, {{"perm", std::vector<int64_t>{0, 2, 1}}}, {}, "patch_tokens");  // [N, T, D]
  // A learned position embedding is a Constant [1, T, D] (the IR's only parameter-holding source
  // node); off by default so every value of the default model has a dynamic batch dimension.
  if (c.pos_embed) x = b.add(x, constant(at::randn({1, tokens, d}, gen) * 0.02, "pos_embed"));
  for (int64_t i = 0; i < c.depth; ++i) {
    std::string p = "enc" + std::to_string(i) + "_";
    std::string y = b.layernorm(x, p + "ln1");
    auto heads_of = [&](const std::string& lin, const std::string& name, std::vector<int64_t> perm) {
      std::string t = b.node("Reshape", {lin}, {{"shape", std::vector<int64_t>{0, 0, h, dh}}}, {}, p + name + "_split");
      return b.node("Transpose", {t}, {{"perm", perm}}, {}, p + name + "_heads");
    };
    // The 1/sqrt(dh) attention scale is folded into the query projection's initialisation.
    std::map<std::string, ir::Param> qp;
    const double scale = 1.0 / std::sqrt(double(dh));
    qp["weight"].value = b.init_weight({d, d}, d) * scale;
    qp["bias"].value = b.init_weight({d}, d) * scale;
    std::string ql = b.node("Linear", {y}, {}, qp, p + "q");
    std::string q = heads_of(ql, "q", {0, 2, 1, 3});  // [N, H, T, dh]
    std::string k = heads_of(b.linear(y, d, true, p + "k"), "k", {0, 2, 3, 1});  // [N, H, dh, T]
    std::string v = heads_of(b.linear(y, d, true, p + "v"), "v", {0, 2, 1, 3});  // [N, H, T, dh]
    std::string s = b.node("MatMul", {q, k}, {}, {}, p + "scores");
    s = b.node("Softmax", {s}, {{"axis", int64_t{-1}}}, {}, p + "attn");
    std::string o = b.node("MatMul", {s, v}, {}, {}, p + "context");                       // [N, H, T, dh]
    o = b.node("Transpose", {o}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}, {}, p + "context_tokens");
    o = b.node("Reshape", {o}, {{"shape", std::vector<int64_t>{0, 0, d}}}, {}, p + "merge");  // [N, T, D]
    x = b.add(x, b.linear(o, d, true, p + "proj"));
    y = b.layernorm(x, p + "ln2");
    y = b.act("Gelu", b.linear(y, c.mlp_dim, true, p + "fc1"));
    x = b.add(x, b.linear(y, d, true, p + "fc2"));
  }
  x = b.layernorm(x, "norm");
  x = b.node("ReduceMean", {x}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{0}}}, {}, "pool");
  return b.finish({b.linear(x, c.num_classes, true, "head")});
}

}  // namespace squeeze::models
