// The providers' plain JSON responses, error bodies and tool arguments.
#include <nlohmann/json.hpp>

#include "fuzz/fuzz.h"
#include "llm/wire_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = FuzzText(data, size);
  FUZZ_CHECK(af::llm::ProviderErrorMessage(text).size() <= text.size() + 64);
  for (const auto& make : {&af::llm::MakeAnthropicCodec, &af::llm::MakeOpenAiCodec}) {
    const auto codec = make();
    auto body = af::llm::ParseProviderJson(codec->provider(), text);
    if (body.ok()) {
      auto response = codec->DecodeResponse(*body);
      if (response.ok()) {
        for (const auto& call : response->tool_calls) FUZZ_CHECK(call.arguments.is_object());
      }
    }
    auto args = af::llm::ParseToolArguments(codec->provider(), "write_file", text);
    if (args.ok()) FUZZ_CHECK(args->is_object());
  }
  return 0;
}
