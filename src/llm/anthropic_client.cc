// The Anthropic Messages API wire format (POST {base}/v1/messages).

#include <map>

#include "af/core/json_util.h"
#include "llm/wire_codec.h"

namespace af::llm {
namespace {

constexpr std::string_view kProvider = "anthropic";

std::string NormalizeStopReason(const std::string& s) {
  // Anthropic's values are the normalized vocabulary already.
  return s;
}

// Appends `block` to the conversation as part of a message of `role`, merging
// into the previous message when it has the same role: the API wants user and
// assistant turns to alternate, and all results of one assistant turn belong
// in a single user message.
void AppendBlock(nlohmann::json& messages, const char* role, nlohmann::json block) {
  if (!messages.empty() && messages.back()["role"] == role) {
    messages.back()["content"].push_back(std::move(block));
    return;
  }
  messages.push_back({{"role", role}, {"content", nlohmann::json::array({std::move(block)})}});
}

// The prompt cache's share of the input (see EncodeRequest's breakpoints).
void ReadCacheUsage(const nlohmann::json& usage, Usage* out) {
  if (usage.contains("cache_read_input_tokens"))
    out->cache_read_tokens = IntField(usage, "cache_read_input_tokens");
  if (usage.contains("cache_creation_input_tokens"))
    out->cache_creation_tokens = IntField(usage, "cache_creation_input_tokens");
}

Result<LlmResponse> FinishResponse(LlmResponse r) {
  r.provider = std::string(kProvider);
  if (r.stop_reason.empty()) r.stop_reason = r.tool_calls.empty() ? "end_turn" : "tool_use";
  return r;
}

class AnthropicStreamDecoder final : public StreamDecoder {
 public:
  explicit AnthropicStreamDecoder(const StreamCallback& on_text) : on_text_(on_text) {}

  Status OnEvent(std::string_view event, std::string_view data) override {
    AF_ASSIGN_OR_RETURN(nlohmann::json j, ParseProviderJson(kProvider, data));
    const std::string type = StringField(j, "type");
    if (type == "message_start") {
      const nlohmann::json& msg = j.value("message", nlohmann::json::object());
      response_.model = StringField(msg, "model");
      const nlohmann::json& usage = msg.value("usage", nlohmann::json::object());
      response_.usage.input_tokens = IntField(usage, "input_tokens");
      response_.usage.output_tokens = IntField(usage, "output_tokens");
      ReadCacheUsage(usage, &response_.usage);
    } else if (type == "content_block_start") {
      const int64_t index = IntField(j, "index");
      const nlohmann::json& block = j.value("content_block", nlohmann::json::object());
      Block& b = blocks_[index];
      b.type = StringField(block, "type");
      if (b.type == "tool_use") {
        b.id = StringField(block, "id");
        b.name = StringField(block, "name");
        auto input = block.find("input");
        if (input != block.end() && input->is_object() && !input->empty()) {
          b.json = input->dump();
        }
      } else if (b.type == "text") {
        AddText(StringField(block, "text"));
      }
    } else if (type == "content_block_delta") {
      const nlohmann::json& delta = j.value("delta", nlohmann::json::object());
      const std::string dtype = StringField(delta, "type");
      if (dtype == "text_delta") {
        AddText(StringField(delta, "text"));
      } else if (dtype == "input_json_delta") {
        blocks_[IntField(j, "index")].json += StringField(delta, "partial_json");
      }
    } else if (type == "message_delta") {
      const nlohmann::json& delta = j.value("delta", nlohmann::json::object());
      std::string stop = StringField(delta, "stop_reason");
      if (!stop.empty()) response_.stop_reason = NormalizeStopReason(stop);
      // The usage here is cumulative for the message.
      const nlohmann::json& usage = j.value("usage", nlohmann::json::object());
      if (usage.contains("output_tokens")) {
        response_.usage.output_tokens = IntField(usage, "output_tokens");
      }
      if (usage.contains("input_tokens")) {
        response_.usage.input_tokens = IntField(usage, "input_tokens");
      }
    } else if (type == "message_stop") {
      done_ = true;
    } else if (type == "error") {
      Status error = ErrorInReply(kProvider, j);
      if (error.ok())
        error = Unavailable("anthropic stream error without details: " + Quote200(data));
      return error;
    }
    // ping and unknown events are ignored, as the API asks.
    return Status::Ok();
  }

  Result<LlmResponse> Finish() override {
    if (!done_) {
      return Unavailable("anthropic stream ended before message_stop",
                         "the connection broke mid-response; it is retried automatically");
    }
    for (auto& [index, b] : blocks_) {
      if (b.type != "tool_use") continue;
      response_.tool_calls.push_back(DecodeToolCall(b.id, b.name, b.json));
    }
    return FinishResponse(std::move(response_));
  }

 private:
  struct Block {
    std::string type;
    std::string id, name;
    std::string json;  // accumulated input_json_delta fragments
  };

  void AddText(const std::string& t) {
    if (t.empty()) return;
    response_.text += t;
    if (on_text_) on_text_(t);
  }

  const StreamCallback& on_text_;
  LlmResponse response_;
  std::map<int64_t, Block> blocks_;  // by content block index
  bool done_ = false;
};

class AnthropicCodec final : public WireCodec {
 public:
  std::string_view provider() const override { return kProvider; }
  std::string_view default_base_url() const override { return "https://api.anthropic.com"; }
  std::string_view key_env() const override { return "ANTHROPIC_API_KEY"; }
  std::string Url(std::string_view base) const override {
    return std::string(base) + "/v1/messages";
  }

