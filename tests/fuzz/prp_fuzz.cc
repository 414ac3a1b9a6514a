// Markdown PRPs (files given to run/validate, POST /features text/markdown).
#include <nlohmann/json.hpp>

#include "af/agents/prp.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto request = af::ParseMarkdownPrp(FuzzText(data, size), "fuzz.md");
  if (!request.ok()) return 0;
  const auto issues = af::ValidateWorkPlan(*request, true);
  FUZZ_CHECK(!af::FormatValidationReport(*request, issues).empty());
  // What the Markdown parser accepts, the JSON form carries unchanged: a
  // request submitted either way is the same request.
  const nlohmann::json j = request->ToJson();
  auto back = af::FeatureRequestFromJson(j);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back->ToJson() == j);
  return 0;
}
