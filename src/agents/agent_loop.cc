#include "af/agents/agent_loop.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>

#include "af/agents/optimizer.h"
#include "af/core/config.h"
#include "af/core/fault.h"
#include "af/core/log.h"
#include "af/core/strings.h"
#include "af/llm/llm_client.h"
#include "af/llm/pricing.h"
#include "af/store/store.h"

namespace af {
namespace {

using json = nlohmann::json;

// A short, secret-free view of tool arguments for events and logs.
json ArgsSummary(const ToolCall& call) {
  json out = json::object();
  for (const char* k : {"path", "command", "query", "verdict"})
    if (call.arguments.contains(k) && call.arguments[k].is_string()) out[k] = call.arguments[k];
  if (call.name == "submit_plan" && call.arguments.contains("tasks") &&
      call.arguments["tasks"].is_array())
    out["tasks"] = call.arguments["tasks"].size();
  return out;
}

// Tools that change the workspace or the memory: a crash point follows each.
const std::set<std::string> kMutatingTools = {"write_file", "edit_file", "run_command", "remember"};

std::string TerminalTool(const std::string& role) {
  return role == "planner" ? "submit_plan" : role == "reviewer" ? "submit_review" : "finish";
}

// How a conversation of `role` ends: its terminal tool and what it takes.
std::string TerminalUse(const std::string& role) {
  if (role == "planner") return "call submit_plan with the plan's tasks";
  if (role == "reviewer")
    return "call submit_review with a verdict (approve or request_changes) and comments";
  return "call finish with a summary of what changed and how you checked it";
}

bool IsTerminal(const std::string& name) {
  return name == "finish" || name == "submit_plan" || name == "submit_review";
}

bool Offered(const std::vector<ToolDef>& tools, const std::string& name) {
  return std::any_of(tools.begin(), tools.end(), [&](const ToolDef& t) { return t.name == name; });
}

std::string ToolNames(const std::vector<ToolDef>& tools) {
  std::string names;
  for (const auto& t : tools) names += (names.empty() ? "" : ", ") + t.name;
  return names;
}

// The start of `text`, quoted: enough for the model to see where its text
// went wrong without echoing a whole file back.
std::string Start(std::string_view text, size_t max = 200) {
  std::string out = "'" + std::string(text.substr(0, max)) + "'";
  if (text.size() > max) out += " (the first " + std::to_string(max) + " characters)";
  return out;
}

// Why `call` cannot run as the model sent it, or "" when it can. Checked
// before any tool runs. `cut_off`: the reply stopped at the output limit
// and this is its last call, so its arguments are incomplete even when they
// happen to parse.
std::string Refusal(const std::string& role, const std::vector<ToolDef>& tools,
                    const ToolCall& call, bool cut_off, int max_tokens) {
  if (!Offered(tools, call.name)) {
    // Accepting a tool the role was not offered (a planner calling finish)
    // would end the conversation without its real result.
    return "the " + role + " has no tool '" + call.name + "'; its tools are: " + ToolNames(tools) +
           ". When the work is done, " + TerminalUse(role) + ": that ends your turn.";
  }
  if (cut_off) {
    const std::string advice =
        Offered(tools, "edit_file")
            ? "Write smaller pieces: change an existing file with edit_file instead of "
              "rewriting it, or split a large file into several smaller files, one write_file "
              "call each."
            : "Send it again, shorter.";
    return "your reply was cut off at the output limit (" + std::to_string(max_tokens) +
           " tokens) while it was writing the arguments of " + call.name + " (" +
           std::to_string(call.valid_arguments() ? call.arguments.dump().size()
                                                 : call.raw_arguments.size()) +
           " characters arrived), so the call was not run. " + advice;
  }
  if (!call.valid_arguments()) {
    return "the arguments of your " + call.name +
           " call could not be read: " + call.arguments_error +
           ". They began: " + Start(call.raw_arguments) +
           ". Nothing was run. Send the call again with a JSON object matching the " + call.name +
           " schema.";
  }
  return "";
}

// The re-ask when a reply has no tool call.
std::string NoToolCall(const std::string& role, const std::vector<ToolDef>& tools, bool cut_off,
                       int max_tokens) {
  std::string head = cut_off ? "Your reply was cut off at the output limit (" +
                                   std::to_string(max_tokens) +
                                   " tokens) and had no tool call, so it was not used. "
                             : "Your reply had no tool call. ";
  return head + "The " + role + " works only through tool calls (its tools: " + ToolNames(tools) +
         "). Do the next step with one of them; when the work is done, " + TerminalUse(role) +
         ": that ends your turn.";
}

// Whether text where a call was needed is a call written out as text, as
// models do when the server does not turn their tool-call syntax into native
// calls (llama.cpp without --jinja, vLLM without a tool-call parser).
bool LooksLikeTextCall(std::string_view text, const std::vector<ToolDef>& tools) {
  for (std::string_view marker : {"<tool_call>", "<function", "[TOOL_CALLS]", "<|python_tag|>"})
    if (text.find(marker) != std::string_view::npos) return true;
  if (text.find("\"name\"") == std::string_view::npos) return false;
  return std::any_of(tools.begin(), tools.end(), [&](const ToolDef& t) {
    return text.find("\"" + t.name + "\"") != std::string_view::npos;
  });
}

// What a reply without a tool call was, for the user: the model's own words
// (a question it asked, a call it wrote as text), not the re-ask it was sent.
std::string UnusedReply(const LlmResponse& resp, bool cut_off, bool text_call) {
  const std::string_view text = Trim(resp.text);
  std::string what = cut_off     ? "the reply was cut off at the output limit with no tool call"
                     : text_call ? "the reply wrote a tool call as text, not as a native tool call"
                                 : "the reply had no tool call";
  return text.empty() ? what + " and no text" : what + "; it said " + Start(text, 300);
}

}  // namespace

void EmitEvent(Store* store, const std::string& type, const std::string& feature_id,
               const std::string& task_id, const std::string& agent, json data) {
  Event e;
  e.type = type;
  e.feature_id = feature_id;
  e.task_id = task_id;
  e.agent = agent;
  e.data = std::move(data);
  if (auto r = store->AppendEvent(e); !r.ok())
    log::Get("agents")->warn("could not record event {}: {}", type, r.status().ToString());
}

bool WorkEnded(const Status& check) {
  const Code c = check.code();
  return c == Code::kCancelled || c == Code::kDeadlineExceeded || c == Code::kFailedPrecondition;
}

std::string FailureReason(const Status& s) {
  if (s.code() == Code::kCancelled) return "cancelled";
  if (s.code() == Code::kDeadlineExceeded) return "timeout";
  if (s.message().rfind("step limit reached", 0) == 0) return "max_steps";
  if (s.message().rfind(kTurnLimit, 0) == 0) return "max_turns";
  if (s.message().rfind("budget exceeded", 0) == 0) return "budget_exceeded";
  if (s.message().rfind(kNothingBuilt, 0) == 0) return "no_change";
  if (s.message().rfind(kUnusableReplies, 0) == 0) return "unusable_replies";
  if (s.message().rfind("delivery.command exited", 0) == 0) return "delivery_failed";
  return "agent_error";
}

namespace {

// When a model call must be given up (see AgentEnv::cancelled, WorkEnded).
std::function<bool()> CancelledBy(const AgentEnv& env) {
  if (env.cancelled) return env.cancelled;
  if (!env.check) return {};
  return [check = env.check] { return WorkEnded(check()); };
}

// A recorded answer to `req` (whose RequestHash is `hash`) from before a
// restart, announced as a replayed call; nullopt when there is none.
Result<std::optional<LlmResponse>> Replayed(const AgentEnv& env, const LlmRequest& req,
                                            const std::string& hash, const std::string& agent_id) {
  AF_ASSIGN_OR_RETURN(auto recorded, env.store->FindRecordedLlmCall(req.feature_id, hash));
  if (!recorded || recorded->response.is_null()) return std::optional<LlmResponse>();
  auto replay = ResponseFromJson(recorded->response);
  if (!replay.ok()) return std::optional<LlmResponse>();
  EmitEvent(env.store, "llm.call", req.feature_id, req.task_id, agent_id,
            {{"role", req.agent_role},
             {"model", recorded->model},
             {"provider", recorded->provider},
             {"input_tokens", recorded->input_tokens},
             {"output_tokens", recorded->output_tokens},
             {"cost_usd", 0.0},
             {"replayed", true}});
  return std::optional<LlmResponse>(std::move(replay).value());
}

// One model call through `llm`: replay, limits, the call itself, its event.
// *provider_failed: the failure, if any, is the provider's answer (not a
// limit or the store).
// The model's answer to `req` through `llm`. With an executor the call holds
// no thread while the provider answers (LlmClient::CompleteAsync) and the
// coroutine goes on on the executor; without one it blocks this thread.
struct ModelAnswer {
  LlmClient* llm;
  const LlmRequest* req;
  std::string hash;  // RequestHash(*req)
  Executor* executor;
  std::optional<Result<LlmResponse>> result;

