// What arrives over HTTP and is parsed by our code (the HTTP framing itself
// is RESTinio's): query strings, Last-Event-ID, POST /features bodies.
#include <string>

#include "af/api/events_stream.h"
#include "af/api/http_types.h"
#include "af/api/routes.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = FuzzText(data, size);
  (void)af::ParseQueryString(text);
  FUZZ_CHECK(af::PercentDecode(text, true).size() <= text.size());
  auto seq = af::ParseLastEventId(text);
  if (seq.ok() && seq->has_value()) {
    FUZZ_CHECK(**seq >= 0);
    auto again = af::ParseLastEventId(std::to_string(**seq));
    FUZZ_CHECK(again.ok() && *again == *seq);
  }
  static const char* const kTypes[] = {"application/json", "text/markdown; charset=utf-8",
                                       "text/plain", "application/x-www-form-urlencoded", ""};
  af::HttpRequest request;
  request.method = "POST";
  request.body = std::string(text);
  if (size > 0) request.headers["content-type"] = kTypes[data[0] % 5];
  (void)af::ParseFeatureBody(request);
  (void)af::ParseJsonObjectBody(request.body);
  return 0;
}
