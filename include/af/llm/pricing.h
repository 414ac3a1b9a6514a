#pragma once
// Public list prices for common hosted models, used to put a USD cost on every
// LLM call (budgets, per-feature totals). Approximate by design: a model not in
// the table (local models, replay) costs 0.

#include <optional>
#include <string_view>

#include "af/llm/types.h"

namespace af {

struct ModelPrice {
  double input_per_mtok = 0;   // USD per million input tokens
  double output_per_mtok = 0;  // USD per million output tokens
};

// The price of `model`, matched by the longest known name prefix
// ("claude-sonnet-4-5-20250929" -> "claude-sonnet-4"); a leading "vendor/"
// part ("anthropic/claude-...") is ignored. nullopt for unknown models.
std::optional<ModelPrice> LookupPrice(std::string_view model);

// USD cost of `usage` on `model`; 0 for provider "replay" and unknown models.
double CostUsd(std::string_view provider, std::string_view model, const Usage& usage);

}  // namespace af
