#include "llm/http_llm_client.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <random>
#include <thread>

#include "llm/resilience.h"
#include "llm/retry.h"
#include "af/core/sse.h"

namespace af::llm {
namespace {

// A server asking us to wait longer than this is treated as a hard limit: an
// agent blocked for an hour helps nobody, the caller can decide.
constexpr std::chrono::milliseconds kMaxRetryAfter{300000};

struct Attempt {
  Result<LlmResponse> result = Internal("no attempt made");
  bool retryable = false;
  // The server asks every client to slow down (429, 529, or any retry-after):
  // the pause applies to all threads of this client.
  bool rate_limited = false;
  std::optional<std::chrono::milliseconds> retry_after;
  // For a retryable failure, what the provider did (LlmHealth::failing_as).
  std::string failing_as;
};

// The cancellation of the call this thread is making, for the waits inside
// the request gate (whose sleeper is shared by every call). Null = none.
thread_local const std::function<bool()>* t_cancelled = nullptr;

class CancelScope {
 public:
  explicit CancelScope(const std::function<bool()>* cancelled) : saved_(t_cancelled) {
    t_cancelled = cancelled != nullptr && *cancelled ? cancelled : nullptr;
  }
  ~CancelScope() { t_cancelled = saved_; }
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  const std::function<bool()>* saved_;
};

bool IsCancelled(const LlmRequest& request) { return request.cancelled && request.cancelled(); }

bool IsRetryableCode(Code code) {
  return code == Code::kUnavailable || code == Code::kDeadlineExceeded;
}

void ReplaceAll(std::string& s, const std::string& needle, std::string_view with) {
  if (needle.empty()) return;
  for (size_t pos = s.find(needle); pos != std::string::npos;
       pos = s.find(needle, pos + with.size())) {
    s.replace(pos, needle.size(), with);
  }
}

class HttpLlmClient final : public LlmClient {
 public:
  HttpLlmClient(const LlmOptions& options, std::unique_ptr<WireCodec> codec)
      : LlmClient(options.on_call), options_(options), codec_(std::move(codec)) {
    std::string base =
        options_.base_url.empty() ? std::string(codec_->default_base_url()) : options_.base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    url_ = codec_->Url(base);
    headers_ = codec_->Headers(options_.api_key);
    if (!options_.transport) options_.transport = MakeCurlTransport();
    if (!options_.sleep) {
      options_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    }
    if (!options_.clock) options_.clock = [] { return std::chrono::steady_clock::now(); };
    rng_.seed(options_.seed != 0 ? options_.seed : std::random_device{}());
    // The observer lives in the base class; keep no second copy.
    options_.on_call = nullptr;
    const std::string p(codec_->provider());
    std::string base_env = p;
    for (char& ch : base_env) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    gate_ = std::make_unique<RequestGate>(
        p, options_.requests_per_minute, options_.clock,
        [this](std::chrono::milliseconds d) { SleepUnlessCancelled(d); });
    breaker_ = std::make_unique<CircuitBreaker>(
        p, options_.circuit_failures, options_.circuit_cooldown,
        "check the provider's status page, the network, and " + base_env +
            "_BASE_URL if set; calls resume by themselves after llm.circuit_cooldown",
        options_.clock);
  }

  std::string_view provider() const override { return codec_->provider(); }

  LlmHealth Health() const override {
    LlmHealth h = breaker_->Health();
    h.rate_limit_pauses = gate_->pauses();
    streak_.Fill(&h);
    return h;
  }

  bool WaitForProbe(std::chrono::milliseconds max_wait) override {
    return breaker_->WaitForProbe(max_wait, options_.sleep);
  }

 protected:
  std::string DefaultModel() const override { return options_.model; }

  Result<LlmResponse> DoComplete(const LlmRequest& request, const StreamCallback& on_text,
                                 int* attempts) override {
    *attempts = 0;
    bool probe = false;
    AF_RETURN_IF_ERROR(breaker_->Admit(&probe));
    Result<LlmResponse> result = Send(request, on_text, attempts);
    if (*attempts == 0) {
      // Refused before any request (bad options, unencodable request): says
      // nothing about the provider.
      breaker_->Record(CircuitBreaker::Outcome::kOther, probe, Status::Ok());
    } else if (result.ok()) {
      breaker_->Record(CircuitBreaker::Outcome::kSuccess, probe, Status::Ok());
    } else {
      breaker_->Record(IsProviderOutage(result.status()) ? CircuitBreaker::Outcome::kOutage
                                                         : CircuitBreaker::Outcome::kOther,
                       probe, result.status());
    }
    return result;
  }

