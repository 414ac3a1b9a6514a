#pragma once
// A scripted LLM HTTP server on 127.0.0.1 for tests. It speaks the Anthropic
// Messages API (paths ending in /messages) and OpenAI Chat Completions (paths
// ending in /chat/completions), plain or streamed (SSE) as each request's
// "stream" field asks, and injects faults. Each request is first offered to the
// responder (when one is set); otherwise replies are consumed in the order
// pushed; a request with nothing queued gets HTTP 500 "no scripted reply".
// GET .../models (the model list both wire formats have, which `doctor` asks
// to check a key) never takes from the queue: it gets the models reply, by
// default 200 with one model and the current time in a Date header.
// Thread-safe; one thread per connection. As providers do, a complete plain
// reply keeps its connection open for the client's next request (so clients'
// connection reuse is exercised); streamed, hung and cut replies close it.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace af::testing {

struct FakeToolCall {
  std::string id;
  std::string name;
  nlohmann::json arguments = nlohmann::json::object();
  // When set, sent verbatim as the arguments text instead of `arguments`
  // (e.g. "{not json" to test invalid tool arguments).
  std::string raw_arguments;
};

struct FakeReply {
  enum class Kind {
    kTurn,       // a model turn rendered in the requested wire format
    kStatus,     // HTTP `status` with `body` and `headers`
    kHang,       // reads the request, answers nothing for `hang` (0 = until stopped)
    kMalformed,  // 200 with a body that is not JSON (plain) / a bad SSE data line (streamed)
    kCut,        // starts the reply, then closes the socket after `cut_after_events`
                 // SSE events (streamed) or half the body (plain)
  };
  Kind kind = Kind::kTurn;
  // kTurn
  std::string text;
  std::vector<FakeToolCall> tool_calls;
  int64_t input_tokens = 11;
  int64_t output_tokens = 7;
  std::string stop_reason;  // normalized ("end_turn"...); empty = derived from tool_calls
  // kStatus
  int status = 200;
  std::string body;
  std::map<std::string, std::string> headers;
  // kHang
  std::chrono::milliseconds hang{0};
  // kCut
  int cut_after_events = 2;
  // Any kind: wait this long before answering.
  std::chrono::milliseconds latency{0};

  static FakeReply Text(std::string text);
  static FakeReply Tools(std::vector<FakeToolCall> calls, std::string text = {});
  static FakeReply Status(int status, std::string body = {},
                          std::map<std::string, std::string> headers = {});
  static FakeReply Hang(std::chrono::milliseconds duration = std::chrono::milliseconds(0));
  static FakeReply Malformed();
  static FakeReply Cut(int after_events = 2);
};

struct RecordedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string raw_body;
  nlohmann::json body;  // parsed; null when not JSON
};

// The two halves of the fake servers' HTTP/1.1 (shared by the fake embeddings
// server): reads one request with a Content-Length body (false on EOF or a
// malformed request line), and writes all of `data` (false when the peer went).
bool ReadHttpRequest(int fd, RecordedRequest* req);
bool SendAll(int fd, std::string_view data);
// A listening socket on 127.0.0.1 at a free port (set in *port); throws
// std::runtime_error naming `who` when that fails.
int ListenOnLoopback(int* port, const std::string& who);

// An HTTP Date header value for `t` ("Sun, 06 Nov 1994 08:49:37 GMT").
std::string HttpDate(std::chrono::system_clock::time_point t);

// Answers a request by its content (e.g. the agent role in the system prompt,
// the task in the first user message, the number of turns so far), for
// callers whose request order is not deterministic. nullopt = use the queue.
using FakeResponder = std::function<std::optional<FakeReply>(const RecordedRequest&)>;

class FakeLlmServer {
 public:
  // Listens on an ephemeral port. Throws std::runtime_error when it cannot.
  FakeLlmServer();
  // Stops accepting, wakes hanging replies, closes connections, joins threads.
  ~FakeLlmServer();
  FakeLlmServer(const FakeLlmServer&) = delete;
  FakeLlmServer& operator=(const FakeLlmServer&) = delete;

  void Push(FakeReply reply);
  // Consulted before the queue for every request from now on (empty = none).
  // Called on the connection's thread without the server's lock held, so it
  // may call requests() / request_count(); it must be thread-safe itself, as
  // concurrent requests call it concurrently. The request it sees is already
  // recorded.
  void SetResponder(FakeResponder responder);
  // What GET .../models answers from now on (e.g. Status(401), or a Date
  // header 10 minutes off).
  void SetModelsReply(FakeReply reply);
  // "http://127.0.0.1:PORT". Anthropic clients use it as is; OpenAI clients
  // use base_url() + "/v1".
  std::string base_url() const;
  int port() const { return port_; }

  std::vector<RecordedRequest> requests() const;
  size_t request_count() const;

 private:
  void AcceptLoop();
  void Serve(int fd);
  // Answers one request on `fd`; true when the connection stays open for the next.
  bool Answer(int fd, const RecordedRequest& req);
  bool WaitFor(std::chrono::milliseconds d);  // false when stopping (0 = until stop)

  int listen_fd_ = -1;
  int port_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                  // guarded by mu_
  std::deque<FakeReply> replies_;          // guarded by mu_
  FakeResponder responder_;                // guarded by mu_
  std::optional<FakeReply> models_reply_;  // guarded by mu_; nullopt = the default
  std::vector<RecordedRequest> seen_;      // guarded by mu_
  std::set<int> open_fds_;                 // guarded by mu_
  std::vector<std::thread> conn_threads_;  // guarded by mu_
  std::thread accept_thread_;
};

}  // namespace af::testing
