// The providers' streamed bodies (text/event-stream) and their decoders.
#include <string>
#include <utility>
#include <vector>

#include "fuzz/fuzz.h"
#include "af/core/sse.h"
#include "llm/wire_codec.h"

namespace {

using Events = std::vector<std::pair<std::string, std::string>>;

af::Status Parse(std::string_view body, size_t split, Events* out) {
  af::SseParser parser([out](std::string_view event, std::string_view data) {
    out->emplace_back(event, data);
    return af::Status::Ok();
  });
  AF_RETURN_IF_ERROR(parser.Feed(body.substr(0, split)));
  return parser.Feed(body.substr(split));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body = FuzzText(data, size);
  // Network reads split a stream anywhere: the events must not depend on it.
  Events whole, split;
  af::Status a = Parse(body, body.size(), &whole);
  af::Status b = Parse(body, size == 0 ? 0 : data[0] % (size + 1), &split);
  FUZZ_CHECK(a.ok() == b.ok());
  if (a.ok()) FUZZ_CHECK(whole == split);
  for (const auto& make : {&af::llm::MakeAnthropicCodec, &af::llm::MakeOpenAiCodec}) {
    const auto codec = make();
    std::string text;
    af::StreamCallback on_text = [&text](std::string_view d) { text.append(d); };
    auto decoder = codec->NewStreamDecoder(on_text);
    bool stopped = false;
    for (const auto& [event, payload] : whole) {
      if (!decoder->OnEvent(event, payload).ok()) {
        stopped = true;
        break;
      }
    }
    if (!stopped) (void)decoder->Finish();
  }
  return 0;
}
