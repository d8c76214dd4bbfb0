// TorchScript export: a .pt file that PyTorch's torch.jit.load opens.
#pragma once

#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

// Writes atomically. Throws UnsupportedError for ops without a TorchScript translation.
void export_torchscript(const ir::Graph& graph, const std::string& path);

}  // namespace squeeze::deploy
