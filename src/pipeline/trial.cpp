#include "squeeze/pipeline/trial.h"

#include <cmath>
#include <sstream>

namespace squeeze::pipeline {

std::string Distribution::to_text(double internal) const {
  if (kind == Kind::kCategorical) {
    const auto i = static_cast<size_t>(std::llround(internal));
    return i < choices.size() ? choices[i] : std::string("?");
  }
  if (kind == Kind::kInt) return std::to_string(std::llround(internal));
  std::ostringstream out;
  out.precision(10);
  out << internal;
  return out.str();
}

bool Distribution::contains(double internal) const {
  if (!std::isfinite(internal)) return false;
  if (kind == Kind::kCategorical) {
    return internal >= 0 && internal == std::floor(internal) &&
           internal < static_cast<double>(choices.size());
  }
  if (internal < low || internal > high) return false;
  if (kind == Kind::kInt) {
    const double s = step > 0 ? step : 1.0;
    const double k = (internal - low) / s;
    return internal == std::floor(internal) && std::fabs(k - std::round(k)) < 1e-9;
  }
  if (kind == Kind::kFloat && step > 0) {
    const double k = (internal - low) / step;
    return std::fabs(k - std::round(k)) < 1e-6;
  }
  return true;
}

const char* to_string(TrialState s) {
  switch (s) {
    case TrialState::kWaiting: return "waiting";
    case TrialState::kRunning: return "running";
    case TrialState::kComplete: return "complete";
    case TrialState::kPruned: return "pruned";
    case TrialState::kFailed: return "failed";
  }
  return "?";
}

}  // namespace squeeze::pipeline
