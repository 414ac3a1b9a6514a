// submit_plan arguments: the planner model's task DAG.
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "af/agents/tools.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = FuzzText(data, size);
  nlohmann::json args = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (args.is_discarded()) return 0;
  if (!af::CheckPlan(args).empty()) return 0;
  // An accepted plan has 1..50 tasks with unique ids and known dependencies.
  const auto& tasks = args.at("tasks");
  FUZZ_CHECK(tasks.is_array() && !tasks.empty() && tasks.size() <= 50);
  std::set<std::string> ids;
  for (const auto& t : tasks) FUZZ_CHECK(ids.insert(t.at("id").get<std::string>()).second);
  for (const auto& t : tasks) {
    if (!t.contains("dependencies")) continue;
    for (const auto& d : t.at("dependencies")) FUZZ_CHECK(ids.count(d.get<std::string>()) == 1);
  }
  return 0;
}
