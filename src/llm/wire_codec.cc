#include "llm/wire_codec.h"

#include <cctype>
#include <map>
#include <optional>

#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "llm/retry.h"

namespace af::llm {
namespace {

// The 16-bit code unit a JSON unicode escape (backslash, u, four hex digits) at
// text[at] stands for; -1 when there is no such escape there.
int UnicodeEscapeAt(std::string_view text, size_t at) {
  if (at + 6 > text.size() || text[at] != '\\' || text[at + 1] != 'u') return -1;
  int unit = 0;
  for (size_t k = at + 2; k < at + 6; ++k) {
    const char c = text[k];
    const int digit = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                             : -1;
    if (digit < 0) return -1;
    unit = unit * 16 + digit;
  }
  return unit;
}

// `text` with what some servers let slip into a reply made parseable: bytes
// that are not UTF-8 (a token cut in the middle of a character) become U+FFFD,
// and an escape of half a surrogate pair ("\ud83d" alone) becomes "\ufffd".
// nlohmann refuses both, and would cost the whole reply for one character.
std::string RepairJsonText(std::string_view text) {
  const std::string s = ReplaceInvalidUtf8(text);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const int unit = UnicodeEscapeAt(s, i);
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      const int low = UnicodeEscapeAt(s, i + 6);
      if (low >= 0xDC00 && low <= 0xDFFF) {  // a whole pair
        out.append(s, i, 12);
        i += 11;
        continue;
      }
    }
    if (unit >= 0xD800 && unit <= 0xDFFF) {
      out += "\\ufffd";
      i += 5;
      continue;
    }
    out.append(s, i, 2);  // any other escape, "\\" included, as it is
    ++i;
  }
  return out;
}

// Parses a reply (`text` as it is, else repaired); discarded when it is not
// JSON either way.
nlohmann::json ParseReply(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded()) return j;
  const std::string repaired = RepairJsonText(text);
  if (repaired == text) return j;
  return nlohmann::json::parse(repaired, nullptr, /*allow_exceptions=*/false);
}

// The JSON inside one markdown code fence around `text` ("```json\n{...}\n```",
// "```{...}```"), as some local models wrap tool arguments; nullopt when
// there is no fence or no JSON inside.
std::optional<nlohmann::json> ParseInsideCodeFence(std::string_view text) {
  std::string_view t = Trim(text);
  constexpr std::string_view kFence = "```";
  if (t.size() < 2 * kFence.size() || !t.starts_with(kFence) || !t.ends_with(kFence)) {
    return std::nullopt;
  }
  t = t.substr(kFence.size(), t.size() - 2 * kFence.size());
  // The info string ("json") before the JSON.
  size_t start = 0;
  while (start < t.size() && (std::isalnum(static_cast<unsigned char>(t[start])) ||
                              t[start] == '-' || t[start] == '_')) {
    ++start;
  }
  t = Trim(t.substr(start));
  if (!CheckJsonDepth(t, "the arguments").ok()) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(t, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

// The HTTP status an error object in a reply stands for (see ErrorInReply).
int StatusOfReplyError(const nlohmann::json& error) {
  for (const char* key : {"code", "status"}) {
    const int64_t status = IntField(error, key);
    if (status >= 400 && status < 600) return static_cast<int>(status);
  }
  static const std::map<std::string, int, std::less<>> kByType = {{"invalid_request_error", 400},
                                                                  {"authentication_error", 401},
                                                                  {"permission_error", 403},
                                                                  {"not_found_error", 404},
                                                                  {"request_too_large", 413},
                                                                  {"rate_limit_error", 429},
                                                                  {"api_error", 500},
                                                                  {"server_error", 500},
                                                                  {"overloaded_error", 529}};
  auto it = kByType.find(StringField(error, "type"));
  return it == kByType.end() ? 500 : it->second;
}

}  // namespace

std::string Quote200(std::string_view text) {
  constexpr size_t kMax = 200;
  std::string out = "'";
  out.append(text.substr(0, kMax));
  out.append("'");
  if (text.size() > kMax) out.append(" (" + std::to_string(text.size()) + " bytes, cut)");
  return out;
}

Result<nlohmann::json> ParseProviderJson(std::string_view provider, std::string_view text) {
  if (Status deep = CheckJsonDepth(text, std::string(provider) + " sent JSON that"); !deep.ok()) {
    return Internal(deep.message(), "the server at the base URL does not speak the " +
                                        std::string(provider) +
                                        " API correctly; check the base URL");
  }
  nlohmann::json j = ParseReply(text);
  if (j.is_discarded()) {
    return Internal(std::string(provider) + " sent malformed JSON: " + Quote200(text),
                    "the server at the base URL does not speak the " + std::string(provider) +
                        " API correctly; check the base URL");
  }
  return j;
}

Result<nlohmann::json> ParseToolArguments(std::string_view provider, const std::string& tool_name,
                                          std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return nlohmann::json::object();
  if (Status deep =
          CheckJsonDepth(text, "the arguments the model sent for tool '" + tool_name + "'");
      !deep.ok()) {
    return InvalidArgument(deep.message(), std::string(provider) +
                                               " returned an invalid tool call; retry the step or "
                                               "use a model with reliable tool calling");
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument("the model sent arguments for tool '" + tool_name +
                               "' that are not a JSON object: " + Quote200(text),
                           std::string(provider) +
                               " returned an invalid tool call; retry the step or use a model "
                               "with reliable tool calling");
  }
  return j;
}

ToolCall DecodeToolCall(std::string id, std::string name, std::string_view text) {
  ToolCall call;
  call.id = std::move(id);
  call.name = std::move(name);
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return call;  // "" = {}
  auto refuse = [&](std::string why) {
    call.arguments_error = std::move(why);
    call.raw_arguments = std::string(text);
    return call;
  };
  if (Status deep = CheckJsonDepth(text, "the arguments"); !deep.ok())
    return refuse(deep.message());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range
    if (std::optional<nlohmann::json> fenced = ParseInsideCodeFence(text)) {
      j = std::move(*fenced);
    } else {
      // what() is "[json.exception.parse_error.101] parse error at line 1,
      // column 24: syntax error ..."; the bracketed id means nothing to a model.
      std::string what = e.what();
      if (size_t close = what.find("] ");
          what.rfind("[json.exception", 0) == 0 && close != what.npos)
        what = what.substr(close + 2);
      return refuse("the arguments are not valid JSON (" + std::to_string(text.size()) +
                    " characters received): " + what);
    }
  }
  if (!j.is_object())
    return refuse(std::string("the arguments are a JSON ") + j.type_name() + ", not an object");
  call.arguments = std::move(j);
  return call;
}

