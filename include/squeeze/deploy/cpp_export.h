// C++ generation (`squeeze export MODEL --to cpp --out DIR`): a self-contained model.h +
// model.cpp (standard library only: no libtorch, no HLS headers) that computes what squeeze's
// executor computes, golden vectors from the executor, and a check program that recomputes them.
//
// Supported graphs: one input, one output, a chain of Linear, Relu, Identity, Dropout, Flatten,
// Reshape, and at the end optionally Softmax (over the last axis). Anything else is refused with
// UnsupportedError naming the node and op (exit code 2) before any file is written. One arithmetic
// per graph, chosen from the graph's specs:
//   fixed  every Linear carries the fixed.* contract (exec/fixed.h, method fixed_point): integer
//          mantissas in int64, every conversion mirrors ir/fixed_point.h's scalar reference
//          (each quantization and overflow mode), products, bias and accumulation exactly as
//          exec::fixed_linear. Bit-identical to the executor.
//   int8   every Linear runs on the int8 kernels (exec/int8.h, planned_execution "int8"): uint8
//          activations, int8 weights, int32 accumulation, float32 requantization as oneDNN does
//          it (see the generator's header comment). Bit-identical to the executor's int8 path.
//   float  no quantization: float32 sums in index order. The executor sums in BLAS order, so
//          outputs agree within a stated tolerance (kFloatTolerance), not bit for bit.
// A final Softmax is computed in float (std::exp); its outputs are checked within
// kSoftmaxTolerance, the layers before it still bit for bit through `predict_logits`.
//
// Sparse layers: only non-zero weights are emitted. A layer with at most unroll_max_nonzeros
// non-zero weights is fully unrolled (constants in the code) under unroll = "auto"; larger ones
// loop over compressed rows (CSR: row offsets, column indices, values).
//
// Files written into DIR (built in a temporary folder next to it, then renamed): model.h,
// model.cpp, check.cpp, golden.bin, Makefile, README.md. `make -C DIR check && DIR/check
// DIR/golden.bin` (or the one-line g++ command in the README) exits 1 on any mismatch.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

constexpr double kFloatTolerance = 1e-4;     // |a - b| <= tol * (1 + |b|), float arithmetic
constexpr double kSoftmaxTolerance = 1e-6;   // |a - b| on probabilities

struct CppExportOptions {
  std::string unroll = "auto";          // auto | always | never
  int64_t unroll_max_nonzeros = 4096;   // auto: layers with at most this many non-zero weights unroll
  int64_t golden_count = 64;            // golden vectors, 1..1000000
  uint64_t seed = 0;                    // random golden inputs
  // Golden inputs [N, input shape...] (e.g. from the model's data); undefined = seeded random
  // inputs over the input type's range widened by 1/8 on each side (so input saturation and
  // wrapping are exercised), [-4, 4] for a float input.
  at::Tensor golden_inputs;
  std::string name;                     // C++ namespace; "" = from the graph's name

  // Throws ConfigError naming the field, the value and what is valid.
  void validate() const;
};

// Throws UnsupportedError naming the first node (and op) the generator cannot compile, or a
// ConfigError when the graph mixes arithmetics. Writes nothing.
void check_cpp_exportable(const ir::Graph& graph);

// Writes DIR as described above. DIR must not exist or be an empty folder (ConfigError naming
// it otherwise, exit code 2); checks the graph and the options before anything is written.
void export_cpp(const ir::Graph& graph, const CppExportOptions& options, const std::string& dir);

// Compiles DIR's model.cpp with `g++ -O2 -std=c++17` (or $CXX) into a temporary binary with a
// timing main, runs it and returns the median batch-1 predict() latency in nanoseconds (the
// inputs are DIR/golden.bin's). Throws Error when no compiler is found on PATH or the build or
// run fails (the compiler's output in the message); InputError when DIR has no model.h.
double measure_cpp_latency_ns(const std::string& dir);

}  // namespace squeeze::deploy
