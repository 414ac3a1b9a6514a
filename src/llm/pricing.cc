#include "af/llm/pricing.h"

#include <array>
#include <string_view>

namespace af {
namespace {

struct PriceEntry {
  std::string_view prefix;
  ModelPrice price;
};

// List prices in USD per million tokens (input, output). Longest prefix wins,
// so specific entries ("gpt-4o-mini") may sit next to general ones ("gpt-4o").
constexpr std::array kPrices = {
    // Anthropic
    PriceEntry{"claude-opus-4-5", {5.0, 25.0}},
    PriceEntry{"claude-opus-4", {15.0, 75.0}},
    PriceEntry{"claude-sonnet-4", {3.0, 15.0}},
    PriceEntry{"claude-haiku-4", {1.0, 5.0}},
    PriceEntry{"claude-3-opus", {15.0, 75.0}},
    PriceEntry{"claude-3-7-sonnet", {3.0, 15.0}},
    PriceEntry{"claude-3-5-sonnet", {3.0, 15.0}},
    PriceEntry{"claude-3-5-haiku", {0.8, 4.0}},
    PriceEntry{"claude-3-haiku", {0.25, 1.25}},
    // OpenAI
    PriceEntry{"gpt-5-nano", {0.05, 0.4}},
    PriceEntry{"gpt-5-mini", {0.25, 2.0}},
    PriceEntry{"gpt-5", {1.25, 10.0}},
    PriceEntry{"gpt-4.1-nano", {0.1, 0.4}},
    PriceEntry{"gpt-4.1-mini", {0.4, 1.6}},
    PriceEntry{"gpt-4.1", {2.0, 8.0}},
    PriceEntry{"gpt-4o-mini", {0.15, 0.6}},
    PriceEntry{"gpt-4o", {2.5, 10.0}},
    PriceEntry{"gpt-4-turbo", {10.0, 30.0}},
    PriceEntry{"gpt-3.5-turbo", {0.5, 1.5}},
    PriceEntry{"o4-mini", {1.1, 4.4}},
    PriceEntry{"o3-mini", {1.1, 4.4}},
    PriceEntry{"o3", {2.0, 8.0}},
    PriceEntry{"o1-mini", {1.1, 4.4}},
    PriceEntry{"o1", {15.0, 60.0}},
};

}  // namespace

std::optional<ModelPrice> LookupPrice(std::string_view model, const PriceTable& overrides) {
  // Configured prices match the name as configured ("ollama/llama3") or
  // without its vendor part, like the built-in ones.
  const std::pair<const std::string, ModelPrice>* configured = nullptr;
  const size_t slash = model.rfind('/');
  const std::string_view bare = slash == std::string_view::npos ? model : model.substr(slash + 1);
  for (const auto& entry : overrides) {
    const std::string& prefix = entry.first;
    bool match =
        model.substr(0, prefix.size()) == prefix || bare.substr(0, prefix.size()) == prefix;
    if (match && (configured == nullptr || prefix.size() > configured->first.size())) {
      configured = &entry;
    }
  }
  if (configured != nullptr) return configured->second;
  model = bare;
  const PriceEntry* best = nullptr;
  for (const PriceEntry& e : kPrices) {
    if (model.substr(0, e.prefix.size()) == e.prefix &&
        (best == nullptr || e.prefix.size() > best->prefix.size())) {
      best = &e;
    }
  }
  if (best == nullptr) return std::nullopt;
  return best->price;
}

double CostUsd(std::string_view provider, std::string_view model, const Usage& usage,
               const PriceTable& overrides) {
  if (provider == "replay") return 0;
  auto price = LookupPrice(model, overrides);
  if (!price) return 0;
  // Cached input: reads cost a tenth of the input rate, writes a quarter more.
  const double input = static_cast<double>(usage.input_tokens) +
                       0.1 * static_cast<double>(usage.cache_read_tokens) +
                       1.25 * static_cast<double>(usage.cache_creation_tokens);
  return (input * price->input_per_mtok +
          static_cast<double>(usage.output_tokens) * price->output_per_mtok) /
         1e6;
}

}  // namespace af
