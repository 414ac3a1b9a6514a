#pragma once
// A fake OpenAI-compatible embeddings server on 127.0.0.1 for tests. It answers
// POST .../embeddings with one deterministic vector per input (derived from the
// text alone, not unit length, so clients must normalise), records every
// request (model, inputs, Authorization header) and injects faults on demand.
// Thread-safe; one thread per connection; Connection: close on every reply.

#include <cstddef>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_llm_server.h"  // RecordedRequest

namespace af::testing {

enum class EmbeddingsFault {
  kUnauthorized,  // 401 with an OpenAI-style error body
  kNotFound,      // 404 "model not found"
  kServerError,   // 500
  kMalformed,     // 200 with a body that is not JSON
  kWrongSize,     // 200, but the last vector has one dimension less
  kMissingItem,   // 200, but one embedding fewer than inputs
};

class FakeEmbeddingsServer {
 public:
  // Listens on an ephemeral port. Throws std::runtime_error when it cannot.
  explicit FakeEmbeddingsServer(int dimensions = 8);
  ~FakeEmbeddingsServer();
  FakeEmbeddingsServer(const FakeEmbeddingsServer&) = delete;
  FakeEmbeddingsServer& operator=(const FakeEmbeddingsServer&) = delete;

  // "http://127.0.0.1:PORT" (no /v1; the endpoint is /v1/embeddings).
  std::string base_url() const;

  // The next request(s) fail this way, in the order pushed.
  void Fail(EmbeddingsFault fault);
  // Lists the data items in reverse order (each with its "index"), as servers may.
  void SetReverseOrder(bool reverse);

  // The vector the server returns for `text` (before any client normalisation).
  std::vector<float> VectorFor(const std::string& text) const;

  std::vector<RecordedRequest> requests() const;

 private:
  void AcceptLoop();
  void Serve(int fd);

  const int dims_;
  int listen_fd_ = -1;
  int port_ = 0;
  mutable std::mutex mu_;
  bool stopping_ = false;                  // guarded by mu_
  bool reverse_ = false;                   // guarded by mu_
  std::deque<EmbeddingsFault> faults_;     // guarded by mu_
  std::vector<RecordedRequest> seen_;      // guarded by mu_
  std::set<int> open_fds_;                 // guarded by mu_
  std::vector<std::thread> conn_threads_;  // guarded by mu_
  std::thread accept_thread_;
};

}  // namespace af::testing
