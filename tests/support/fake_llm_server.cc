#include "support/fake_llm_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <ctime>
#include <stdexcept>

#include "af/api/http_types.h"

namespace af::testing {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// `keep`: the connection stays open for the client's next request.
std::string PlainHead(int status, size_t length,
                      const std::map<std::string, std::string>& extra = {}, bool keep = false) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + std::string(ReasonPhrase(status)) +
                  "\r\nContent-Length: " + std::to_string(length) +
                  (keep ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n");
  bool has_type = false;
  for (const auto& [k, v] : extra) {
    h += k + ": " + v + "\r\n";
    has_type = has_type || Lower(k) == "content-type";
  }
  if (!has_type) h += "Content-Type: application/json\r\n";
  return h + "\r\n";
}

constexpr std::string_view kSseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "Connection: close\r\n\r\n";

std::string ArgsText(const FakeToolCall& c) {
  return c.raw_arguments.empty() ? c.arguments.dump() : c.raw_arguments;
}

// Splits `s` into up to three pieces so streams carry several deltas.
std::vector<std::string> Pieces(const std::string& s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  size_t step = s.size() < 3 ? 1 : s.size() / 3;
  for (size_t i = 0; i < s.size(); i += step) {
    out.push_back(s.substr(i, out.size() == 2 ? std::string::npos : step));
    if (out.size() == 3) break;
  }
  return out;
}

std::string StopReason(const FakeReply& r) {
  if (!r.stop_reason.empty()) return r.stop_reason;
  return r.tool_calls.empty() ? "end_turn" : "tool_use";
}

std::string OpenAiFinish(const std::string& stop) {
  if (stop == "end_turn") return "stop";
  if (stop == "tool_use") return "tool_calls";
  if (stop == "max_tokens") return "length";
  return stop;
}

std::string ToolId(const FakeToolCall& c, size_t i) {
  return c.id.empty() ? "call_" + std::to_string(i) : c.id;
}

// --- Anthropic Messages ---

std::string AnthropicPlain(const FakeReply& r, const std::string& model) {
  nlohmann::json content = nlohmann::json::array();
  if (!r.text.empty()) content.push_back({{"type", "text"}, {"text", r.text}});
  for (size_t i = 0; i < r.tool_calls.size(); ++i) {
    const FakeToolCall& c = r.tool_calls[i];
    nlohmann::json input = c.raw_arguments.empty() ? c.arguments : nlohmann::json(c.raw_arguments);
    content.push_back(
        {{"type", "tool_use"}, {"id", ToolId(c, i)}, {"name", c.name}, {"input", input}});
  }
  return nlohmann::json{
      {"id", "msg_fake"},
      {"type", "message"},
      {"role", "assistant"},
      {"model", model},
      {"content", content},
      {"stop_reason", StopReason(r)},
      {"stop_sequence", nullptr},
      {"usage", {{"input_tokens", r.input_tokens}, {"output_tokens", r.output_tokens}}}}
      .dump();
}

std::string SseEvent(const std::string& name, const nlohmann::json& data) {
  return "event: " + name + "\ndata: " + data.dump() + "\n\n";
}

std::vector<std::string> AnthropicEvents(const FakeReply& r, const std::string& model) {
  std::vector<std::string> ev;
  ev.push_back(SseEvent("message_start",
                        {{"type", "message_start"},
                         {"message",
                          {{"id", "msg_fake"},
                           {"type", "message"},
                           {"role", "assistant"},
                           {"model", model},
                           {"content", nlohmann::json::array()},
                           {"stop_reason", nullptr},
                           {"usage", {{"input_tokens", r.input_tokens}, {"output_tokens", 1}}}}}}));
  ev.push_back(SseEvent("ping", {{"type", "ping"}}));
  int index = 0;
  if (!r.text.empty()) {
    ev.push_back(
        SseEvent("content_block_start", {{"type", "content_block_start"},
                                         {"index", index},
                                         {"content_block", {{"type", "text"}, {"text", ""}}}}));
    for (const std::string& p : Pieces(r.text)) {
      ev.push_back(
          SseEvent("content_block_delta", {{"type", "content_block_delta"},
                                           {"index", index},
                                           {"delta", {{"type", "text_delta"}, {"text", p}}}}));
    }
    ev.push_back(
        SseEvent("content_block_stop", {{"type", "content_block_stop"}, {"index", index}}));
    ++index;
  }
  for (size_t i = 0; i < r.tool_calls.size(); ++i, ++index) {
    const FakeToolCall& c = r.tool_calls[i];
    ev.push_back(SseEvent("content_block_start", {{"type", "content_block_start"},
                                                  {"index", index},
                                                  {"content_block",
                                                   {{"type", "tool_use"},
                                                    {"id", ToolId(c, i)},
                                                    {"name", c.name},
                                                    {"input", nlohmann::json::object()}}}}));
    for (const std::string& p : Pieces(ArgsText(c))) {
      ev.push_back(SseEvent("content_block_delta",
                            {{"type", "content_block_delta"},
                             {"index", index},
                             {"delta", {{"type", "input_json_delta"}, {"partial_json", p}}}}));
    }
    ev.push_back(
        SseEvent("content_block_stop", {{"type", "content_block_stop"}, {"index", index}}));
  }
  ev.push_back(SseEvent("message_delta",
                        {{"type", "message_delta"},
                         {"delta", {{"stop_reason", StopReason(r)}, {"stop_sequence", nullptr}}},
                         {"usage", {{"output_tokens", r.output_tokens}}}}));
  ev.push_back(SseEvent("message_stop", {{"type", "message_stop"}}));
  return ev;
}

// --- OpenAI Chat Completions ---

nlohmann::json OpenAiToolCalls(const FakeReply& r) {
  nlohmann::json calls = nlohmann::json::array();
  for (size_t i = 0; i < r.tool_calls.size(); ++i) {
    const FakeToolCall& c = r.tool_calls[i];
    calls.push_back({{"id", ToolId(c, i)},
                     {"type", "function"},
                     {"function", {{"name", c.name}, {"arguments", ArgsText(c)}}}});
  }
  return calls;
}

nlohmann::json OpenAiUsage(const FakeReply& r) {
  return {{"prompt_tokens", r.input_tokens},
          {"completion_tokens", r.output_tokens},
          {"total_tokens", r.input_tokens + r.output_tokens}};
}

std::string OpenAiPlain(const FakeReply& r, const std::string& model) {
  nlohmann::json msg = {
      {"role", "assistant"},
      {"content", r.text.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.text)}};
  if (!r.tool_calls.empty()) msg["tool_calls"] = OpenAiToolCalls(r);
  return nlohmann::json{
      {"id", "chatcmpl-fake"},
      {"object", "chat.completion"},
      {"created", 1700000000},
      {"model", model},
      {"choices",
       {{{"index", 0}, {"message", msg}, {"finish_reason", OpenAiFinish(StopReason(r))}}}},
      {"usage", OpenAiUsage(r)}}
      .dump();
}

