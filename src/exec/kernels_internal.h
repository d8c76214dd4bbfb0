// Shared between the kernel files (kernels.cpp: core ops; kernels_extra.cpp: further ops).
#pragma once

#include <map>
#include <string>

#include "squeeze/exec/executor.h"

namespace squeeze::exec {

// Kernels of the ops in ir/ops_extra.cpp.
std::map<std::string, Kernel> extra_kernels();

}  // namespace squeeze::exec
