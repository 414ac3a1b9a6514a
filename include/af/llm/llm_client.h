#pragma once
// LlmClient: one interface over the model providers (anthropic,
// openai and compatible servers, replay), with retries, timeouts and a record
// of every call. The HTTP providers also protect the provider from the many
// agents sharing one client: a request rate limit and a shared pause after a
// rate-limit answer (every attempt of every thread waits its turn), and a
// circuit breaker that fails calls fast while the provider is down.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "af/core/status.h"
#include "af/llm/http_transport.h"
#include "af/llm/pricing.h"
#include "af/llm/types.h"

namespace af {

// Receives text deltas while a streamed response arrives (request.stream).
// The HTTP providers call it on their I/O thread (see CompleteAsync), also
// for Complete, whose caller is blocked meanwhile (so state the caller owns
// needs no lock, but thread-local state is not the caller's); it must not
// block. Replay calls it on the calling thread. When a stream breaks and the call
// is retried, the deltas of the new attempt start from the beginning again:
// the returned LlmResponse::text is authoritative.
using StreamCallback = std::function<void(std::string_view delta)>;

// The outcome of one Complete call, for the llm_calls table and per-feature
// totals. Never contains the API key.
struct LlmCallRecord {
  std::string provider;
  std::string model;
  std::string agent_role;
  std::string feature_id;
  std::string task_id;
  std::string request_hash;  // RequestHash(request)
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double cost_usd = 0;
  int64_t latency_ms = 0;
  int attempts = 0;
  std::string status;                     // "ok" or CodeName(code) of the failure
  std::string error;                      // Status::ToString() of the failure; empty when ok
  const LlmResponse* response = nullptr;  // the reply when ok; valid during the callback only
};

// Wakes the caller when a rate-limit answer starts a pause of every call of
// the client (once per pause, not per thread or attempt).
struct RateLimitPause {
  std::string provider;
  std::chrono::milliseconds wait{0};            // how long no attempt is sent from now
  std::string feature_id, task_id, agent_role;  // the request that was limited
  std::string error;                            // its failure, e.g. "... rate limit (HTTP 429)"
};

struct LlmOptions {
  std::string provider;  // "anthropic" | "openai" | "replay"; required
  std::string model;     // default model when a request names none
  std::string api_key;   // required for anthropic, and for openai at the default base_url
  // Empty = https://api.anthropic.com (POST {base}/v1/messages) or
  // https://api.openai.com/v1 (POST {base}/chat/completions). Any compatible
  // server (Ollama, vLLM, llama.cpp, a test fake) can be named here.
  std::string base_url;
  std::chrono::milliseconds timeout{120000};         // per attempt, whole response; default 120 s
  std::chrono::milliseconds connect_timeout{10000};  // default 10 s
  int max_retries = 4;                               // retries after the first attempt
  std::chrono::milliseconds backoff_base{500};       // first backoff cap; default 0.5 s
  std::chrono::milliseconds backoff_max{30000};      // backoff cap; default 30 s
  std::string replay_file;                           // replay JSONL; empty = the built-in one
  std::shared_ptr<HttpTransport> transport;          // seam; null = libcurl
  // Seam for the backoff and rate-limit waits; null = timers on the I/O
  // thread (no thread is held while a call waits). When set (tests: a fake
  // clock's sleeper), each wait calls it on a helper thread of its own, in
  // slices of 100 ms while the call can be cancelled, and the call goes on
  // from that thread (so its on_text / done run there). WaitForProbe sleeps
  // through it too. Must be thread-safe.
  std::function<void(std::chrono::milliseconds)> sleep;
  // Seam for the time the rate limiter and the circuit breaker read; null =
  // std::chrono::steady_clock::now. Must be thread-safe.
  std::function<std::chrono::steady_clock::time_point()> clock;
  // Attempts (retries included) sent per minute by all threads together, as a
  // token bucket holding one minute's worth; callers wait for a token in turn.
  // 0 = no limit.
  int requests_per_minute = 0;
  // The circuit opens after this many calls in a row failed with an outage
  // (IsProviderOutage) once their retries ran out; 0 = no circuit breaker.
  int circuit_failures = 5;
  // How long an open circuit fails calls fast before letting one probe through.
  std::chrono::milliseconds circuit_cooldown{30000};
  uint64_t seed = 0;  // jitter RNG seed; 0 = seeded from std::random_device
  // Observer of the start of every shared rate-limit pause (see
  // RateLimitPause), on the thread that saw the limited attempt end (the I/O
  // thread). Thread-safe; must not block.
  std::function<void(const RateLimitPause&)> on_rate_limit;
  // Observer called exactly once per Complete / CompleteAsync, with the
  // outcome, after the call finished: on the calling thread for Complete, on
  // the thread that runs `done` for CompleteAsync. Must be thread-safe itself
  // and must not block.
  std::function<void(const LlmCallRecord&)> on_call;
  // Prices that replace or extend the built-in table (llm.prices).
  PriceTable prices;
};

// What a client's circuit breaker says now (for /health, /metrics and agents
// deciding whether to wait).
//   closed:    calls go through;
//   open:      calls fail at once with kUnavailable (no request is sent) until
//              open_until_ms;
//   half_open: the cooldown is over and one probe call is under way; its
//              success closes the circuit, its failure opens it again.
struct LlmHealth {
  bool breaker = false;           // false: this client has none (replay); state stays "closed"
  std::string state = "closed";   // "closed" | "open" | "half_open"
  int consecutive_failures = 0;   // outage failures in a row (reset by a success)
  int64_t open_until_ms = 0;      // open: when a probe is let through (Unix ms, fixed when
                                  // the circuit opened); else 0
  int64_t retry_in_ms = 0;        // open: time left until then (>= 0); else 0
  std::string last_error;         // the last outage failure; empty after a success
  int64_t rate_limit_pauses = 0;  // times all calls were paused after a rate-limit answer
  // The provider's attempts (retries included) that failed with an outage
  // since its last answer: known from the first failed attempt, long before
  // a call gives up or the circuit opens. All reset by a success.
  int failed_attempts = 0;
  int64_t failing_since_ms = 0;  // Unix ms of the first of them; 0 when none
  // What the provider did: "unreachable" (no connection), "timing out",
  // "rate limiting" (429/529) or "failing" (5xx, broken replies); "" when none.
  std::string failing_as;
  Status last_attempt_failure;  // the last failed attempt (message and hint)
};

// Ok while the provider answers. Otherwise what it has been doing, as the
// error a feature that gave up waiting for it ends with, e.g. "anthropic
// unreachable for 40 s: cannot connect to http://...", with what to do (the
// base URL for an unreachable server, waiting for an overloaded one).
// `now_ms`: Unix ms.
Status ProviderOutageStatus(std::string_view provider, const LlmHealth& health, int64_t now_ms);

// What to do about a provider failing as `failing_as` (LlmHealth::failing_as):
// check its base URL when it cannot be reached, wait when it is down or
// limiting us. Shown while features wait, and in ProviderOutageStatus's hint.
std::string ProviderOutageAdvice(std::string_view provider, std::string_view failing_as);

// True for the failures of Complete that mean the provider is down, overloaded
// or limiting us (kUnavailable, kDeadlineExceeded, kResourceExhausted): the
// ones the circuit breaker counts, and worth trying again later. Requests the
// provider rejects (400, 401, 404, ...) are not outages.
bool IsProviderOutage(const Status& status);

// Thread safety: Complete and CompleteAsync may be called concurrently from
// many threads on one client (many agents share one client per provider).
// Destroying a client waits for its asynchronous calls under way to end (a
// cancelled one ends within about 100 ms), so do not destroy it from its own
// on_text / done callbacks.
class LlmClient {
 public:
  // Builds the client for options.provider. Errors (no request is made):
  //   kInvalidArgument: unknown provider, bad options, replay file with a bad
  //                     line (the message names file:line);
  //   kNotFound:        replay file missing;
  //   kUnauthenticated: "ANTHROPIC_API_KEY not set" (or OPENAI_API_KEY when the
  //                     base URL is OpenAI's own) with a hint on how to set it.
  static Result<std::unique_ptr<LlmClient>> Create(const LlmOptions& options);

