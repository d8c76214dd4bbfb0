// Quantized execution inside the executor (implemented in src/exec/int8.cpp).
//
// In eval mode, a node whose out_qspec is 8-bit unsigned affine (quint8's range) produces a real
// quint8 tensor (at::quantize_per_tensor), which flows through ops that keep quantized tensors
// (Relu, MaxPool, Flatten, Reshape, Dropout, Identity) to the next Conv or Linear. A Conv2d or
// Linear whose weight qspec is signed symmetric with 2..8 bits (a narrower grid is a subset of
// int8 with the same scale; per tensor or per output channel), whose
// input arrives as quint8 and whose own out_qspec is quint8 runs on libtorch's quantized kernels
// (ONEDNN engine; packed weights are cached per node and rebuilt when the weight changes). An Add
// of two quint8 values with a quint8 out_qspec runs quantized::add (residual connections). Every
// other op gets its quantized inputs dequantized first, and graph outputs are dequantized.
//
// Everything else quantized (activations narrower than 8 bits, affine weights) is simulated: weights are stored dequantized on their grid, inputs are
// fake-quantized by the producer's out_qspec, so a Conv/Linear computes
//   sum_k (q_x[k] - z_x) s_x * (q_w[k] - z_w) s_w + b
// on exact grid values with float32 accumulation, then its output is fake-quantized. The int8
// kernels compute the same sum in int32 and requantize once; outputs agree within one output
// quantization step (ties and float32 accumulation order differ; tests/exec/test_int8_exec.cpp).
//
// A Linear with attribute quant_dynamic = 1 (dynamic mode) quantizes its float input per batch:
// uint8 affine from the batch's min/max, then runs quantized::linear_dynamic (per-tensor or
// per-channel weights).
//
// CPUs differ in how exact these kernels are. Without VNNI, oneDNN's AVX2/AVX-512 int8 kernels
// sum each pair of adjacent uint8 x int8 products into a saturating int16 (vpmaddubsw):
// 2 * 255 * 127 > 32767, so full-range uint8 activations with int8 weights near +-127 clip. With
// VNNI (vpdpbusd) or AMX the products accumulate in int32 and are exact. int8_probe() finds out
// once per process, on the kernels oneDNN actually dispatches. On a saturating CPU a Conv/Linear
// runs int8 only when its integer weights satisfy |q| <= 64 (2 * 255 * 64 < 32767: a 7-bit grid);
// others there are simulated (exactly) instead, never silently wrong. The quantize pass puts
// 8-bit weights on a 7-bit grid by default on such CPUs (QuantizeOptions::reduce_range).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>

#include "squeeze/exec/executor.h"
#include "squeeze/ir/graph.h"

namespace squeeze::quant {

// What int8_probe() measured on this machine's oneDNN kernels.
struct Int8Probe {
  bool available = false;   // libtorch offers the ONEDNN quantized engine
  std::string engine;       // "onednn"
  std::string isa;          // the ISA oneDNN dispatches to, e.g. "avx2", "avx512_core_vnni"
  bool saturates = false;   // pairs of u8 x s8 products saturate in int16 (see above)
  int64_t linear_q = 0, conv_q = 0;  // static linear / conv probe outputs (exact: 200)
  double dynamic_ratio = 0.0;        // dynamic linear probe, result / exact (exact: 1)
};
// Selects the ONEDNN engine and probes it, once per process (thread-safe); later calls return the
// same answer. ONEDNN_MAX_CPU_ISA (e.g. AVX2) set before the first call forces lower ISA paths.
const Int8Probe& int8_probe();
// int8_probe().saturates (false when no engine).
bool int8_saturates();
// {"int8_engine", "int8_isa", "int8_saturates"} for reports and benchmark output.
std::map<std::string, std::string> int8_environment();

// True when libtorch offers the ONEDNN quantized engine (selected on first use).
bool int8_available();
// Globally disables real int8 kernels (tests and benchmarks compare against simulation).
void set_int8_enabled(bool enabled);
bool int8_enabled();

// The executor's hooks.
// Does this node take its quantized (quint8) inputs as they are?
bool accepts_quantized(const ir::Node& node, const std::vector<at::Tensor>& inputs);
// Conv/Linear: the quantized result (int8 kernels, dynamic int8 or simulated dynamic) or an
// undefined tensor when the float kernel should run.
at::Tensor quantized_forward(const ir::Node& node, const at::Tensor& x, const exec::KernelContext& ctx);
// Other ops with a quantized kernel: Add of two quint8 values into a quint8 out_qspec
// (quantized::add). Their outputs, or an empty vector when the float kernel should run.
std::vector<at::Tensor> quantized_op(const ir::Node& node, const std::vector<at::Tensor>& inputs,
                                     const exec::KernelContext& ctx);
// Applies node.out_qspec to output 0: fake quantization (with STE) in training or when it cannot be
// represented as quint8, a real quint8 tensor in eval mode otherwise.
at::Tensor apply_out_qspec(const ir::Node& node, const at::Tensor& y, const exec::KernelContext& ctx);

// Float <-> per-tensor quint8, vectorised: to_quint8 rounds x / scale half to even (as
// quant::quantize) and clamps to [0, 255]; from_quint8 is (q - zero_point) * scale (other
// quantized tensors: at::dequantize). Both keep the input's memory format.
at::Tensor to_quint8(const at::Tensor& x, double scale, int64_t zero_point);
at::Tensor from_quint8(const at::Tensor& q);

// How a node is expected to run in eval mode, from the graph's specs:
// "int8" (quantized kernels), "int8-dynamic" (Linear only), "simulated" (quantized values, float arithmetic),
// or "float".
std::string planned_execution(const ir::Graph& graph, const ir::Node& node);
// The quantization spec of the value a node reads as input 0, looking through ops that keep the
// grid (Relu, MaxPool, Flatten, Reshape, Dropout, Identity); nullptr when it is not quantized.
const ir::QuantSpec* input_qspec(const ir::Graph& graph, const ir::Node& node);
// Ops through which a quantized value keeps its grid and its quint8 representation.
bool keeps_grid(const std::string& op);

}  // namespace squeeze::quant