void AssignToolCallIds(std::set<std::string> used, std::vector<ToolCall>* calls) {
  size_t next = used.size();
  for (ToolCall& call : *calls) {
    if (!call.id.empty() && used.insert(call.id).second) continue;
    do {
      call.id = "call_af_" + std::to_string(next++);
    } while (!used.insert(call.id).second);
  }
}

std::string StringField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

int64_t IntField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->get<int64_t>();
}

std::string ProviderErrorMessage(std::string_view body) {
  nlohmann::json j;
  // Not repaired: a body with bad bytes is quoted as it is, no longer than it.
  if (CheckJsonDepth(body, "reply").ok()) {
    j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  }
  if (j.is_object()) {
    auto it = j.find("error");
    if (it != j.end()) {
      if (it->is_string()) return it->get<std::string>();
      std::string msg = StringField(*it, "message");
      if (!msg.empty()) return msg;
    }
    std::string msg = StringField(j, "message");
    if (!msg.empty()) return msg;
  }
  if (body.empty()) return "(empty body)";
  return Quote200(body);
}

Status ErrorInReply(std::string_view provider, const nlohmann::json& reply) {
  if (!reply.is_object()) return Status::Ok();
  auto it = reply.find("error");
  if (it == reply.end() || !(it->is_object() || it->is_string())) return Status::Ok();
  std::string message = it->is_string() ? it->get<std::string>() : StringField(*it, "message");
  if (message.empty()) message = Quote200(DumpJson(*it));
  const std::string type = StringField(*it, "type");
  const std::string what = std::string(provider) + " server sent an error instead of a reply" +
                           (type.empty() ? "" : " (" + type + ")") + ": " + message;
  if (IsRetryableHttpStatus(it->is_object() ? StatusOfReplyError(*it) : 500)) {
    return Unavailable(what,
                       "the server failed instead of answering (e.g. it was loading the model); "
                       "the call is retried automatically");
  }
  return InvalidArgument(what, SaysContextTooLong(DumpJson(*it))
                                   ? ContextTooLongHint()
                                   : "check the model name and the LLM settings");
}

bool SaysContextTooLong(std::string_view text) {
  const std::string lower = Lower(text);
  auto has = [&](std::string_view needle) { return lower.find(needle) != std::string::npos; };
  for (std::string_view needle :
       {"context_length_exceeded", "exceed_context_size", "context length", "context size",
        "context window", "context limit", "prompt is too long"}) {
    if (has(needle)) return true;
  }
  return has("max_tokens") && (has("exceed") || has("too large") || has("maximum"));
}

std::string ContextTooLongHint() {
  return "the conversation plus the reply's max_tokens do not fit the model's context: lower "
         "agents.<role>.max_tokens (AF_AGENTS_<ROLE>_MAX_TOKENS; llm.max_tokens, "
         "AF_LLM_MAX_TOKENS, for every role) well below the server's context size, and set "
         "context.window_tokens (AF_CONTEXT_WINDOW_TOKENS) to that size so the conversation is "
         "condensed to fit";
}

}  // namespace af::llm
