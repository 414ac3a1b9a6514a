#pragma once
// What differs between the HTTP providers: URL, headers, request encoding and
// response decoding (plain and streamed). The retry loop, timeouts, error
// mapping and records are shared (http_llm_client.cc). Internal.

#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "af/core/status.h"
#include "af/llm/llm_client.h"
#include "af/llm/types.h"

namespace af::llm {

// Decodes one streamed response. Errors returned from OnEvent stop the
// transfer: kUnavailable is retried (provider overloaded mid-stream), others
// are final.
class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  virtual Status OnEvent(std::string_view event, std::string_view data) = 0;
  // The assembled response; kUnavailable when the stream ended before the
  // provider's end marker (a cut stream, retried).
  virtual Result<LlmResponse> Finish() = 0;
};

class WireCodec {
 public:
  virtual ~WireCodec() = default;
  virtual std::string_view provider() const = 0;
  virtual std::string_view default_base_url() const = 0;
  virtual std::string_view key_env() const = 0;  // ANTHROPIC_API_KEY | OPENAI_API_KEY
  virtual std::string Url(std::string_view base_url) const = 0;
  // Auth and protocol headers; no auth header when api_key is empty.
  virtual std::vector<std::pair<std::string, std::string>> Headers(
      const std::string& api_key) const = 0;
  virtual Result<nlohmann::json> EncodeRequest(const LlmRequest& request,
                                               const std::string& model) const = 0;
  virtual Result<LlmResponse> DecodeResponse(const nlohmann::json& body) const = 0;
  // `on_text` may be empty; it must outlive the decoder.
  virtual std::unique_ptr<StreamDecoder> NewStreamDecoder(const StreamCallback& on_text) const = 0;
};

std::unique_ptr<WireCodec> MakeAnthropicCodec();
std::unique_ptr<WireCodec> MakeOpenAiCodec();

// Shared helpers for the codecs.

// Parses `text` as JSON; kInternal quoting at most its first 200 bytes.
Result<nlohmann::json> ParseProviderJson(std::string_view provider, std::string_view text);

// Parses a tool call's argument text into a JSON object ("" -> {}); a clear
// kInvalidArgument naming the tool when it is not a JSON object.
Result<nlohmann::json> ParseToolArguments(std::string_view provider, const std::string& tool_name,
                                          std::string_view text);

// A tool call from the argument text the model sent. Text that is not a JSON
// object (malformed, or cut off at the output limit) does not fail the
// response: the call comes back with `arguments_error` saying what is wrong
// and where, and `raw_arguments` holding the text (see ToolCall).
ToolCall DecodeToolCall(std::string id, std::string name, std::string_view text);

// Gives each tool call of a reply an id no other call of the conversation
// has: a call without an id, or with one an earlier call has (in the reply,
// or in `used`, the ids of the conversation so far), gets "call_af_<n>", n
// counting on from the conversation's calls. Some local servers send no ids
// or the same one twice, which leaves results unmatched and which strict
// servers refuse when the conversation is sent back. Deterministic: the same
// conversation and reply give the same ids, so recorded requests hash alike.
void AssignToolCallIds(std::set<std::string> used, std::vector<ToolCall>* calls);

// `j[key]` as a string when it is one, else "".
std::string StringField(const nlohmann::json& j, const char* key);
// `j[key]` as an integer when it is a number, else 0.
int64_t IntField(const nlohmann::json& j, const char* key);

// The provider's error message in an error body ({"error": {"message": ...}}
// in both APIs), else the first 200 bytes of the body.
std::string ProviderErrorMessage(std::string_view body);

// Whether a provider's error text says the request does not fit the model's
// context: vLLM's and OpenAI's "maximum context length" (code
// context_length_exceeded), llama.cpp's exceed_context_size_error ("the
// request exceeds the available context size"), Anthropic's "prompt is too
// long" and "max_tokens ... exceeds", LM Studio's "context length".
bool SaysContextTooLong(std::string_view text);

// The hint for such a refusal: the settings that fix it.
std::string ContextTooLongHint();

// The error a server put in a 200 reply or a stream event instead of an
// answer ({"error": {"message": ...}}, {"error": "text"}, Anthropic's
// {"type": "error", "error": {"type": ..., "message": ...}}), with the
// server's own message; Ok when `reply` holds none. Classified as the HTTP
// status it stands for would be (IsRetryableHttpStatus): the error's numeric
// `code` / `status`, else its `type` (invalid_request_error 400, ...,
// overloaded_error 529), else 500, since a local server says "Model unloaded,
// please retry" this way. kUnavailable (retried) for a retryable one,
// kInvalidArgument for a fault of the request.
Status ErrorInReply(std::string_view provider, const nlohmann::json& reply);

std::string Quote200(std::string_view text);

}  // namespace af::llm
