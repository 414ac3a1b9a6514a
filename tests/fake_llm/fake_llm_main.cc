// af_fake_llm: the tests' fake LLM server (tests/support/fake_llm_server.h)
// in a process of its own, for tests and benchmarks that measure the client
// process (its threads, its memory) without counting the server's thread per
// connection.
//
//   af_fake_llm [--latency-ms N] [--fail-first K]
//
// Prints "port N" on stdout once it listens, then answers every request, in
// either wire format, plain or streamed, with the text "echo: " followed by
// the text of the request's last user message, after N ms (default 0). With
// --fail-first K, the first K requests carrying the same user text are
// answered HTTP 503 instead (so each call is retried K times).
// Runs until it is killed.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "support/fake_llm_server.h"

namespace {

// The last user message's text in either wire format: a string, or the
// first text block of a content array.
std::string LastUserText(const nlohmann::json& body) {
  if (!body.is_object() || !body.contains("messages") || !body["messages"].is_array()) return {};
  std::string text;
  for (const auto& m : body["messages"]) {
    if (!m.is_object() || m.value("role", "") != "user" || !m.contains("content")) continue;
    const auto& c = m["content"];
    if (c.is_string()) {
      text = c.get<std::string>();
    } else if (c.is_array()) {
      for (const auto& block : c) {
        if (block.is_object() && block.value("type", "") == "text") {
          text = block.value("text", "");
          break;
        }
      }
    }
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  using af::testing::FakeReply;
  int latency_ms = 0;
  int fail_first = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--latency-ms") == 0 && i + 1 < argc) {
      latency_ms = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--fail-first") == 0 && i + 1 < argc) {
      fail_first = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: af_fake_llm [--latency-ms N] [--fail-first K]\n");
      return 2;
    }
  }
  std::mutex mu;
  std::map<std::string, int> seen;  // guarded by mu; requests per user text
  af::testing::FakeLlmServer server;
  server.SetResponder([&](const af::testing::RecordedRequest& req) {
    const std::string text = LastUserText(req.body);
    int n = 0;
    {
      std::lock_guard lock(mu);
      n = seen[text]++;
    }
    FakeReply reply = n < fail_first
                          ? FakeReply::Status(503, R"({"error":{"message":"overloaded"}})")
                          : FakeReply::Text("echo: " + text);
    reply.latency = std::chrono::milliseconds(latency_ms);
    return std::optional<FakeReply>(std::move(reply));
  });
  std::printf("port %d\n", server.port());
  std::fflush(stdout);
  for (;;) ::pause();
}