std::vector<std::string> OpenAiEvents(const FakeReply& r, const std::string& model,
                                      bool include_usage) {
  auto chunk = [&](nlohmann::json delta, nlohmann::json finish) {
    return "data: " +
           nlohmann::json{
               {"id", "chatcmpl-fake"},
               {"object", "chat.completion.chunk"},
               {"created", 1700000000},
               {"model", model},
               {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}}}
               .dump() +
           "\n\n";
  };
  std::vector<std::string> ev;
  ev.push_back(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  for (const std::string& p : Pieces(r.text)) ev.push_back(chunk({{"content", p}}, nullptr));
  for (size_t i = 0; i < r.tool_calls.size(); ++i) {
    const FakeToolCall& c = r.tool_calls[i];
    ev.push_back(chunk({{"tool_calls",
                         {{{"index", i},
                           {"id", ToolId(c, i)},
                           {"type", "function"},
                           {"function", {{"name", c.name}, {"arguments", ""}}}}}}},
                       nullptr));
    for (const std::string& p : Pieces(ArgsText(c))) {
      ev.push_back(
          chunk({{"tool_calls", {{{"index", i}, {"function", {{"arguments", p}}}}}}}, nullptr));
    }
  }
  ev.push_back(chunk(nlohmann::json::object(), OpenAiFinish(StopReason(r))));
  if (include_usage) {
    ev.push_back("data: " +
                 nlohmann::json{{"id", "chatcmpl-fake"},
                                {"object", "chat.completion.chunk"},
                                {"created", 1700000000},
                                {"model", model},
                                {"choices", nlohmann::json::array()},
                                {"usage", OpenAiUsage(r)}}
                     .dump() +
                 "\n\n");
  }
  ev.push_back("data: [DONE]\n\n");
  return ev;
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads one HTTP/1.1 request with a Content-Length body. False on EOF/error.
int ListenOnLoopback(int* port, const std::string& who) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(who + ": socket() failed");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, SOMAXCONN) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error(who + ": cannot listen on 127.0.0.1");
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