  std::vector<std::pair<std::string, std::string>> Headers(
      const std::string& api_key) const override {
    std::vector<std::pair<std::string, std::string>> h = {{"content-type", "application/json"},
                                                          {"anthropic-version", "2023-06-01"}};
    if (!api_key.empty()) h.emplace_back("x-api-key", api_key);
    return h;
  }

  Result<nlohmann::json> EncodeRequest(const LlmRequest& req,
                                       const std::string& model) const override {
    nlohmann::json messages = nlohmann::json::array();
    for (const Message& m : req.messages) {
      switch (m.role) {
        case Role::kUser:
          AppendBlock(messages, "user", {{"type", "text"}, {"text", m.text}});
          break;
        case Role::kAssistant:
          // The API rejects empty text blocks; an empty turn carries nothing.
          if (!m.text.empty()) {
            AppendBlock(messages, "assistant", {{"type", "text"}, {"text", m.text}});
          }
          for (const ToolCall& c : m.tool_calls) {
            AppendBlock(
                messages, "assistant",
                {{"type", "tool_use"},
                 {"id", c.id},
                 {"name", c.name},
                 {"input", c.arguments.is_object() ? c.arguments : nlohmann::json::object()}});
          }
          break;
        case Role::kTool: {
          nlohmann::json block = {
              {"type", "tool_result"}, {"tool_use_id", m.tool_call_id}, {"content", m.text}};
          if (m.is_error) block["is_error"] = true;
          AppendBlock(messages, "user", std::move(block));
          break;
        }
      }
    }
    // Prompt caching: the system prompt, the tool definitions and the first
    // user message (the agent's context) are the same on every turn of a
    // conversation, so each carries a cache breakpoint and later turns pay the
    // cached rate for that prefix. The fourth (the most the API allows) is on
    // the last message: the next turn repeats this whole request before its
    // new messages, so it reads all of it from the cache, not only the
    // context (until condensing rewrites an older message).
    const nlohmann::json ephemeral = {{"type", "ephemeral"}};
    if (!messages.empty() && messages[0]["role"] == "user" && !messages[0]["content"].empty())
      messages[0]["content"][0]["cache_control"] = ephemeral;
    if (messages.size() > 1 && !messages.back()["content"].empty())
      messages.back()["content"].back()["cache_control"] = ephemeral;
    nlohmann::json body = {{"model", model},
                           {"max_tokens", req.max_tokens},
                           {"temperature", req.temperature},
                           {"messages", std::move(messages)}};
    if (!req.system.empty()) {
      body["system"] = nlohmann::json::array(
          {{{"type", "text"}, {"text", req.system}, {"cache_control", ephemeral}}});
    }
    if (!req.tools.empty()) {
      nlohmann::json tools = nlohmann::json::array();
      for (const ToolDef& t : req.tools) {
        tools.push_back(
            {{"name", t.name},
             {"description", t.description},
             {"input_schema",
              t.input_schema.is_object() ? t.input_schema : nlohmann::json{{"type", "object"}}}});
      }
      tools.back()["cache_control"] = ephemeral;
      body["tools"] = std::move(tools);
    }
    if (req.stream) body["stream"] = true;
    return body;
  }

  Result<LlmResponse> DecodeResponse(const nlohmann::json& body) const override {
    AF_RETURN_IF_ERROR(ErrorInReply(kProvider, body));
    if (!body.is_object() || !body.contains("content") || !body["content"].is_array()) {
      return Internal("anthropic response has no content array: " + Quote200(DumpJson(body)),
                      "the server at the base URL does not speak the Messages API; check the "
                      "base URL (ANTHROPIC_BASE_URL)");
    }
    LlmResponse r;
    r.model = StringField(body, "model");
    r.stop_reason = NormalizeStopReason(StringField(body, "stop_reason"));
    const nlohmann::json& usage = body.value("usage", nlohmann::json::object());
    r.usage.input_tokens = IntField(usage, "input_tokens");
    r.usage.output_tokens = IntField(usage, "output_tokens");
    ReadCacheUsage(usage, &r.usage);
    for (const nlohmann::json& block : body["content"]) {
      const std::string type = StringField(block, "type");
      if (type == "text") {
        r.text += StringField(block, "text");
      } else if (type == "tool_use") {
        const std::string name = StringField(block, "name");
        auto input = block.find("input");
        std::string text;  // "" = no arguments
        if (input != block.end() && input->is_string()) {
          // Not what the API sends, but some proxies pass arguments as text.
          text = input->get<std::string>();
        } else if (input != block.end() && !input->is_null()) {
          text = input->dump();
        }
        r.tool_calls.push_back(DecodeToolCall(StringField(block, "id"), name, text));
      }
    }
    return FinishResponse(std::move(r));
  }

  std::unique_ptr<StreamDecoder> NewStreamDecoder(const StreamCallback& on_text) const override {
    return std::make_unique<AnthropicStreamDecoder>(on_text);
  }
};

}  // namespace

std::unique_ptr<WireCodec> MakeAnthropicCodec() { return std::make_unique<AnthropicCodec>(); }

}  // namespace af::llm
