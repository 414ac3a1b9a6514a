#include "llm/http_llm_client.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "af/core/sse.h"
#include "llm/io_loop.h"
#include "llm/resilience.h"
#include "llm/retry.h"

namespace af::llm {
namespace {

// A server asking us to wait longer than this is treated as a hard limit: an
// agent blocked for an hour helps nobody, the caller can decide.
constexpr std::chrono::milliseconds kMaxRetryAfter{300000};

struct Attempt {
  Result<LlmResponse> result = Internal("no attempt made");
  bool retryable = false;
  // The server asks every client to slow down (429, 529, or any retry-after):
  // the pause applies to every call of this client.
  bool rate_limited = false;
  std::optional<std::chrono::milliseconds> retry_after;
  // For a retryable failure, what the provider did (LlmHealth::failing_as).
  std::string failing_as;
};

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

// One call under way: what its steps need between a transfer or timer and
// the next. Shared by whatever the call waits for at the moment; never
// touches the client after its done ran.
// Holds what the steps need of the request, not the request: its
// conversation is encoded once, into http.body.
struct Call {
  std::function<bool()> cancelled;  // LlmRequest::cancelled
  bool stream = false;
  std::string feature_id, task_id, agent_role;  // for RateLimitPause
  StreamCallback on_text;                       // the stream decoders keep a reference to it
  std::function<void(Result<LlmResponse>, int)> done;
  std::string model;
  // EstimateTokens of the request, for a reply that reports no usage.
  int64_t estimated_input_tokens = 0;
  // The tool call ids of the conversation, for the reply's calls to differ.
  std::set<std::string> tool_call_ids;
  ClientRequest http;
  bool admitted = false;  // by the circuit breaker: its outcome is recorded
  bool probe = false;
  uint64_t seen_pause = 0;  // the gate's record of the pauses this call waited for
  int retry = 0;            // retries so far; the attempt under way is retry + 1
  int attempts = 0;
  // The attempt under way (streamed).
  std::unique_ptr<StreamDecoder> decoder;
  std::optional<SseParser> parser;
  Status stream_error;
  std::string raw;  // the streamed body, in case it turns out not to be SSE
};

bool IsCancelled(const Call& call) { return call.cancelled && call.cancelled(); }

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
    if (!options_.clock) options_.clock = [] { return std::chrono::steady_clock::now(); };
    rng_.seed(options_.seed != 0 ? options_.seed : std::random_device{}());
    // The observer lives in the base class; keep no second copy.
    options_.on_call = nullptr;
    const std::string p(codec_->provider());
    std::string base_env = p;
    for (char& ch : base_env) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    gate_ = std::make_unique<RequestGate>(p, options_.requests_per_minute, options_.clock);
    breaker_ = std::make_unique<CircuitBreaker>(
        p, options_.circuit_failures, options_.circuit_cooldown,
        "check the provider's status page, the network, and " + base_env +
            "_BASE_URL if set; calls resume by themselves after llm.circuit_cooldown",
        options_.clock);
  }

  // Calls under way hold `this`: wait for them (and for the sleep seam's
  // helper threads) before anything goes.
  ~HttpLlmClient() override {
    std::unique_lock lock(calls_mu_);
    calls_cv_.wait(lock, [this] { return calls_ == 0; });
    std::vector<Helper> helpers = std::move(helpers_);
    lock.unlock();
    for (auto& h : helpers) h.thread.join();
  }

  std::string_view provider() const override { return codec_->provider(); }

  LlmHealth Health() const override {
    LlmHealth h = breaker_->Health();
    h.rate_limit_pauses = gate_->pauses();
    streak_.Fill(&h);
    return h;
  }