bool ReadHttpRequest(int fd, RecordedRequest* req) {
  std::string buf;
  char tmp[8192];
  size_t header_end;
  while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
  }
  std::string head = buf.substr(0, header_end);
  std::string rest = buf.substr(header_end + 4);
  size_t line_end = head.find("\r\n");
  std::string request_line = head.substr(0, line_end);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = request_line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) return false;
  req->method = request_line.substr(0, sp1);
  req->path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string::npos) eol = head.size();
    std::string line = head.substr(pos, eol - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      req->headers[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
    }
    pos = eol + 2;
  }
  if (Lower(req->headers["expect"]) == "100-continue") {
    SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  size_t length = 0;
  if (auto it = req->headers.find("content-length"); it != req->headers.end()) {
    length = std::stoul(it->second);
  }
  while (rest.size() < length) {
    ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    rest.append(tmp, static_cast<size_t>(n));
  }
  req->raw_body = rest.substr(0, length);
  req->body = nlohmann::json::parse(req->raw_body, nullptr, /*allow_exceptions=*/false);
  if (req->body.is_discarded()) req->body = nullptr;
  return true;
}

FakeReply FakeReply::Text(std::string text) {
  FakeReply r;
  r.text = std::move(text);
  return r;
}

FakeReply FakeReply::Tools(std::vector<FakeToolCall> calls, std::string text) {
  FakeReply r;
  r.tool_calls = std::move(calls);
  r.text = std::move(text);
  return r;
}

FakeReply FakeReply::Status(int status, std::string body,
                            std::map<std::string, std::string> headers) {
  FakeReply r;
  r.kind = Kind::kStatus;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

FakeReply FakeReply::Hang(std::chrono::milliseconds duration) {
  FakeReply r;
  r.kind = Kind::kHang;
  r.hang = duration;
  return r;
}

FakeReply FakeReply::Malformed() {
  FakeReply r;
  r.kind = Kind::kMalformed;
  return r;
}

FakeReply FakeReply::Cut(int after_events) {
  FakeReply r = Text("this reply is cut short by the fake server");
  r.kind = Kind::kCut;
  r.cut_after_events = after_events;
  return r;
}

FakeLlmServer::FakeLlmServer() {
  listen_fd_ = ListenOnLoopback(&port_, "fake LLM server");
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeLlmServer::~FakeLlmServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // shutdown() wakes a blocked accept() on Linux.
  ::shutdown(listen_fd_, SHUT_RDWR);
  accept_thread_.join();
  ::close(listen_fd_);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(conn_threads_);
  }
  for (std::thread& t : threads) t.join();
}

void FakeLlmServer::Push(FakeReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  replies_.push_back(std::move(reply));
}

void FakeLlmServer::SetModelsReply(FakeReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  models_reply_ = std::move(reply);
}

std::string HttpDate(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

void FakeLlmServer::SetResponder(FakeResponder responder) {
  std::lock_guard<std::mutex> lock(mu_);
  responder_ = std::move(responder);
}

std::string FakeLlmServer::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::vector<RecordedRequest> FakeLlmServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_;
}

size_t FakeLlmServer::request_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_.size();
}

