// Shared between the op table files (ops.cpp: core ops; ops_extra.cpp: further general ops).
#pragma once

#include <vector>

#include "squeeze/ir/ops.h"

namespace squeeze::ir {

namespace shape {
int64_t mul(int64_t a, int64_t b);                   // kDynamic-aware product
int64_t count(const Shape& s);                      // elements, kDynamic dims counted as 1 (FLOPs)
int64_t numel(const Shape& s, bool skip_batch);      // kDynamic if any counted dim is dynamic
int64_t norm_axis(int64_t axis, size_t rank, const Node& node);  // throws GraphError
Shape broadcast(const Shape& a, const Shape& b, const Node& node);  // numpy rules
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t pad_begin, int64_t pad_end, int64_t dilation,
                 bool ceil_mode);
}  // namespace shape

// Ops beyond the core set, appended after it (src/ir/ops_extra.cpp).
std::vector<OpDef> extra_ops();

}  // namespace squeeze::ir
