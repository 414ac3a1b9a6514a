// The OpenAI Chat Completions wire format (POST {base}/chat/completions), also
// spoken by Ollama, vLLM, llama.cpp server and LM Studio.

#include <map>

#include "af/core/json_util.h"
#include "llm/wire_codec.h"

namespace af::llm {
namespace {

constexpr std::string_view kProvider = "openai";

std::string NormalizeFinishReason(const std::string& s) {
  if (s == "stop") return "end_turn";
  if (s == "tool_calls" || s == "function_call") return "tool_use";
  if (s == "length") return "max_tokens";
  return s;
}

bool IsReasoningModel(std::string_view model) {
  for (std::string_view prefix : {"o1", "o3", "o4", "gpt-5"}) {
    if (model.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

void ReadUsage(const nlohmann::json& j, Usage* usage) {
  auto it = j.find("usage");
  if (it == j.end() || !it->is_object()) return;
  usage->input_tokens = IntField(*it, "prompt_tokens");
  usage->output_tokens = IntField(*it, "completion_tokens");
}

Result<LlmResponse> FinishResponse(LlmResponse r) {
  r.provider = std::string(kProvider);
  if (r.stop_reason.empty()) r.stop_reason = r.tool_calls.empty() ? "end_turn" : "tool_use";
  return r;
}

class OpenAiStreamDecoder final : public StreamDecoder {
 public:
  explicit OpenAiStreamDecoder(const StreamCallback& on_text) : on_text_(on_text) {}

  Status OnEvent(std::string_view event, std::string_view data) override {
    if (data == "[DONE]") {
      done_ = true;
      return Status::Ok();
    }
    AF_ASSIGN_OR_RETURN(nlohmann::json j, ParseProviderJson(kProvider, data));
    AF_RETURN_IF_ERROR(ErrorInReply(kProvider, j));
    if (response_.model.empty()) response_.model = StringField(j, "model");
    ReadUsage(j, &response_.usage);
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array() || choices->empty()) return Status::Ok();
    const nlohmann::json& choice = (*choices)[0];
    std::string finish = StringField(choice, "finish_reason");
    if (!finish.empty()) response_.stop_reason = NormalizeFinishReason(finish);
    auto delta = choice.find("delta");
    if (delta == choice.end() || !delta->is_object()) return Status::Ok();
    std::string text = StringField(*delta, "content");
    if (!text.empty()) {
      response_.text += text;
      if (on_text_) on_text_(text);
    }
    auto calls = delta->find("tool_calls");
    if (calls != delta->end() && calls->is_array()) {
      for (const nlohmann::json& c : *calls) {
        // Fragments of one call share its index; id and name come first.
        Call& call = calls_[IntField(c, "index")];
        std::string id = StringField(c, "id");
        if (!id.empty()) call.id = id;
        const nlohmann::json& fn = c.value("function", nlohmann::json::object());
        std::string name = StringField(fn, "name");
        if (!name.empty()) call.name = name;
        call.arguments += StringField(fn, "arguments");
      }
    }
    return Status::Ok();
  }

  Result<LlmResponse> Finish() override {
    // Some compatible servers end without [DONE]; a finish_reason is as good.
    if (!done_ && response_.stop_reason.empty()) {
      return Unavailable("openai stream ended before [DONE]",
                         "the connection broke mid-response; it is retried automatically");
    }
    for (auto& [index, c] : calls_)
      response_.tool_calls.push_back(DecodeToolCall(c.id, c.name, c.arguments));
    return FinishResponse(std::move(response_));
  }

 private:
  struct Call {
    std::string id, name, arguments;
  };
  const StreamCallback& on_text_;
  LlmResponse response_;
  std::map<int64_t, Call> calls_;  // by tool call index
  bool done_ = false;
};

class OpenAiCodec final : public WireCodec {
 public:
  std::string_view provider() const override { return kProvider; }
  std::string_view default_base_url() const override { return "https://api.openai.com/v1"; }
  std::string_view key_env() const override { return "OPENAI_API_KEY"; }
  std::string Url(std::string_view base) const override {
    return std::string(base) + "/chat/completions";
  }

  std::vector<std::pair<std::string, std::string>> Headers(
      const std::string& api_key) const override {
    std::vector<std::pair<std::string, std::string>> h = {{"content-type", "application/json"}};
    if (!api_key.empty()) h.emplace_back("authorization", "Bearer " + api_key);
    return h;
  }

  Result<nlohmann::json> EncodeRequest(const LlmRequest& req,
                                       const std::string& model) const override {
    nlohmann::json messages = nlohmann::json::array();
    if (!req.system.empty()) messages.push_back({{"role", "system"}, {"content", req.system}});
    for (const Message& m : req.messages) {
      switch (m.role) {
        case Role::kUser:
          messages.push_back({{"role", "user"}, {"content", m.text}});
          break;
        case Role::kAssistant: {
          nlohmann::json msg = {{"role", "assistant"}};
          msg["content"] = m.text.empty() && !m.tool_calls.empty() ? nlohmann::json(nullptr)
                                                                   : nlohmann::json(m.text);
          if (!m.tool_calls.empty()) {
            nlohmann::json calls = nlohmann::json::array();
            for (const ToolCall& c : m.tool_calls) {
              const nlohmann::json& args =
                  c.arguments.is_object() ? c.arguments : nlohmann::json::object();
              calls.push_back({{"id", c.id},
                               {"type", "function"},
                               {"function", {{"name", c.name}, {"arguments", args.dump()}}}});
            }
            msg["tool_calls"] = std::move(calls);
          }
          messages.push_back(std::move(msg));
          break;
        }
        case Role::kTool:
          // Chat Completions has no error flag on tool results: say it in the text.
          messages.push_back({{"role", "tool"},
                              {"tool_call_id", m.tool_call_id},
                              {"content", m.is_error ? "ERROR: " + m.text : m.text}});
          break;
      }
    }
    nlohmann::json body = {{"model", model}, {"messages", std::move(messages)}};
    if (IsReasoningModel(model)) {
      // OpenAI's reasoning models refuse max_tokens and any temperature but 1.
      body["max_completion_tokens"] = req.max_tokens;
    } else {
      body["max_tokens"] = req.max_tokens;
      body["temperature"] = req.temperature;
    }
    if (!req.tools.empty()) {
      nlohmann::json tools = nlohmann::json::array();
      for (const ToolDef& t : req.tools) {
        tools.push_back(
            {{"type", "function"},
             {"function",
              {{"name", t.name},
               {"description", t.description},
               {"parameters", t.input_schema.is_object() ? t.input_schema
                                                         : nlohmann::json{{"type", "object"}}}}}});
      }
      body["tools"] = std::move(tools);
    }
    if (req.stream) {
      body["stream"] = true;
      body["stream_options"] = {{"include_usage", true}};
    }
    return body;
  }

  Result<LlmResponse> DecodeResponse(const nlohmann::json& body) const override {
    AF_RETURN_IF_ERROR(ErrorInReply(kProvider, body));
    auto choices = body.is_object() ? body.find("choices") : body.end();
    if (!body.is_object() || choices == body.end() || !choices->is_array()) {
      return Internal("openai response has no choices: " + Quote200(DumpJson(body)),
                      "the server at the base URL does not speak Chat Completions; check the "
                      "base URL (OPENAI_BASE_URL)");
    }
    if (choices->empty()) {
      // A server that speaks the API but had nothing this time (some local
      // servers do when generation fails): another try usually answers.
      return Unavailable("the openai server returned no choices (an empty \"choices\" list)",
                         "a glitch of the server; the call is retried automatically");
    }
    LlmResponse r;
    r.model = StringField(body, "model");
    ReadUsage(body, &r.usage);
    const nlohmann::json& choice = (*choices)[0];
    r.stop_reason = NormalizeFinishReason(StringField(choice, "finish_reason"));
    const nlohmann::json& msg = choice.value("message", nlohmann::json::object());
    r.text = StringField(msg, "content");
    auto calls = msg.find("tool_calls");
    if (calls != msg.end() && calls->is_array()) {
      for (const nlohmann::json& c : *calls) {
        const nlohmann::json& fn = c.value("function", nlohmann::json::object());
        const std::string name = StringField(fn, "name");
        auto a = fn.find("arguments");
        std::string text;  // "" = no arguments
        if (a != fn.end() && a->is_string()) {
          text = a->get<std::string>();
        } else if (a != fn.end() && !a->is_null()) {
          text = a->dump();  // some compatible servers send an object
        }
        r.tool_calls.push_back(DecodeToolCall(StringField(c, "id"), name, text));
      }
    }
    return FinishResponse(std::move(r));
  }

  std::unique_ptr<StreamDecoder> NewStreamDecoder(const StreamCallback& on_text) const override {
    return std::make_unique<OpenAiStreamDecoder>(on_text);
  }
};

}  // namespace

std::unique_ptr<WireCodec> MakeOpenAiCodec() { return std::make_unique<OpenAiCodec>(); }

}  // namespace af::llm