  bool WaitForProbe(std::chrono::milliseconds max_wait) override {
    if (options_.sleep) return breaker_->WaitForProbe(max_wait, options_.sleep);
    return breaker_->WaitForProbe(
        max_wait, [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); });
  }

 protected:
  std::string DefaultModel() const override { return options_.model; }

  // The blocking form: the same state machine, and a wait for its end.
  Result<LlmResponse> DoComplete(const LlmRequest& request, const StreamCallback& on_text,
                                 int* attempts) override {
    *attempts = 0;
    if (IoLoop::OnLoopThread()) {
      return FailedPrecondition(
          "a blocking call to " + std::string(provider()) + " was made on the LLM I/O thread",
          "callbacks on the I/O thread must not block: use CompleteAsync, or hand the work to "
          "another thread");
    }
    using Outcome = std::pair<Result<LlmResponse>, int>;
    auto promise = std::make_shared<std::promise<Outcome>>();
    std::future<Outcome> future = promise->get_future();
    DoCompleteAsync(request, on_text, [promise](Result<LlmResponse> r, int n) {
      promise->set_value(Outcome(std::move(r), n));
    });
    Outcome out = future.get();
    *attempts = out.second;
    return std::move(out.first);
  }

  void DoCompleteAsync(const LlmRequest& request, StreamCallback on_text,
                       AttemptsDone done) override {
    auto call = std::make_shared<Call>();
    call->cancelled = request.cancelled;
    call->stream = request.stream;
    call->feature_id = request.feature_id;
    call->task_id = request.task_id;
    call->agent_role = request.agent_role;
    call->on_text = std::move(on_text);
    call->done = std::move(done);
    call->estimated_input_tokens = EstimateTokens(request);
    for (const Message& m : request.messages) {
      for (const ToolCall& c : m.tool_calls) call->tool_call_ids.insert(c.id);
    }
    {
      std::lock_guard lock(calls_mu_);
      ++calls_;
    }
    Status admitted = breaker_->Admit(&call->probe);
    if (!admitted.ok()) return Finish(call, admitted);
    call->admitted = true;
    call->model = request.model.empty() ? options_.model : request.model;
    if (call->model.empty()) {
      return Finish(call,
                    InvalidArgument("no model set for the " + std::string(provider()) + " provider",
                                    "set llm.model (AF_LLM_MODEL) or agents.<role>.model"));
    }
    Result<nlohmann::json> body = codec_->EncodeRequest(request, call->model);
    if (!body.ok()) return Finish(call, body.status());
    ClientRequest& http = call->http;
    http.url = url_;
    http.headers = headers_;
    // Tool results may hold bytes that are not UTF-8 (command output, files).
    http.body = body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    http.timeout = options_.timeout;
    http.connect_timeout = options_.connect_timeout;
    http.cancelled = request.cancelled;
    TryAttempt(call);
  }

 private:
  using CallPtr = std::shared_ptr<Call>;

  // The steps of a call, each started by the end of the one before (a
  // transfer, a timer): gate -> attempt -> classify -> backoff -> gate ...

  // Before and after the wait for the gate: the work may have ended
  // meanwhile, and nothing may reach the provider for it then.
  void TryAttempt(const CallPtr& call) {
    if (IsCancelled(*call)) return Finish(call, Abandoned(call->retry));
    After(call, gate_->Reserve(&call->seen_pause), [this, call] { PassGate(call); });
  }

  void PassGate(const CallPtr& call) {
    if (IsCancelled(*call)) return Finish(call, Abandoned(call->retry));
    if (std::optional<std::chrono::milliseconds> more = gate_->Recheck(&call->seen_pause)) {
      return After(call, *more, [this, call] { PassGate(call); });
    }
    call->attempts = call->retry + 1;
    SendAttempt(call);
  }

  void SendAttempt(const CallPtr& call) {
    HttpTransport::ChunkFn on_chunk;
    call->decoder.reset();
    call->parser.reset();
    call->stream_error = Status::Ok();
    call->raw.clear();
    if (call->stream) {
      call->decoder = codec_->NewStreamDecoder(call->on_text);
      Call* c = call.get();  // the transfer's callbacks run while the call is held
      c->parser.emplace([c](std::string_view event, std::string_view data) {
        return c->decoder->OnEvent(event, data);
      });
      on_chunk = [c](std::string_view chunk) {
        c->raw.append(chunk);
        c->stream_error = c->parser->Feed(chunk);
        return c->stream_error.ok();
      };
    }
    options_.transport->SendAsync(call->http, std::move(on_chunk),
                                  [this, call](Result<ClientResponse> sent) {
                                    OnAnswer(call, Classify(*call, std::move(sent)));
                                  });
  }

  // What an attempt's end means for the call: done, or a retry after a wait.
  void OnAnswer(const CallPtr& call, Attempt a) {
    const int retry = call->retry;
    if (a.result.ok()) {
      streak_.Answered();
      LlmResponse r = std::move(a.result).value();
      if (r.model.empty()) r.model = call->model;
      EstimateMissingUsage(*call, &r);
      AssignToolCallIds(std::move(call->tool_call_ids), &r.tool_calls);
      return Finish(call, std::move(r));
    }
    if (!a.retryable) return Finish(call, Redact(a.result.status()));
    streak_.Failed(Redact(a.result.status()), a.failing_as);
    const bool last = retry >= options_.max_retries;
    const bool too_long = a.retry_after && *a.retry_after > kMaxRetryAfter;
    std::chrono::milliseconds delay{0};
    if (!last || a.rate_limited) {
      std::lock_guard<std::mutex> lock(rng_mu_);
      delay = BackoffDelay(BackoffPolicy{options_.backoff_base, options_.backoff_max}, retry,
                           a.retry_after, rng_);
    }
    // A wait longer than a call should hold its caller (a quota spent for
    // hours) ends this call, but the whole wait is still honoured below: the
    // calls that follow it (the agent's retry included) would otherwise ask
    // again at once, and again, until the circuit opened.
    if (too_long) delay = *a.retry_after;
    // Everyone holds back, also when this call gives up: the other calls
    // would otherwise run into the same limit one after the other.
    if (a.rate_limited) {
      bool started = false;
      delay = gate_->Pause(delay, &call->seen_pause, &started);
      if (started && options_.on_rate_limit) {
        options_.on_rate_limit(RateLimitPause{std::string(provider()), delay, call->feature_id,
                                              call->task_id, call->agent_role,
                                              Redact(a.result.status()).message()});
      }
    }
    if (last) {
      const Status& s = a.result.status();
      std::string msg = s.message();
      if (retry > 0) msg += " (gave up after " + std::to_string(retry + 1) + " attempts)";
      return Finish(call, Redact(Status(s.code(), msg, s.hint())));
    }
    if (too_long) {
      return Finish(call, Redact(ResourceExhausted(
                              a.result.status().message() + "; the server asks to wait " +
                                  std::to_string(a.retry_after->count() / 1000) + " s",
                              "every call to this provider waits that long, as it asks (a quota "
                              "spent for a long time); raise the quota, or give the roles an "
                              "agents.<role>.fallback_model")));
    }
    call->retry = retry + 1;
    After(call, delay, [this, call] { TryAttempt(call); });
  }

  // Some compatible servers (local ones especially) report no usage, or
  // zeros: counted as 0 tokens, the feature's token budget would never be
  // charged. The same estimate the replay provider uses stands in for what is
  // missing.
  static void EstimateMissingUsage(const Call& call, LlmResponse* r) {
    Usage& u = r->usage;
    if (u.input_tokens <= 0 && u.cache_read_tokens <= 0 && u.cache_creation_tokens <= 0) {
      u.input_tokens = call.estimated_input_tokens;
    }
    if (u.output_tokens <= 0) u.output_tokens = EstimateTokens(*r);
  }

  // The end of the call: the breaker learns the outcome, then the caller.
  void Finish(const CallPtr& call, Result<LlmResponse> result) {
    if (call->admitted) {
      if (call->attempts == 0) {
        // Refused before any request (bad options, unencodable request, or
        // the work ended first): says nothing about the provider.
        breaker_->Record(CircuitBreaker::Outcome::kOther, call->probe, Status::Ok());
      } else if (result.ok()) {
        breaker_->Record(CircuitBreaker::Outcome::kSuccess, call->probe, Status::Ok());
      } else {
        breaker_->Record(IsProviderOutage(result.status()) ? CircuitBreaker::Outcome::kOutage
                                                           : CircuitBreaker::Outcome::kOther,
                         call->probe, result.status());
      }
    }
    auto done = std::move(call->done);
    done(std::move(result), call->attempts);
    std::lock_guard lock(calls_mu_);
    --calls_;
    calls_cv_.notify_all();
  }

  // Runs `next` once `d` has passed, holding no thread meanwhile: a timer on
  // the I/O loop, woken every 100 ms while the call can be cancelled (so a
  // stop is not held up by a wait of up to minutes). With the sleep seam set,
  // the wait goes through it on a helper thread instead.
  void After(const CallPtr& call, std::chrono::milliseconds d, std::function<void()> next) {
    if (d.count() <= 0) return next();
    if (options_.sleep) {
      std::lock_guard lock(calls_mu_);
      // Threads whose wait is over are joined as new ones start.
      std::erase_if(helpers_, [](Helper& h) {
        if (!h.finished->load()) return false;
        h.thread.join();
        return true;
      });
      auto finished = std::make_shared<std::atomic<bool>>(false);
      helpers_.push_back(Helper{std::thread([this, call, d, finished, next = std::move(next)] {
                                  SleepUnlessCancelled(call->cancelled, d);
                                  next();
                                  *finished = true;
                                }),
                                finished});
      return;
    }
    Tick(call, std::chrono::steady_clock::now() + d, std::move(next));
  }

  void Tick(const CallPtr& call, std::chrono::steady_clock::time_point deadline,
            std::function<void()> next) {
    constexpr std::chrono::milliseconds kSlice{100};
    const auto now = std::chrono::steady_clock::now();
    // A cancelled call goes on at once: its next step sees it and ends.
    if (now >= deadline || IsCancelled(*call)) return next();
    const auto at = call->cancelled ? std::min(deadline, now + kSlice) : deadline;
    Loop().PostAt(at, [this, call, deadline, next = std::move(next)]() mutable {
      Tick(call, deadline, std::move(next));
    });
  }

  void SleepUnlessCancelled(const std::function<bool()>& cancelled,
                            std::chrono::milliseconds d) const {
    if (!cancelled) {
      options_.sleep(d);
      return;
    }
    constexpr std::chrono::milliseconds kSlice{100};
    while (d.count() > 0 && !cancelled()) {
      const std::chrono::milliseconds step = std::min(d, kSlice);
      options_.sleep(step);
      d -= step;
    }
  }

  // The process's I/O loop, taken when the first timer is needed.
  IoLoop& Loop() {
    std::call_once(loop_once_, [this] { loop_ = IoLoop::Get(); });
    return *loop_;
  }

  Status Abandoned(int attempts_made) const {
    return Cancelled("the call to " + std::string(provider()) + " was abandoned after " +
                         std::to_string(attempts_made) +
                         " attempt(s): its work was stopped (cancelled, ended or shutting down)",
                     "nothing to do: the work resumes on the next start or has ended");
  }

  // What the transport's answer to one attempt means.
  Attempt Classify(Call& call, Result<ClientResponse> sent) {
    Attempt a;
    const bool stream = call.stream;
    if (!sent.ok()) {
      const Status& s = call.stream_error.ok() ? sent.status() : call.stream_error;
      a.retryable = IsRetryableCode(s.code());
      // No answer at all: unreachable (or too slow); a stream that broke
      // after the answer began is a failing provider.
      a.failing_as = !call.stream_error.ok()               ? "failing"
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
        a.result = call.decoder->Finish();
      } else {
        Result<nlohmann::json> j = ParseProviderJson(provider(), stream ? call.raw : resp.body);
        a.result = j.ok() ? codec_->DecodeResponse(j.value()) : Result<LlmResponse>(j.status());
        if (stream && a.result.ok() && call.on_text && !a.result->text.empty()) {
          call.on_text(a.result->text);
        }
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
      // 529 is Anthropic's "overloaded": the service's load, not our quota.
      a.failing_as = resp.status == 429   ? "rate limiting"
                     : resp.status == 529 ? "overloaded"
                                          : "failing";
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
    // Local servers' contexts are often small: name the settings that fit
    // the request into them.
    const bool context_full = SaysContextTooLong(resp.body);
    if (resp.status == 413) {
      // A property of the request, not of the provider's load: not an outage.
      return InvalidArgument(
          p + " rejected the request as too large (" + code + "): " + msg,
          context_full ? ContextTooLongHint() : "shorten the conversation or the files sent");
    }
    return InvalidArgument(
        p + " rejected the request (" + code + "): " + msg,
        context_full ? ContextTooLongHint() : "check the model name and the LLM settings");
  }

  // Keeps the API key out of every message, whatever a server echoes back.
  // (URL passwords are masked where URLs enter messages: the transport.)
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
  std::once_flag loop_once_;
  std::shared_ptr<IoLoop> loop_;  // set by Loop()
  std::mutex calls_mu_;
  std::condition_variable calls_cv_;
  int calls_ = 0;  // guarded by calls_mu_; calls under way
  struct Helper {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::vector<Helper> helpers_;  // guarded by calls_mu_; the sleep seam's waits
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
