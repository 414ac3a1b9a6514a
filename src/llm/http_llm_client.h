#pragma once
// The LlmClient for HTTP providers: retries, timeouts, error mapping and key
// checks shared by anthropic and openai; the wire format comes from a
// WireCodec. Internal: use LlmClient::Create.

#include <memory>

#include "af/llm/llm_client.h"
#include "llm/wire_codec.h"

namespace af::llm {

Result<std::unique_ptr<LlmClient>> MakeHttpLlmClient(const LlmOptions& options,
                                                     std::unique_ptr<WireCodec> codec);

}  // namespace af::llm
