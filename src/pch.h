// Precompiled header: the libtorch headers nearly every translation unit needs.
// Never <torch/torch.h> (about 40 s per translation unit).
#pragma once
#include <ATen/ATen.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>
