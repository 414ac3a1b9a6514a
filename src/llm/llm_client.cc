#include "af/llm/llm_client.h"

#include <algorithm>
#include <cctype>

#include "af/llm/pricing.h"
#include "llm/http_llm_client.h"
#include "llm/replay.h"

namespace af {

bool IsProviderOutage(const Status& status) {
  switch (status.code()) {
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
    case Code::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

std::string ProviderOutageAdvice(std::string_view provider, std::string_view failing_as) {
  if (failing_as == "unreachable" || failing_as == "timing out") {
    std::string env(provider);
    for (char& ch : env) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return "check " + env + "_BASE_URL (the address called above) and that the server runs and " +
           "is reachable from here";
  }
  return std::string("the provider is ") +
         (failing_as == "rate limiting" ? "limiting our requests" : "down or overloaded") +
         ": check its status page and wait";
}

Status ProviderOutageStatus(std::string_view provider, const LlmHealth& h, int64_t now_ms) {
  if (h.failed_attempts == 0) return Status::Ok();
  const std::string name(provider);
  const int64_t seconds =
      h.failing_since_ms > 0 ? std::max<int64_t>(0, (now_ms - h.failing_since_ms + 999) / 1000) : 0;
  std::string msg = name + " " + (h.failing_as.empty() ? "failing" : h.failing_as) + " for " +
                    std::to_string(seconds) + " s (" + std::to_string(h.failed_attempts) +
                    (h.failed_attempts == 1 ? " failed attempt" : " failed attempts") +
                    "): " + h.last_attempt_failure.message();
  std::string hint =
      ProviderOutageAdvice(provider, h.failing_as) + "; then submit the feature again";
  return Unavailable(std::move(msg), std::move(hint));
}

LlmClient::LlmClient(std::function<void(const LlmCallRecord&)> on_call)
    : on_call_(std::move(on_call)) {}

LlmClient::~LlmClient() {
  std::unique_lock lock(posted_mu_);
  posted_cv_.wait(lock, [this] { return posted_ == 0; });
}

Result<LlmResponse> LlmClient::Complete(const LlmRequest& request, const StreamCallback& on_text) {
  const auto start = std::chrono::steady_clock::now();
  int attempts = 0;
  Result<LlmResponse> result = DoComplete(request, on_text, &attempts);
  Conclude(Facts(request), start, attempts, result);
  return result;
}

void LlmClient::CompleteAsync(LlmRequest request, StreamCallback on_text, CompleteDone done,
                              Post post) {
  const auto start = std::chrono::steady_clock::now();
  auto facts = std::make_shared<const CallFacts>(Facts(request));
  DoCompleteAsync(request, std::move(on_text),
                  [this, facts, start, done = std::move(done), post = std::move(post)](
                      Result<LlmResponse> result, int attempts) mutable {
                    auto conclude = [this, facts, start, attempts, done = std::move(done),
                                     result = std::move(result)]() mutable {
                      // `done` must come whatever the record does: a caller
                      // waiting for it would wait forever.
                      try {
                        Conclude(*facts, start, attempts, result);
                      } catch (const std::exception& e) {
                        result = Internal(std::string("recording the call failed: ") + e.what());
                      }
                      done(std::move(result));
                    };
                    if (!post) return conclude();
                    {
                      std::lock_guard lock(posted_mu_);
                      ++posted_;
                    }
                    // Counted until it has run, so the client outlives it.
                    post([this, conclude = std::move(conclude)]() mutable {
                      conclude();
                      std::lock_guard lock(posted_mu_);
                      --posted_;
                      posted_cv_.notify_all();
                    });
                  });
}

void LlmClient::DoCompleteAsync(const LlmRequest& request, StreamCallback on_text,
                                AttemptsDone done) {
  int attempts = 0;
  Result<LlmResponse> result = DoComplete(request, on_text, &attempts);
  done(std::move(result), attempts);
}

LlmClient::CallFacts LlmClient::Facts(const LlmRequest& request) const {
  CallFacts f;
  f.model = request.model;
  f.provider = std::string(provider());
  f.default_model = DefaultModel();
  f.agent_role = request.agent_role;
  f.feature_id = request.feature_id;
  f.task_id = request.task_id;
  if (on_call_)
    f.request_hash = request.request_hash.empty() ? RequestHash(request) : request.request_hash;
  return f;
}

void LlmClient::Conclude(const CallFacts& facts, std::chrono::steady_clock::time_point start,
                         int attempts, Result<LlmResponse>& result) const {
  const int64_t latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
  if (result.ok()) {
    result->latency_ms = latency_ms;
    result->attempts = attempts;
    if (result->provider.empty()) result->provider = facts.provider;
  }
  if (!on_call_) return;
  LlmCallRecord rec;
  rec.provider = facts.provider;
  rec.model = result.ok() && !result->model.empty()
                  ? result->model
                  : (facts.model.empty() ? facts.default_model : facts.model);
  rec.agent_role = facts.agent_role;
  rec.feature_id = facts.feature_id;
  rec.task_id = facts.task_id;
  rec.request_hash = facts.request_hash;
  rec.latency_ms = latency_ms;
  rec.attempts = attempts;
  if (result.ok()) {
    rec.input_tokens = result->usage.input_tokens;
    rec.output_tokens = result->usage.output_tokens;
    rec.cost_usd = CostUsd(facts.provider, rec.model, result->usage, prices_);
    rec.status = "ok";
    rec.response = &result.value();
  } else {
    rec.status = std::string(CodeName(result.status().code()));
    rec.error = result.status().ToString();
  }
  on_call_(rec);
}

Result<std::unique_ptr<LlmClient>> LlmClient::Create(const LlmOptions& options) {
  Result<std::unique_ptr<LlmClient>> client =
      options.provider == "anthropic" ? llm::MakeHttpLlmClient(options, llm::MakeAnthropicCodec())
      : options.provider == "openai"  ? llm::MakeHttpLlmClient(options, llm::MakeOpenAiCodec())
      : options.provider == "replay"
          ? llm::MakeReplayClient(options)
          : Result<std::unique_ptr<LlmClient>>(InvalidArgument(
                "unknown LLM provider '" + options.provider + "'",
                "set AF_LLM_PROVIDER (llm.provider) to anthropic, openai or replay"));
  if (client.ok()) (*client)->prices_ = options.prices;
  return client;
}

}  // namespace af
