// The replay provider: answers from recorded exchanges, offline: the default
// provider when none is configured, and what the tests and examples use.

#include <fstream>
#include <sstream>

#include "af/core/embedded.h"
#include "af/core/json_util.h"
#include "af/llm/llm_client.h"
#include "llm/replay.h"
#include "llm/wire_codec.h"

namespace af::llm {
namespace {

Status BadLine(const std::string& source, int line, const std::string& what) {
  return InvalidArgument(
      "bad replay recording at " + source + ":" + std::to_string(line) + ": " + what,
      "each line must be {\"match\": {...}, \"response\": {...}}");
}

Result<ReplayEntry> ParseEntry(const nlohmann::json& j, const std::string& source, int line) {
  if (!j.is_object()) return BadLine(source, line, "not a JSON object");
  ReplayEntry e;
  e.line = line;
  if (auto m = j.find("match"); m != j.end()) {
    if (!m->is_object()) return BadLine(source, line, "\"match\" must be an object");
    if (auto v = m->find("role"); v != m->end()) {
      if (!v->is_string()) return BadLine(source, line, "\"match.role\" must be a string");
      e.role = v->get<std::string>();
    }
    if (auto v = m->find("contains"); v != m->end()) {
      if (!v->is_string()) return BadLine(source, line, "\"match.contains\" must be a string");
      e.contains = v->get<std::string>();
    }
    if (auto v = m->find("turn"); v != m->end()) {
      if (!v->is_number_integer()) {
        return BadLine(source, line, "\"match.turn\" must be an integer");
      }
      e.turn = v->get<int>();
    }
  }
  auto r = j.find("response");
  if (r == j.end() || !r->is_object()) {
    return BadLine(source, line, "\"response\" object missing");
  }
  LlmResponse& resp = e.response;
  if (auto v = r->find("text"); v != r->end()) {
    if (!v->is_string()) return BadLine(source, line, "\"response.text\" must be a string");
    resp.text = v->get<std::string>();
  }
  if (auto v = r->find("tool_calls"); v != r->end()) {
    if (!v->is_array()) return BadLine(source, line, "\"response.tool_calls\" must be an array");
    int n = 0;
    for (const nlohmann::json& c : *v) {
      ++n;
      if (!c.is_object() || StringField(c, "name").empty()) {
        return BadLine(source, line, "tool call " + std::to_string(n) + " needs a \"name\"");
      }
      ToolCall call;
      call.name = StringField(c, "name");
      call.id = StringField(c, "id");
      if (call.id.empty()) call.id = "replay_" + std::to_string(line) + "_" + std::to_string(n);
      auto args = c.find("arguments");
      if (args != c.end() && !args->is_null()) {
        if (!args->is_object()) {
          return BadLine(source, line,
                         "arguments of tool call '" + call.name + "' must be an object");
        }
        call.arguments = *args;
      }
      resp.tool_calls.push_back(std::move(call));
    }
  }
  resp.stop_reason = StringField(*r, "stop_reason");
  if (resp.stop_reason.empty())
    resp.stop_reason = resp.tool_calls.empty() ? "end_turn" : "tool_use";
  if (auto u = r->find("usage"); u != r->end() && u->is_object()) {
    resp.usage.input_tokens = IntField(*u, "input_tokens");
    resp.usage.output_tokens = IntField(*u, "output_tokens");
  }
  resp.provider = "replay";
  resp.model = "replay";
  return e;
}

// The agent_role of the optimizer's summarisation requests (kSummarizerRole
// in af/agents/optimizer.h; the llm layer does not include the agents').
constexpr std::string_view kSummarizerRequestRole = "summarizer";

// A summary of a summarisation request without a model: the calls the
// transcript lists, one line each.
LlmResponse LocalSummary(const LlmRequest& request) {
  LlmResponse r;
  r.provider = "replay";
  r.model = "replay";
  r.stop_reason = "end_turn";
  r.text = "Earlier turns (summarised by the replay provider, which has no model): ";
  std::string calls;
  const std::string& text = request.messages.empty() ? std::string() : request.messages[0].text;
  size_t pos = 0;
  int n = 0;
  while ((pos = text.find("\nCALL ", pos)) != std::string::npos && n < 40) {
    size_t end = text.find('\n', pos + 1);
    std::string line =
        text.substr(pos + 6, end == std::string::npos ? std::string::npos : end - pos - 6);
    if (line.size() > 120) line = line.substr(0, 117) + "...";
    calls += (calls.empty() ? "" : "; ") + line;
    ++n;
    pos += 1;
  }
  r.text += calls.empty() ? "no tool calls." : calls + ".";
  return r;
}

class ReplayClient final : public LlmClient {
 public:
  ReplayClient(std::vector<ReplayEntry> entries, std::function<void(const LlmCallRecord&)> on_call)
      : LlmClient(std::move(on_call)), entries_(std::move(entries)) {}

