#pragma once
// A blocking server-sent-events client over a plain socket, for tests of the
// event streams on 127.0.0.1: sends one GET, reads the response head, then
// de-chunks the body and splits it into SSE blocks as they arrive.
// Not thread-safe: one thread per client.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af::testing {

// One block of the stream (the text between blank lines).
struct SseMessage {
  std::string id;       // "id:" field, empty when none
  std::string event;    // "event:" field
  std::string data;     // "data:" lines joined by '\n'
  std::string comment;  // ": ..." lines joined by '\n' (without the colon and space)
  int64_t retry = -1;   // "retry:" field, -1 when none
};

// Incremental parser for the decoded body; exposed for unit tests.
class SseBlockParser {
 public:
  // Appends text; complete blocks become available from Pop().
  void Feed(std::string_view text);
  std::optional<SseMessage> Pop();

 private:
  std::string buffer_;
  std::vector<SseMessage> ready_;
  size_t next_ = 0;
};

class SseClient {
 public:
  // Connects to 127.0.0.1:port, sends "GET path" with `headers`, and reads
  // the response head. Errors: Unavailable when the connection fails or the
  // head does not arrive within `timeout`.
  static Result<std::unique_ptr<SseClient>> Connect(
      int port, const std::string& path, const std::map<std::string, std::string>& headers = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(10), int receive_buffer = 0);
  ~SseClient();
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  int status() const { return status_; }
  std::string Header(const std::string& lower_name) const;
  // For a non-streamed answer (e.g. 401): reads the body to the end.
  Result<std::string> ReadAll(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // The next block. DeadlineExceeded when none arrives in time; Unavailable
  // when the server closed the stream (then closed() is true).
  Result<SseMessage> Next(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The next block that carries an event (skips comments and retry-only blocks).
  Result<SseMessage> NextEvent(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits until the server closes the connection; true when it did in time.
  bool WaitClosed(std::chrono::milliseconds timeout);
  bool closed() const { return eof_; }
  int fd() const { return fd_; }

 private:
  SseClient() = default;
  // Reads more bytes (waiting until the deadline); false on timeout or EOF.
  bool ReadSome(std::chrono::steady_clock::time_point deadline);
  void Decode();

  int fd_ = -1;
  int status_ = 0;
  bool chunked_ = false;
  bool eof_ = false;
  std::map<std::string, std::string> headers_;
  std::string raw_;  // bytes after the head not yet de-chunked
  SseBlockParser parser_;
};

}  // namespace af::testing
