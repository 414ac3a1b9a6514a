#include "support/fake_embeddings_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <stdexcept>

#include "af/api/http_types.h"

namespace af::testing {
namespace {

using json = nlohmann::json;

std::string Reply(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(ReasonPhrase(status)) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

std::string Error(const std::string& message, const std::string& type) {
  return json{{"error", {{"message", message}, {"type", type}}}}.dump();
}

}  // namespace

FakeEmbeddingsServer::FakeEmbeddingsServer(int dimensions) : dims_(dimensions) {
  listen_fd_ = ListenOnLoopback(&port_, "fake embeddings server");
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeEmbeddingsServer::~FakeEmbeddingsServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  ::shutdown(listen_fd_, SHUT_RDWR);  // wakes the blocked accept()
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

std::string FakeEmbeddingsServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

void FakeEmbeddingsServer::Fail(EmbeddingsFault fault) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.push_back(fault);
}

void FakeEmbeddingsServer::SetReverseOrder(bool reverse) {
  std::lock_guard<std::mutex> lock(mu_);
  reverse_ = reverse;
}

std::vector<float> FakeEmbeddingsServer::VectorFor(const std::string& text) const {
  // FNV-1a of the text, then a small LCG: values in [-2, 2), never all zero.
  uint64_t h = 14695981039346656037ull;
  for (char c : text) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  std::vector<float> v(static_cast<size_t>(dims_));
  for (float& x : v) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<int>((h >> 40) % 4000) - 2000) / 1000.0f;
  }
  v[0] = 2.5f;
  return v;
}

std::vector<RecordedRequest> FakeEmbeddingsServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_;
}

void FakeEmbeddingsServer::AcceptLoop() {
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

void FakeEmbeddingsServer::Serve(int fd) {
  RecordedRequest req;
  if (ReadHttpRequest(fd, &req)) {
    std::optional<EmbeddingsFault> fault;
    bool reverse;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.push_back(req);
      if (!faults_.empty()) {
        fault = faults_.front();
        faults_.pop_front();
      }
      reverse = reverse_;
    }
    const std::string suffix = "/v1/embeddings";
    const bool known =
        req.method == "POST" && req.path.size() >= suffix.size() &&
        req.path.compare(req.path.size() - suffix.size(), suffix.size(), suffix) == 0;
    std::string out;
    if (fault == EmbeddingsFault::kUnauthorized) {
      out = Reply(401, Error("Incorrect API key provided", "invalid_request_error"));
    } else if (fault == EmbeddingsFault::kNotFound || !known) {
      out = Reply(404, Error("model not found", "invalid_request_error"));
    } else if (fault == EmbeddingsFault::kServerError) {
      out = Reply(500, Error("the fake server broke", "server_error"));
    } else if (fault == EmbeddingsFault::kMalformed) {
      out = Reply(200, "<html>not json</html>");
    } else if (!req.body.is_object() || !req.body.contains("input") ||
               !req.body["input"].is_array() || !req.body.contains("model")) {
      out = Reply(400, Error("'input' (array) and 'model' are required", "invalid_request_error"));
    } else {
      const json& input = req.body["input"];
      json data = json::array();
      for (size_t i = 0; i < input.size(); ++i) {
        std::vector<float> v = VectorFor(input[i].is_string() ? input[i].get<std::string>() : "");
        if (fault == EmbeddingsFault::kWrongSize && i + 1 == input.size()) v.pop_back();
        data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", v}});
      }
      if (fault == EmbeddingsFault::kMissingItem && !data.empty()) data.erase(data.end() - 1);
      if (reverse) std::reverse(data.begin(), data.end());
      out = Reply(200, json{{"object", "list"},
                            {"data", data},
                            {"model", req.body["model"]},
                            {"usage", {{"prompt_tokens", 1}, {"total_tokens", 1}}}}
                           .dump());
    }
    SendAll(fd, out);
  }
  std::lock_guard<std::mutex> lock(mu_);
  open_fds_.erase(fd);
  ::close(fd);
}

}  // namespace af::testing