 private:
  // One call: the attempts with their retries, each through the gate.
  Result<LlmResponse> Send(const LlmRequest& request, const StreamCallback& on_text,
                           int* attempts) {
    const std::string model = request.model.empty() ? options_.model : request.model;
    if (model.empty()) {
      return InvalidArgument("no model set for the " + std::string(provider()) + " provider",
                             "set llm.model (AF_LLM_MODEL) or agents.<role>.model");
    }
    AF_ASSIGN_OR_RETURN(nlohmann::json body, codec_->EncodeRequest(request, model));
    ClientRequest http;
    http.url = url_;
    http.headers = headers_;
    // Tool results may hold bytes that are not UTF-8 (command output, files).
    http.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    http.timeout = options_.timeout;
    http.connect_timeout = options_.connect_timeout;

    http.cancelled = request.cancelled;

    const BackoffPolicy policy{options_.backoff_base, options_.backoff_max};
    uint64_t seen_pause = 0;
    CancelScope cancel_scope(&request.cancelled);
    for (int retry = 0;; ++retry) {
      // Before and after the wait for the gate: the work may have ended
      // meanwhile, and nothing may reach the provider for it then.
      if (IsCancelled(request)) return Abandoned(retry);
      gate_->Wait(&seen_pause);
      if (IsCancelled(request)) return Abandoned(retry);
      *attempts = retry + 1;
      Attempt a = RunAttempt(http, request.stream, on_text);
      if (a.result.ok()) {
        streak_.Answered();
        LlmResponse r = std::move(a.result).value();
        if (r.model.empty()) r.model = model;
        return r;
      }
      if (!a.retryable) return Redact(a.result.status());
      streak_.Failed(Redact(a.result.status()), a.failing_as);
      const bool last = retry >= options_.max_retries;
      const bool too_long = a.retry_after && *a.retry_after > kMaxRetryAfter;
      std::chrono::milliseconds delay{0};
      if (!last || a.rate_limited) {
        std::lock_guard<std::mutex> lock(rng_mu_);
        delay = BackoffDelay(policy, retry, a.retry_after, rng_);
      }
      // Everyone holds back, also when this call gives up: the other threads
      // would otherwise run into the same limit one after the other.
      if (a.rate_limited && !too_long) {
        bool started = false;
        delay = gate_->Pause(delay, &seen_pause, &started);
        if (started && options_.on_rate_limit) {
          options_.on_rate_limit(RateLimitPause{std::string(provider()), delay, request.feature_id,
                                                request.task_id, request.agent_role,
                                                Redact(a.result.status()).message()});
        }
      }
      if (last) {
        const Status& s = a.result.status();
        std::string msg = s.message();
        if (retry > 0) msg += " (gave up after " + std::to_string(retry + 1) + " attempts)";
        return Redact(Status(s.code(), msg, s.hint()));
      }
      if (too_long) {
        return Redact(ResourceExhausted(
            a.result.status().message() + "; the server asks to wait " +
                std::to_string(a.retry_after->count() / 1000) + " s",
            "the provider's rate limit is exhausted for a long time; try again later"));
      }
      SleepUnlessCancelled(delay);
    }
  }

  Status Abandoned(int attempts_made) const {
    return Cancelled("the call to " + std::string(provider()) + " was abandoned after " +
                         std::to_string(attempts_made) +
                         " attempt(s): its work was stopped (cancelled, ended or shutting down)",
                     "nothing to do: the work resumes on the next start or has ended");
  }

  // The backoff and gate waits: in slices while the current call can be
  // cancelled, so a stop is not held up by a wait of up to minutes.
  void SleepUnlessCancelled(std::chrono::milliseconds d) const {
    const std::function<bool()>* cancelled = t_cancelled;
    if (cancelled == nullptr) {
      options_.sleep(d);
      return;
    }
    constexpr std::chrono::milliseconds kSlice{100};
    while (d.count() > 0 && !(*cancelled)()) {
      const std::chrono::milliseconds step = std::min(d, kSlice);
      options_.sleep(step);
      d -= step;
    }
  }

  Attempt RunAttempt(const ClientRequest& http, bool stream, const StreamCallback& on_text) {
    Attempt a;
    std::unique_ptr<StreamDecoder> decoder;
    std::optional<SseParser> parser;
    Status stream_error;
    std::string raw;  // the streamed body, in case it turns out not to be SSE
    std::function<bool(std::string_view)> on_chunk;
    if (stream) {
      decoder = codec_->NewStreamDecoder(on_text);
      parser.emplace([&decoder](std::string_view event, std::string_view data) {
        return decoder->OnEvent(event, data);
      });
      on_chunk = [&](std::string_view chunk) {
        raw.append(chunk);
        stream_error = parser->Feed(chunk);
        return stream_error.ok();
      };
    }
    Result<ClientResponse> sent = options_.transport->Send(http, on_chunk);
    if (!sent.ok()) {
      const Status& s = stream_error.ok() ? sent.status() : stream_error;
      a.retryable = IsRetryableCode(s.code());
      // No answer at all: unreachable (or too slow); a stream that broke
      // after the answer began is a failing provider.
      a.failing_as = !stream_error.ok()                    ? "failing"
                     : s.code() == Code::kDeadlineExceeded ? "timing out"
                                                           : "unreachable";
      a.result = s;
      return a;
    }
    const ClientResponse& resp = sent.value();
    if (resp.status >= 200 && resp.status < 300) {
      auto ct = resp.headers.find("content-type");
      // Some compatible servers ignore "stream" and answer with plain JSON.
      const bool plain_json = stream && ct != resp.headers.end() &&
                              ct->second.find("json") != std::string::npos &&
                              ct->second.find("event-stream") == std::string::npos;
      if (stream && !plain_json) {
        a.result = decoder->Finish();
      } else {
        Result<nlohmann::json> j = ParseProviderJson(provider(), stream ? raw : resp.body);
        a.result = j.ok() ? codec_->DecodeResponse(j.value()) : Result<LlmResponse>(j.status());
        if (stream && a.result.ok() && on_text && !a.result->text.empty()) on_text(a.result->text);
      }
      a.retryable = !a.result.ok() && IsRetryableCode(a.result.status().code());
      a.failing_as = "failing";
      return a;
    }
    a.result = HttpError(resp);
    a.retryable = IsRetryableHttpStatus(resp.status);
    if (a.retryable) {
      a.retry_after = ParseRetryAfter(resp.headers);
      a.rate_limited = resp.status == 429 || resp.status == 529 || a.retry_after.has_value();
      a.failing_as = resp.status == 429 || resp.status == 529 ? "rate limiting" : "failing";
    }
    return a;
  }