  std::string_view provider() const override { return "replay"; }

 protected:
  std::string DefaultModel() const override { return "replay"; }

  Result<LlmResponse> DoComplete(const LlmRequest& request, const StreamCallback& on_text,
                                 int* attempts) override {
    *attempts = 1;
    LlmResponse r;
    auto e = MatchReplay(entries_, request);
    if (e.ok()) {
      r = (*e)->response;
    } else if (request.agent_role == kSummarizerRequestRole) {
      // A summary nobody recorded: a deterministic one made here, so a
      // conversation condensed under the replay provider still goes on.
      r = LocalSummary(request);
    } else {
      return e.status();
    }
    // Usage measured from what was sent and answered (the recordings' own
    // figures were set by hand): the token measure the budget uses.
    r.usage.input_tokens = EstimateTokens(request);
    r.usage.output_tokens = EstimateTokens(r);
    if (request.stream && on_text && !r.text.empty()) on_text(r.text);
    return r;
  }

 private:
  const std::vector<ReplayEntry> entries_;  // immutable after construction
};

}  // namespace

Result<std::vector<ReplayEntry>> ParseReplay(std::string_view text, const std::string& source) {
  std::vector<ReplayEntry> entries;
  int line_no = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    std::string_view line =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    ++line_no;
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      nlohmann::json j;
      if (Status deep = CheckJsonDepth(line, "the entry"); !deep.ok()) {
        return BadLine(source, line_no, deep.message());
      }
      j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return BadLine(source, line_no, "not valid JSON: " + Quote200(line));
      AF_ASSIGN_OR_RETURN(ReplayEntry e, ParseEntry(j, source, line_no));
      entries.push_back(std::move(e));
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return entries;
}

Result<std::vector<ReplayEntry>> LoadReplayFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFound("cannot read replay file " + path,
                    "check llm.replay_file, or configure a real provider (AF_LLM_PROVIDER)");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseReplay(ss.str(), path);
}

int ReplayTurn(const LlmRequest& request) {
  int n = 0;
  for (const Message& m : request.messages) n += m.role == Role::kAssistant ? 1 : 0;
  return n;
}

Result<const ReplayEntry*> MatchReplay(const std::vector<ReplayEntry>& entries,
                                       const LlmRequest& request) {
  const int turn = ReplayTurn(request);
  const std::string* first_user = nullptr;
  for (const Message& m : request.messages) {
    if (m.role == Role::kUser) {
      first_user = &m.text;
      break;
    }
  }
  for (const ReplayEntry& e : entries) {
    if (e.role && *e.role != request.agent_role) continue;
    // A summarisation request quotes the conversation it condenses: only a
    // recording made for it may answer it, never one that matches by text.
    if (!e.role && request.agent_role == kSummarizerRequestRole) continue;
    if (e.turn && *e.turn != turn) continue;
    if (e.contains && request.system.find(*e.contains) == std::string::npos &&
        (first_user == nullptr || first_user->find(*e.contains) == std::string::npos)) {
      continue;
    }
    return &e;
  }
  return NotFound("no recorded response for role=" + request.agent_role +
                      " turn=" + std::to_string(turn) + " (replay provider)",
                  "the replay provider only knows the recorded example PRPs; configure a real "
                  "model: export ANTHROPIC_API_KEY and set AF_LLM_PROVIDER=anthropic, or "
                  "OPENAI_API_KEY/OPENAI_BASE_URL with AF_LLM_PROVIDER=openai");
}

Result<std::unique_ptr<LlmClient>> MakeReplayClient(const LlmOptions& options) {
  std::vector<ReplayEntry> entries;
  if (options.replay_file.empty()) {
    // The examples' recordings, built into the binary (af/core/embedded.h).
    constexpr char kName[] = "examples/replay/examples.jsonl";
    std::optional<std::string_view> text = FindEmbeddedFile(kName);
    if (!text) return Internal("the built-in replay recordings are missing", "rebuild the binary");
    AF_ASSIGN_OR_RETURN(entries, ParseReplay(*text, std::string("(built in) ") + kName));
  } else {
    AF_ASSIGN_OR_RETURN(entries, LoadReplayFile(options.replay_file));
  }
  return std::unique_ptr<LlmClient>(new ReplayClient(std::move(entries), options.on_call));
}

}  // namespace af::llm
