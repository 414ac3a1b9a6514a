// JSON feature requests (POST /features application/json, .json PRP files).
#include <nlohmann/json.hpp>

#include "af/agents/prp.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = FuzzText(data, size);
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return 0;
  auto request = af::FeatureRequestFromJson(j);
  if (!request.ok()) return 0;
  (void)af::ValidateWorkPlan(*request, true);
  // Reading back what was read is a fixed point.
  const nlohmann::json once = request->ToJson();
  auto again = af::FeatureRequestFromJson(once);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->ToJson() == once);
  return 0;
}