  Status HttpError(const ClientResponse& resp) const {
    const std::string p(provider());
    const std::string code = "HTTP " + std::to_string(resp.status);
    if (resp.status == 401 || resp.status == 403) {
      // The provider's own message is left out: some echo part of the key.
      const std::string env(codec_->key_env());
      return Unauthenticated("Invalid API key for " + p + " (" + code + ")",
                             "set a valid key: export " + env +
                                 "=... (or put it in .env); 'agent-factory config show-key' "
                                 "shows which key is in use");
    }
    const std::string msg = ProviderErrorMessage(resp.body);
    if (resp.status == 429) {
      return ResourceExhausted(p + " rate limit (" + code + "): " + msg,
                               "the provider limits requests; lower agent replicas or wait");
    }
    if (IsRetryableHttpStatus(resp.status)) {
      return Unavailable(p + " server error (" + code + "): " + msg,
                         "the provider is failing or overloaded; try again later");
    }
    if (resp.status == 404) {
      return NotFound(p + " answered " + code + " for " + url_ + ": " + msg,
                      "check the model name and the base URL");
    }
    if (resp.status == 413) {
      // A property of the request, not of the provider's load: not an outage.
      return InvalidArgument(p + " rejected the request as too large (" + code + "): " + msg,
                             "shorten the conversation or the files sent");
    }
    return InvalidArgument(p + " rejected the request (" + code + "): " + msg,
                           "check the model name and the LLM settings");
  }

  // Keeps the API key out of every message, whatever a server echoes back.
  Status Redact(const Status& s) const {
    if (options_.api_key.size() < 4) return s;
    std::string msg = s.message();
    std::string hint = s.hint();
    ReplaceAll(msg, options_.api_key, "[redacted]");
    ReplaceAll(hint, options_.api_key, "[redacted]");
    return Status(s.code(), msg, hint);
  }

  LlmOptions options_;
  std::unique_ptr<WireCodec> codec_;
  std::string url_;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;  // guarded by rng_mu_
  std::unique_ptr<RequestGate> gate_;
  std::unique_ptr<CircuitBreaker> breaker_;
  FailureStreak streak_;
};

}  // namespace

Result<std::unique_ptr<LlmClient>> MakeHttpLlmClient(const LlmOptions& options,
                                                     std::unique_ptr<WireCodec> codec) {
  const std::string env(codec->key_env());
  const bool default_url =
      options.base_url.empty() || options.base_url.rfind(codec->default_base_url(), 0) == 0;
  // Anthropic always needs a key; an OpenAI-compatible local server may not.
  const bool key_required = codec->provider() == "anthropic" || default_url;
  if (options.api_key.empty() && key_required) {
    return Unauthenticated(env + " not set", "export " + env + "=... (or put it in .env)");
  }
  if (options.max_retries < 0) return InvalidArgument("llm max_retries must be >= 0");
  if (options.timeout.count() <= 0 || options.connect_timeout.count() <= 0) {
    return InvalidArgument("llm timeouts must be positive");
  }
  if (options.backoff_base.count() < 0 || options.backoff_max < options.backoff_base) {
    return InvalidArgument("llm backoff must satisfy 0 <= backoff_base <= backoff_max");
  }
  if (options.requests_per_minute < 0 || options.circuit_failures < 0) {
    return InvalidArgument("llm requests_per_minute and circuit_failures must be >= 0");
  }
  if (options.circuit_failures > 0 && options.circuit_cooldown.count() <= 0) {
    return InvalidArgument("llm circuit_cooldown must be positive");
  }
  return std::unique_ptr<LlmClient>(new HttpLlmClient(options, std::move(codec)));
}

}  // namespace af::llm