  explicit LlmClient(std::function<void(const LlmCallRecord&)> on_call = {});
  // Waits for the records of asynchronous calls still posted (see
  // CompleteAsync's `post`): they use this client.
  virtual ~LlmClient();
  LlmClient(const LlmClient&) = delete;
  LlmClient& operator=(const LlmClient&) = delete;

  // Sends `request` and returns the model's reply. Retries 429, 500, 502, 503,
  // 504, 529, timeouts, refused connections and broken streams with
  // exponential backoff and jitter, honouring retry-after. Errors:
  //   kUnauthenticated:   "Invalid API key" (HTTP 401/403, not retried);
  //   kInvalidArgument:   the provider rejected the request (other 4xx), or the
  //                       model sent tool arguments that are not JSON;
  //   kNotFound:          HTTP 404 (unknown model or wrong base URL), or no
  //                       recorded response (replay);
  //   kResourceExhausted: still rate limited when retries ran out;
  //   kUnavailable:       server errors / unreachable / broken stream when
  //                       retries ran out (the message names the last status),
  //                       or the circuit is open: "LLM provider 'anthropic' is
  //                       unavailable: circuit open after 5 consecutive
  //                       failures (last: ...); next attempt in 27 s" (no
  //                       request sent, attempts 0);
  //   kDeadlineExceeded:  timed out on the last attempt;
  //   kInternal:          the provider sent malformed JSON (quoted, max 200 bytes);
  //   kCancelled:         request.cancelled said so (no further request was
  //                       sent; a transfer under way was abandoned);
  //   kFailedPrecondition: a proxy refused the request (HTTP 407: it wants
  //                       credentials) or the provider's TLS certificate does
  //                       not verify; named as such, not retried; or
  //                       Complete was called on the I/O thread (from a
  //                       callback), where it would wait for itself.
  // Calls options.on_call once with the outcome. The HTTP providers run the
  // call as CompleteAsync does and block the calling thread until it ends.
  Result<LlmResponse> Complete(const LlmRequest& request, const StreamCallback& on_text = {});