  bool await_ready() {
    if (executor != nullptr) return false;
    result.emplace(llm->Complete(*req));
    return true;
  }
  void await_suspend(std::coroutine_handle<> h) {
    // The copy the client takes anyway, with the hash already computed.
    LlmRequest sent = *req;
    sent.request_hash = std::move(hash);
    // The outcome is recorded (a store write) and the conversation goes on
    // on the executor: the client's I/O thread only hands them over.
    llm->CompleteAsync(
        std::move(sent), {},
        [this, h](Result<LlmResponse> r) {
          result.emplace(std::move(r));
          h.resume();
        },
        [ex = executor](std::function<void()> fn) { ex->Post(std::move(fn)); });
  }
  Result<LlmResponse> await_resume() { return std::move(*result); }
};

Async<Result<LlmResponse>> CallModelOnce(const AgentEnv& env, LlmClient* llm, const LlmRequest& req,
                                         const std::string& agent_id, bool* provider_failed) {
  *provider_failed = false;
  const Config& cfg = *env.config;
  std::string hash = RequestHash(req);
  AF_CO_ASSIGN_OR_RETURN(auto replayed, Replayed(env, req, hash, agent_id));
  if (replayed) co_return std::move(*replayed);

  // Counted before it is made, at its worst case, together with the calls
  // other agents have in flight (see BudgetLedger).
  const int64_t in_est = EstimateTokens(req);
  const std::string model = req.model.empty() ? cfg.llm.model : req.model;
  const CallEstimate estimate{in_est + req.max_tokens,
                              llm->Cost(model, Usage{in_est, int64_t{req.max_tokens}})};
  AF_CO_ASSIGN_OR_RETURN(BudgetLedger::Reservation reservation,
                         env.budget->Reserve(req.feature_id, estimate));
  if (reservation.daily_warning()) {
    EmitEvent(
        env.store, "budget.warning", req.feature_id, req.task_id, agent_id,
        {{"spent_today_usd", reservation.spent_today_usd()}, {"daily_usd", cfg.budget.daily_usd}});
  }

  // A named awaiter: GCC 12 mishandles temporaries with members in co_await.
  ModelAnswer answer{llm, &req, std::move(hash), env.executor, std::nullopt};
  Result<LlmResponse> resp = co_await answer;
  if (resp.ok()) fault::CrashPoint("llm call");  // recorded (LlmOptions::on_call), no event yet
  if (!resp.ok() && resp.status().code() == Code::kCancelled && env.check) {
    // Given up because the work ended: say why it ended (e.g. the timeout).
    if (Status why = env.check(); !why.ok()) co_return why;
  }
  if (!resp.ok()) {
    // No event here: a failure that ends the job is reported once, by the
    // job's own "error" event; one that is waited out is reported by CallModel.
    *provider_failed = true;
    co_return resp.status();
  }
  json call = {{"role", req.agent_role},
               {"model", resp->model},
               {"provider", resp->provider},
               {"input_tokens", resp->usage.input_tokens},
               {"output_tokens", resp->usage.output_tokens},
               {"cost_usd", llm->Cost(resp->model, resp->usage)},
               {"latency_ms", resp->latency_ms},
               {"replayed", false}};
  // The request as sent and as it would have been uncondensed, in the same
  // estimate (EstimateTokens), whatever the provider counts: what the token
  // measurements compare.
  if (req.uncondensed_tokens > 0) {
    call["context_tokens"] = EstimateTokens(req);
    call["uncondensed_tokens"] = req.uncondensed_tokens;
  }
  EmitEvent(env.store, "llm.call", req.feature_id, req.task_id, agent_id, std::move(call));
  co_return resp;
}

// Whether this agent has yet to say, in this feature, that its calls go to
// the fallback while the circuit opening that ends at `open_until_ms` lasts
// (once per opening, not per call). Remembers that it now has.
bool FirstFallbackNotice(const std::string& agent_id, const std::string& feature_id,
                         int64_t open_until_ms) {
  static std::mutex mu;
  static std::map<std::pair<std::string, std::string>, int64_t> announced;
  std::lock_guard lock(mu);
  if (announced.size() > 10'000) announced.clear();  // ended features' entries
  int64_t& last = announced[{agent_id, feature_id}];
  if (last == open_until_ms) return false;
  last = open_until_ms;
  return true;
}

// The role's fallback, if it has one.
const LlmFallback* FallbackFor(const AgentEnv& env, const std::string& role) {
  if (env.fallbacks == nullptr) return nullptr;
  auto it = env.fallbacks->find(role);
  return it == env.fallbacks->end() || it->second.client == nullptr ? nullptr : &it->second;
}

// Blocks while the provider's circuit is open (or its probe is under way),
// announcing each opening once; returns when a call may go through, or with
// the check's status (cancelled, timeout). Sleeps at most a second at a time
// so cancellation is noticed.
Status WaitForCircuit(const AgentEnv& env, const LlmRequest& req, const std::string& agent_id,
                      bool* degraded) {
  int64_t announced_until = -1;
  for (;;) {
    if (env.check) AF_RETURN_IF_ERROR(env.check());
    const LlmHealth h = env.llm->Health();
    if (h.state == "closed") return Status::Ok();
    if (!*degraded && env.set_state) env.set_state("degraded");
    *degraded = true;
    if (h.state == "open" && h.open_until_ms != announced_until) {
      announced_until = h.open_until_ms;
      const std::string provider(env.llm->provider());
      EmitEvent(env.store, "llm.circuit", req.feature_id, req.task_id, agent_id,
                {{"provider", provider},
                 {"state", h.state},
                 {"next_attempt_ms", h.open_until_ms},
                 {"consecutive_failures", h.consecutive_failures},
                 {"last_error", h.last_error},
                 {"failing_as", h.failing_as}});
      log::Get("agents")->info("{} waits {} s for the {} circuit to let a call through", agent_id,
                               (h.retry_in_ms + 999) / 1000, provider);
    }
    if (env.llm->WaitForProbe(std::chrono::seconds(1))) return Status::Ok();
  }
}

}  // namespace

Async<Result<LlmResponse>> CallModelTask(const AgentEnv& env, const LlmRequest& req,
                                         const std::string& agent_id) {
  const LlmFallback* fallback = FallbackFor(env, req.agent_role);
  LlmRequest alt;
  if (fallback != nullptr) {
    alt = req;
    alt.model = fallback->model;
    // Answered by the fallback before a restart: not paid for twice.
    AF_CO_ASSIGN_OR_RETURN(auto replayed, Replayed(env, alt, RequestHash(alt), agent_id));
    if (replayed) co_return std::move(*replayed);
  }
  bool degraded = false;
  for (;;) {
    bool provider_failed = false;
    const LlmHealth primary = env.llm->Health();
    const bool use_fallback = fallback != nullptr && primary.state == "open";
    if (use_fallback && FirstFallbackNotice(agent_id, req.feature_id, primary.open_until_ms)) {
      const std::string model = req.model.empty() ? env.config->llm.model : req.model;
      EmitEvent(env.store, "llm.fallback", req.feature_id, req.task_id, agent_id,
                {{"role", req.agent_role},
                 {"provider", std::string(env.llm->provider())},
                 {"model", model},
                 {"fallback_provider", std::string(fallback->client->provider())},
                 {"fallback_model", fallback->model},
                 {"reason", primary.last_error}});
      log::Get("agents")->warn("{}: {} circuit open, calls go to {} ({}) meanwhile", agent_id,
                               env.llm->provider(), fallback->model, fallback->client->provider());
    }
    LlmClient* const client = use_fallback ? fallback->client : env.llm;
    Result<LlmResponse> resp =
        co_await CallModelOnce(env, client, use_fallback ? alt : req, agent_id, &provider_failed);
    if (resp.ok() || !provider_failed || !IsProviderOutage(resp.status()) ||
        !client->Health().breaker) {
      if (degraded && env.set_state) env.set_state("busy");
      if (degraded && resp.ok() && !use_fallback) {  // the outage this agent waited out is over
        EmitEvent(env.store, "llm.circuit", req.feature_id, req.task_id, agent_id,
                  {{"provider", std::string(env.llm->provider())}, {"state", "closed"}});
      }
      co_return resp;
    }
    EmitEvent(env.store, "error", req.feature_id, req.task_id, agent_id,
              {{"where", "llm"}, {"message", resp.status().ToString()}, {"retrying", true}});
    // The log says it too: a provider timing out or refusing connections
    // would otherwise leave no line until its circuit opened.
    log::Get("agents")->warn("{}: model call failed, will retry: {}", agent_id,
                             resp.status().ToString());
    // The primary just opened its circuit: its fallback takes the next call.
    if (!use_fallback && fallback != nullptr && env.llm->Health().state == "open") continue;
    Status waited = WaitForCircuit(env, req, agent_id, &degraded);
    if (!waited.ok()) {
      if (degraded && env.set_state) env.set_state("busy");
      co_return waited;
    }
  }
}

Result<LlmResponse> CallModel(const AgentEnv& env, const LlmRequest& req,
                              const std::string& agent_id) {
  // Blocking by definition: no executor, so nothing waits for a thread.
  AgentEnv blocking = env;
  blocking.executor = nullptr;
  return SyncWait(CallModelTask(blocking, req, agent_id));
}

namespace {

// Optimizer::Fit with the agent's own model as the summarizer: the summary
// call is made, counted and recorded like the agent's other calls, so a
// resumed feature replays it and condenses to the same context. Each summary
// made (or failed, leaving stubs and cuts only) is announced once.
Status FitToBudget(const AgentEnv& env, const Conversation& conv, LlmRequest& sent) {
  FitReport report;
  Summarizer summarize = [&](const LlmRequest& ask) -> Result<std::string> {
    AF_ASSIGN_OR_RETURN(LlmResponse resp, CallModel(env, ask, conv.agent_id));
    return resp.text;
  };
  Status fit = env.optimizer->Fit(sent, summarize, &report);
  sent.uncondensed_tokens = report.tokens_before;
  if (report.summary_called) {
    json data = {{"role", sent.agent_role},
                 {"stubbed", report.stubbed},
                 {"summarized", report.summarized},
                 {"tokens_before", report.tokens_before},
                 {"tokens_after", report.tokens_after}};
    if (!report.fallback.empty()) data["fallback"] = "stubs and cuts only: " + report.fallback;
    EmitEvent(env.store, "context.summary", conv.feature_id, conv.task_id, conv.agent_id, data);
  }
  return fit;
}

}  // namespace

Async<Result<ConversationEnd>> Converse(const AgentEnv& env, const Conversation& conv,
                                        const ToolContext& tools) {
  const Config& cfg = *env.config;
  LlmRequest req;
  req.model = conv.model;
  req.system = conv.system;
  req.tools = ToolsForRole(conv.role);
  req.max_tokens = cfg.MaxTokensFor(conv.role);
  req.temperature = cfg.llm.temperature;
  req.agent_role = CanonicalRole(conv.role);
  req.feature_id = conv.feature_id;
  req.task_id = conv.task_id;
  req.cancelled = CancelledBy(env);
  req.messages.push_back(Message::User(conv.first_user));

  auto logger = log::Get("agents");
  // Replies in a row that could not be used at all (no call ran): each is
  // answered with what was wrong and asked again, up to limits.max_reasks
  // times; one more fails the conversation naming the last problem.
  int bad_in_a_row = 0;
  bool text_call = false;  // the last unusable reply wrote its call as text
  const int max_turns = cfg.limits.max_turns;
  // The same call made again and again (a model reading one file in a loop)
  // is pointed out to it: the result alone does not tell it nothing changed.
  std::string last_call;
  int repeats = 0;
  for (int turn = 1; turn <= max_turns; ++turn) {
    if (env.check) AF_CO_RETURN_IF_ERROR(env.check());
    LlmRequest sent = req;
    AF_CO_RETURN_IF_ERROR(FitToBudget(env, conv, sent));
    AF_CO_ASSIGN_OR_RETURN(LlmResponse resp, co_await CallModelTask(env, sent, conv.agent_id));
    // A reply stopped at the output limit is never taken as complete.
    const bool cut_off = resp.stop_reason == "max_tokens";

    // A server that ignores max_tokens can send megabytes of text (a model
    // repeating itself); kept whole, it would fill every later request of
    // the conversation past the context window. The calls stay whole.
    const size_t max_text = std::max<size_t>(16384, static_cast<size_t>(req.max_tokens) * 4);
    std::string text = resp.text;
    if (text.size() > max_text) {
      text = std::string(Utf8Prefix(text, max_text)) + "\n[the rest of this reply (" +
             std::to_string(text.size()) + " bytes in all) was cut: it was longer than the " +
             std::to_string(req.max_tokens) + "-token output limit]";
    }
    req.messages.push_back(Message::Assistant(std::move(text), resp.tool_calls));
    std::string problem;  // the last refusal of this turn
    bool any_ran = false;
    if (resp.tool_calls.empty()) {
      text_call = LooksLikeTextCall(resp.text, req.tools);
      problem = UnusedReply(resp, cut_off, text_call);
      EmitEvent(env.store, "reply.refused", conv.feature_id, conv.task_id, conv.agent_id,
                {{"role", conv.role}, {"problem", problem}});
      req.messages.push_back(
          Message::User(NoToolCall(conv.role, req.tools, cut_off, req.max_tokens)));
    } else {
      text_call = false;
    }
    for (size_t i = 0; i < resp.tool_calls.size(); ++i) {
      const ToolCall& call = resp.tool_calls[i];
      const std::string refused = Refusal(
          conv.role, req.tools, call, cut_off && i + 1 == resp.tool_calls.size(), req.max_tokens);
      ToolOutcome out =
          refused.empty() ? ExecuteTool(call, tools) : ToolOutcome{refused, true, false};
      const std::string this_call =
          call.name + (call.valid_arguments() ? call.arguments.dump() : call.raw_arguments);
      repeats = this_call == last_call ? repeats + 1 : 1;
      last_call = this_call;
      if (!out.is_error && kMutatingTools.count(call.name)) fault::CrashPoint("tool " + call.name);
      json event = {{"tool", call.name},
                    {"args", ArgsSummary(call)},
                    {"ok", !out.is_error},
                    {"result", out.content.substr(0, 300)}};
      if (!refused.empty()) event["refused"] = true;
      EmitEvent(env.store, "tool.call", conv.feature_id, conv.task_id, conv.agent_id,
                std::move(event));
      logger->debug("{} {}({}) -> {}{}", conv.agent_id, call.name, ArgsSummary(call).dump(),
                    out.is_error ? "error: " : "", out.content.substr(0, 120));
      std::string told = out.content;
      if (repeats >= 3 && !out.terminal) {
        told += "\n\n(You made this same " + call.name + " call " + std::to_string(repeats) +
                " times in a row: repeating it changes nothing. Do the next step, or " +
                TerminalUse(conv.role) + ".)";
      }
      req.messages.push_back(Message::ToolResult(call.id, std::move(told), out.is_error));
      if (out.terminal) co_return ConversationEnd{call.name, call.arguments, turn};
      // A terminal tool that refused its arguments (a plan with no task, a
      // verdict that is neither) did not move the work on either.
      if (!refused.empty() || (out.is_error && IsTerminal(call.name))) {
        // Tools name themselves in their errors ("submit_review: verdict ...").
        problem = out.content.rfind(call.name + ":", 0) == 0 ? out.content
                                                             : call.name + ": " + out.content;
      } else {
        any_ran = true;
      }
    }
    if (any_ran) {
      bad_in_a_row = 0;
      continue;
    }
    if (++bad_in_a_row > cfg.limits.max_reasks) {
      co_return ResourceExhausted(
          std::string(kUnusableReplies) + ": the " + conv.role + "'s last " +
              std::to_string(bad_in_a_row) + " replies in a row could not be used (" +
              std::to_string(cfg.limits.max_reasks) +
              " re-asks allowed, limits.max_reasks); the last: " + problem.substr(0, 600),
          text_call ? "the server returns the model's tool calls as text: turn on native tool "
                      "calls (llama.cpp: --jinja; vLLM: --enable-auto-tool-choice and a "
                      "--tool-call-parser; Ollama: a model with tool support), or use another model"
                    : "use a model with reliable tool calling, or raise limits.max_reasks; the "
                      "feature's tool.call and reply.refused events show every refused call and "
                      "reply");
    }
    logger->info("{}: its reply could not be used; re-ask {} of {}: {}", conv.agent_id,
                 bad_in_a_row, cfg.limits.max_reasks, problem.substr(0, 160));
  }
  co_return ResourceExhausted(
      std::string(kTurnLimit) + ": the " + conv.role + " made " + std::to_string(max_turns) +
          " model calls and never called " + TerminalTool(conv.role) +
          " (limits.max_turns = " + std::to_string(max_turns) + ")",
      "the model may be stuck (the feature's tool.call events show its calls): split the task, "
      "use a stronger model, or raise limits.max_turns");
}

}  // namespace af
