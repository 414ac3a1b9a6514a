#pragma once
// Public list prices for common hosted models, used to put a USD cost on every
// LLM call (budgets, per-feature totals). Approximate by design: a model not in
// the table (local models, replay) costs 0. The configuration's llm.prices
// (ParsePrices) replace or extend it.

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "af/core/config.h"
#include "af/llm/types.h"

namespace af {

// Model name prefix -> price; consulted before the built-in table.
using PriceTable = std::map<std::string, ModelPrice>;

// The price of `model`, matched by the longest name prefix in `overrides`,
// else the longest in the built-in table ("claude-sonnet-4-5-20250929" ->
// "claude-sonnet-4"); a leading "vendor/" part ("anthropic/claude-...") is
// ignored. nullopt for unknown models.
std::optional<ModelPrice> LookupPrice(std::string_view model, const PriceTable& overrides = {});

// USD cost of `usage` on `model`; 0 for provider "replay" and unknown models.
double CostUsd(std::string_view provider, std::string_view model, const Usage& usage,
               const PriceTable& overrides = {});

}  // namespace af