void FakeLlmServer::AcceptLoop() {
  while (true) {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      if (fd >= 0) ::close(fd);
      return;
    }
    if (fd < 0) continue;
    open_fds_.insert(fd);
    conn_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

bool FakeLlmServer::WaitFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  if (d.count() == 0) {
    cv_.wait(lock, [this] { return stopping_; });
    return false;
  }
  return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

void FakeLlmServer::Serve(int fd) {
  for (RecordedRequest req; ReadHttpRequest(fd, &req) && Answer(fd, req);) req = {};
  std::lock_guard<std::mutex> lock(mu_);
  open_fds_.erase(fd);
  ::close(fd);
}

bool FakeLlmServer::Answer(int fd, const RecordedRequest& req) {
  FakeReply reply = FakeReply::Status(
      500, R"({"error":{"type":"api_error","message":"fake server: no scripted reply left"}})");
  FakeResponder responder;
  {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(req);
    responder = responder_;
  }
  std::optional<FakeReply> answered;
  if (req.method == "GET" && EndsWith(req.path, "/models")) {
    std::lock_guard<std::mutex> lock(mu_);
    answered = models_reply_
                   ? *models_reply_
                   : FakeReply::Status(200, R"({"data":[{"id":"fake-model"}]})",
                                       {{"Date", HttpDate(std::chrono::system_clock::now())}});
  } else if (responder) {
    answered = responder(req);
  }
  if (answered) {
    reply = std::move(*answered);
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    if (!replies_.empty()) {
      reply = std::move(replies_.front());
      replies_.pop_front();
    }
  }
  const bool openai = EndsWith(req.path, "/chat/completions");
  const bool anthropic = EndsWith(req.path, "/messages");
  const bool stream = req.body.is_object() && req.body.value("stream", false);
  const std::string model = req.body.is_object() ? req.body.value("model", "fake-model") : "";
  bool go = reply.latency.count() == 0 || WaitFor(reply.latency);
  // As providers do, a complete reply with a length leaves the connection
  // open for the client's next request; a stream ends with the connection, a
  // hang or a cut reply breaks it.
  auto connection = req.headers.find("connection");
  const bool keep =
      go && !stream && (connection == req.headers.end() || Lower(connection->second) != "close") &&
      (reply.kind == FakeReply::Kind::kStatus || reply.kind == FakeReply::Kind::kTurn ||
       reply.kind == FakeReply::Kind::kMalformed);
  if (go && !openai && !anthropic && reply.kind != FakeReply::Kind::kStatus) {
    reply = FakeReply::Status(404, R"({"error":{"message":"fake server: unknown path"}})");
  }
  if (go) {
    switch (reply.kind) {
      case FakeReply::Kind::kStatus:
        SendAll(fd, PlainHead(reply.status, reply.body.size(), reply.headers, keep) + reply.body);
        break;
      case FakeReply::Kind::kHang:
        WaitFor(reply.hang);
        break;
      case FakeReply::Kind::kMalformed:
        if (stream) {
          SendAll(fd, std::string(kSseHead) + (anthropic ? "event: message_start\n" : "") +
                          "data: {\"type\": not json\n\n");
        } else {
          // Longer than the 200 bytes a client may quote.
          const std::string body = "<html>this is not json " + std::string(300, 'x');
          SendAll(fd, PlainHead(200, body.size(), {}, keep) + body);
        }
        break;
      case FakeReply::Kind::kTurn:
      case FakeReply::Kind::kCut: {
        const bool cut = reply.kind == FakeReply::Kind::kCut;
        if (stream) {
          const bool usage = req.body.contains("stream_options") &&
                             req.body["stream_options"].value("include_usage", false);
          std::vector<std::string> events =
              anthropic ? AnthropicEvents(reply, model) : OpenAiEvents(reply, model, usage);
          if (cut && static_cast<size_t>(reply.cut_after_events) < events.size()) {
            events.resize(static_cast<size_t>(reply.cut_after_events));
          }
          bool ok = SendAll(fd, kSseHead);
          for (size_t i = 0; ok && i < events.size(); ++i) ok = SendAll(fd, events[i]);
        } else {
          const std::string body =
              anthropic ? AnthropicPlain(reply, model) : OpenAiPlain(reply, model);
          SendAll(fd, PlainHead(200, body.size(), {}, keep) +
                          (cut ? body.substr(0, body.size() / 2) : body));
        }
        break;
      }
    }
  }
  return keep;
}

}  // namespace af::testing
