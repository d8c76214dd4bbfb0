// Inference convolutions on oneDNN primitives built once per layer and input shape: the oneDNN
// library libtorch itself runs (Debian's libdnnl 2.6, the same shared object), called directly.
//
// Why not at::convolution: it builds the primitive descriptor and reorders the weight into the
// primitive's blocked layout on every call. At batch 1 that costs more than the convolution
// (measured, 2 threads, AVX-512: 64 channels 3x3 on 16x16, at::convolution 1.15 ms against 0.10 ms
// with the weight reordered once), and even libtorch's own prepacked ops (mkldnn_prepacked, what
// torch.jit.optimize_for_inference uses) pack for blocked activations and so reorder again on
// channels-last input, and rebuild the primitive descriptor per call (~30 us per convolution,
// most of MobileNet's time at batch 1). Here the primitive takes the channels-last activations as
// they are, the weight is reordered once into the layout the primitive chose, and a following
// activation runs as the primitive's post-op.
#include <ATen/ATen.h>

#include <dnnl.hpp>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include "kernels_internal.h"
#include "squeeze/util/error.h"

namespace squeeze::exec {

struct PackedConv {
  dnnl::convolution_forward primitive;
  dnnl::memory::desc src_md, dst_md;
  dnnl::memory weights, bias;
  at::Tensor bias_storage;  // the bias memory points into it
  std::vector<int64_t> out_sizes;
  std::string impl;
  bool one_thread = false;  // too little work to share between threads (see kOneThreadMacs)
};

namespace {

// Below this many multiply-adds a convolution runs on one thread: splitting it costs more than it
// saves. Measured at batch 1, 2 threads (AMD EPYC, AVX-512): MobileNetV2 0.85 -> 0.58 ms,
// MnasNet 0.5 0.77 -> 0.33 ms, ShuffleNetV2 0.5 0.88 -> 0.46 ms, ResNet-18 unchanged (its
// smallest convolutions have 3.7M); thresholds of 1e7 and more made ResNet-18 1.7x slower.
constexpr double kOneThreadMacs = 1e6;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

// Runs oneDNN on one OpenMP thread while it lives (oneDNN fixes a primitive's thread split when
// it builds it, and runs it on as many threads as the caller's OpenMP setting then allows).
class OneThread {
 public:
  explicit OneThread(bool on) : threads_(omp_get_max_threads()), on_(on && threads_ > 1) {
    if (on_) omp_set_num_threads(1);
  }
  ~OneThread() {
    if (on_) omp_set_num_threads(threads_);
  }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int threads_;
  bool on_;
};

using dims = dnnl::memory::dims;
using tag = dnnl::memory::format_tag;
constexpr auto f32 = dnnl::memory::data_type::f32;

// The post-op for an activation, or false when oneDNN has none that matches it exactly.
bool add_post_op(const FusedActivation& act, dnnl::post_ops& ops) {
  using alg = dnnl::algorithm;
  const float inf = std::numeric_limits<float>::infinity();
  if (act.op == "Relu") ops.append_eltwise(1.f, alg::eltwise_relu, 0.f, 0.f);
  else if (act.op == "LeakyRelu") ops.append_eltwise(1.f, alg::eltwise_relu, static_cast<float>(act.alpha), 0.f);
  else if (act.op == "Relu6") ops.append_eltwise(1.f, alg::eltwise_clip_v2, 0.f, 6.f);
  else if (act.op == "Clip")
    ops.append_eltwise(1.f, alg::eltwise_clip_v2, act.has_min ? static_cast<float>(act.alpha) : -inf,
                       act.has_max ? static_cast<float>(act.beta) : inf);
  else if (act.op == "Sigmoid") ops.append_eltwise(1.f, alg::eltwise_logistic, 0.f, 0.f);
  else if (act.op == "Silu") ops.append_eltwise(1.f, alg::eltwise_swish, 1.f, 0.f);
  else if (act.op == "HardSwish") ops.append_eltwise(1.f, alg::eltwise_hardswish, 0.f, 0.f);
  else if (act.op == "Tanh") ops.append_eltwise(1.f, alg::eltwise_tanh, 0.f, 0.f);
  else return false;
  return true;
}

}  // namespace

bool fusable_activation(const std::string& op) {
  for (const char* o : {"Relu", "LeakyRelu", "Relu6", "Clip", "Sigmoid", "Silu", "HardSwish", "Tanh"})
    if (op == o) return true;
  return false;
}

bool packed_conv_available() {
  static const bool available = [] {
    const char* env = std::getenv("SQUEEZE_PACKED_CONV");
    if (env && std::string(env) == "0") return false;
    try {
      engine();
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return available;
}

std::shared_ptr<PackedConv> pack_conv(const at::Tensor& weight, const at::Tensor& bias, const ConvGeometry& g,
                                      at::IntArrayRef input_sizes, const FusedActivation* act) {
  try {
    const int64_t n = input_sizes[0], c = input_sizes[1], h = input_sizes[2], w = input_sizes[3];
    const int64_t o = weight.size(0), kh = weight.size(2), kw = weight.size(3);
    if (g.groups < 1 || c != weight.size(1) * g.groups || o % g.groups != 0) return nullptr;
    auto out_dim = [](int64_t in, int64_t k, int64_t s, int64_t d, int64_t pl, int64_t pr) {
      return (in + pl + pr - ((k - 1) * d + 1)) / s + 1;
    };
    const int64_t oh = out_dim(h, kh, g.strides[0], g.dilations[0], g.pads[0], g.pads[2]);
    const int64_t ow = out_dim(w, kw, g.strides[1], g.dilations[1], g.pads[1], g.pads[3]);
    if (oh < 1 || ow < 1) return nullptr;

    auto packed = std::make_shared<PackedConv>();
    packed->src_md = dnnl::memory::desc({n, c, h, w}, f32, tag::nhwc);
    packed->dst_md = dnnl::memory::desc({n, o, oh, ow}, f32, tag::nhwc);
    packed->out_sizes = {n, o, oh, ow};
    const bool grouped = g.groups > 1;
    dims wdims = grouped ? dims{g.groups, o / g.groups, c / g.groups, kh, kw} : dims{o, c, kh, kw};
    dnnl::memory::desc w_any(wdims, f32, tag::any);
    dnnl::memory::desc b_md({o}, f32, tag::x);
    dnnl::primitive_attr attr;
    if (act) {
      dnnl::post_ops ops;
      if (!add_post_op(*act, ops)) return nullptr;
      attr.set_post_ops(ops);
    }
    dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, packed->src_md, w_any, b_md,
        packed->dst_md, {g.strides[0], g.strides[1]}, {g.dilations[0] - 1, g.dilations[1] - 1}, {g.pads[0], g.pads[1]},
        {g.pads[2], g.pads[3]});
    packed->one_thread = double(n) * o * oh * ow * (c / g.groups) * kh * kw < kOneThreadMacs;
    OneThread one_thread(packed->one_thread);
    dnnl::convolution_forward::primitive_desc pd(desc, attr, engine());
    packed->primitive = dnnl::convolution_forward(pd);
    packed->impl = pd.impl_info_str();

    at::Tensor w_user = weight.contiguous();
    dnnl::memory user(dnnl::memory::desc(wdims, f32, grouped ? tag::goihw : tag::oihw), engine(), w_user.data_ptr());
    packed->weights = dnnl::memory(pd.weights_desc(), engine());
    dnnl::reorder(user, packed->weights).execute(stream(), user, packed->weights);
    packed->bias_storage = bias.defined() ? bias.contiguous().clone() : at::zeros({o}, weight.options());
    packed->bias = dnnl::memory(b_md, engine(), packed->bias_storage.data_ptr());
    stream().wait();
    return packed;
  } catch (const dnnl::error&) {
    return nullptr;  // the caller runs at::convolution
  }
}

at::Tensor run_packed_conv(const PackedConv& packed, const at::Tensor& x) {
  at::Tensor y = at::empty(packed.out_sizes, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  dnnl::memory src(packed.src_md, engine(), x.data_ptr());
  dnnl::memory dst(packed.dst_md, engine(), y.data_ptr());
  OneThread one_thread(packed.one_thread);
  try {
    packed.primitive.execute(stream(), {{DNNL_ARG_SRC, src},
                                        {DNNL_ARG_WEIGHTS, packed.weights},
                                        {DNNL_ARG_BIAS, packed.bias},
                                        {DNNL_ARG_DST, dst}});
    stream().wait();
  } catch (const dnnl::error& e) {
    throw Error(msg("oneDNN convolution failed: ", e.what()));
  }
  return y;
}

const std::string& packed_conv_impl(const PackedConv& packed) { return packed.impl; }

}  // namespace squeeze::exec