  // What an asynchronous call ends with: what Complete would have returned.
  using CompleteDone = std::function<void(Result<LlmResponse>)>;
  // Runs a piece of work on some other thread (e.g. a pool's Post).
  using Post = std::function<void(std::function<void()>)>;

  // Complete without holding the calling thread while the provider answers:
  // starts the call and returns; `done` receives the outcome exactly once,
  // after options.on_call saw it. Same retries, limits, circuit and errors as
  // Complete.
  // Threads: `done` and `on_text` run on the client's I/O thread, or on the
  // calling thread before CompleteAsync returns when no request goes out
  // (replay, a refusal, an open circuit). Either way they must not block:
  // hand further work to another thread. request.cancelled is asked about
  // every 100 ms while the call waits, on the I/O thread: it must be cheap.
  // The HTTP providers run the call as a state machine on the process's one
  // I/O thread (src/llm/io_loop.h): the transfers, the backoff and rate-limit
  // waits are all timers or sockets there, so a thousand calls waiting cost
  // memory, not threads. Replay (no network) answers on the calling thread.
  // The base runs DoCompleteAsync inside the bookkeeping Complete does too
  // (latency, attempts, provider, on_call); an override (a test double)
  // takes that over itself.
  // `post`, when set, is where the outcome's bookkeeping (options.on_call,
  // which may write to a store) and `done` run instead: the I/O thread then
  // only hands them over and goes on with the other calls.
  virtual void CompleteAsync(LlmRequest request, StreamCallback on_text, CompleteDone done,
                             Post post = {});

  // "anthropic" | "openai" | "replay".
  virtual std::string_view provider() const = 0;

  // USD cost of `usage` on `model` with this client's prices (the built-in
  // table and LlmOptions::prices); what LlmCallRecord::cost_usd says.
  double Cost(std::string_view model, const Usage& usage) const {
    return CostUsd(provider(), model, usage, prices_);
  }

  // The circuit breaker's state now. Cheap; never blocks on a call.
  virtual LlmHealth Health() const { return {}; }

  // Waits until the circuit would let a call through (closed; open with the
  // cooldown over; half-open with no probe under way) or `max_wait` passes,
  // whichever is first, and says whether it would now. Returns true at once
  // when it already would. Sleeps with the sleep seam or waits for the probe
  // to end (no busy loop); a false return may come early, so loop on it.
  virtual bool WaitForProbe(std::chrono::milliseconds max_wait) {
    (void)max_wait;
    return true;
  }

 protected:
  // The provider's work. Sets *attempts to the number of attempts made (also
  // on failure). A request with an empty model uses the client's default.
  virtual Result<LlmResponse> DoComplete(const LlmRequest& request, const StreamCallback& on_text,
                                         int* attempts) = 0;
  // What DoCompleteAsync ends with: the result and the attempts made.
  using AttemptsDone = std::function<void(Result<LlmResponse>, int attempts)>;
  // The provider's asynchronous work (see CompleteAsync for the threads).
  // `request` is only valid during the call: keep a copy. The default runs
  // DoComplete on the calling thread.
  virtual void DoCompleteAsync(const LlmRequest& request, StreamCallback on_text,
                               AttemptsDone done);
  // The model used when a request names none.
  virtual std::string DefaultModel() const { return {}; }

 private:
  // What the on_call record needs of a request, kept instead of the whole
  // request (its conversation) while an asynchronous call is under way.
  // Also the provider and its default model, read at the start: the record
  // may be made while the client is being destroyed (no virtual call then).
  struct CallFacts {
    std::string model;  // as requested; empty = the client's default
    std::string provider, default_model;
    std::string agent_role, feature_id, task_id;
    std::string request_hash;  // only when there is an on_call observer
  };
  CallFacts Facts(const LlmRequest& request) const;
  // What every call ends with, whichever way it ran: the latency, attempts
  // and provider on the response, and the on_call record.
  void Conclude(const CallFacts& facts, std::chrono::steady_clock::time_point start, int attempts,
                Result<LlmResponse>& result) const;

  std::function<void(const LlmCallRecord&)> on_call_;
  PriceTable prices_;  // set once by Create
  std::mutex posted_mu_;
  std::condition_variable posted_cv_;
  int posted_ = 0;  // conclusions posted and not yet run; guarded by posted_mu_
};

// Where a role's calls go while the primary client's circuit is open
// (agents.<role>.fallback_model / fallback_provider).
struct LlmFallback {
  LlmClient* client = nullptr;  // its own retries and circuit
  std::string model;
};

}  // namespace af
