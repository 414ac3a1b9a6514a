#include "af/agents/agent_loop.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>

#include "af/agents/optimizer.h"
#include "af/core/config.h"
#include "af/core/fault.h"
#include "af/core/log.h"
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

// The tool that ends a conversation of `role`.
const char* TerminalTool(const std::string& role) {
  return role == "planner" ? "submit_plan" : role == "reviewer" ? "submit_review" : "finish";
}

bool Offered(const std::vector<ToolDef>& tools, const std::string& name) {
  return std::any_of(tools.begin(), tools.end(), [&](const ToolDef& t) { return t.name == name; });
}

// A call of a tool the role was not offered (say a planner calling finish) is
// refused like any bad call: the model reads why and what it has, and can try
// again. Accepting it would end the conversation without its real result.
ToolOutcome NotOffered(const std::string& role, const std::vector<ToolDef>& tools,
                       const std::string& name) {
  std::string names;
  for (const auto& t : tools) names += (names.empty() ? "" : ", ") + t.name;
  return {"the " + role + " has no tool '" + name + "'; its tools are: " + names + ". End with " +
              TerminalTool(role) + ".",
          true, false};
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
  if (s.message().rfind("budget exceeded", 0) == 0) return "budget_exceeded";
  if (s.message().rfind(kNothingBuilt, 0) == 0) return "no_change";
  return "agent_error";
}

namespace {

// When a model call must be given up (see WorkEnded).
std::function<bool()> CancelledBy(const AgentEnv& env) {
  if (!env.check) return {};
  return [check = env.check] { return WorkEnded(check()); };
}

// A recorded answer to `req` from before a restart, announced as a replayed
// call; nullopt when there is none.
Result<std::optional<LlmResponse>> Replayed(const AgentEnv& env, const LlmRequest& req,
                                            const std::string& agent_id) {
  AF_ASSIGN_OR_RETURN(auto recorded,
                      env.store->FindRecordedLlmCall(req.feature_id, RequestHash(req)));
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
Result<LlmResponse> CallModelOnce(const AgentEnv& env, LlmClient* llm, const LlmRequest& req,
                                  const std::string& agent_id, bool* provider_failed) {
  *provider_failed = false;
  const Config& cfg = *env.config;
  AF_ASSIGN_OR_RETURN(auto replayed, Replayed(env, req, agent_id));
  if (replayed) return std::move(*replayed);

  // Counted before it is made, at its worst case, together with the calls
  // other agents have in flight (see BudgetLedger).
  const int64_t in_est = EstimateTokens(req);
  const std::string model = req.model.empty() ? cfg.llm.model : req.model;
  const CallEstimate estimate{in_est + req.max_tokens,
                              llm->Cost(model, Usage{in_est, int64_t{req.max_tokens}})};
  AF_ASSIGN_OR_RETURN(BudgetLedger::Reservation reservation,
                      env.budget->Reserve(req.feature_id, estimate));
  if (reservation.daily_warning()) {
    EmitEvent(
        env.store, "budget.warning", req.feature_id, req.task_id, agent_id,
        {{"spent_today_usd", reservation.spent_today_usd()}, {"daily_usd", cfg.budget.daily_usd}});
  }

  auto resp = llm->Complete(req);
  if (resp.ok()) fault::CrashPoint("llm call");  // recorded (LlmOptions::on_call), no event yet
  if (!resp.ok() && resp.status().code() == Code::kCancelled && env.check) {
    // Given up because the work ended: say why it ended (e.g. the timeout).
    if (Status why = env.check(); !why.ok()) return why;
  }
  if (!resp.ok()) {
    // No event here: a failure that ends the job is reported once, by the
    // job's own "error" event; one that is waited out is reported by CallModel.
    *provider_failed = true;
    return resp.status();
  }
  json call = {{"role", req.agent_role},
               {"model", resp->model},
               {"provider", resp->provider},
               {"input_tokens", resp->usage.input_tokens},
               {"output_tokens", resp->usage.output_tokens},
               {"cost_usd", llm->Cost(resp->model, resp->usage)},
               {"latency_ms", resp->latency_ms},
               {"replayed", false}};
  if (req.uncondensed_tokens > 0) call["uncondensed_tokens"] = req.uncondensed_tokens;
  EmitEvent(env.store, "llm.call", req.feature_id, req.task_id, agent_id, std::move(call));
  return resp;
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
                 {"last_error", h.last_error}});
      log::Get("agents")->info("{} waits {} s for the {} circuit to let a call through", agent_id,
                               (h.retry_in_ms + 999) / 1000, provider);
    }
    if (env.llm->WaitForProbe(std::chrono::seconds(1))) return Status::Ok();
  }
}

}  // namespace

Result<LlmResponse> CallModel(const AgentEnv& env, const LlmRequest& req,
                              const std::string& agent_id) {
  const LlmFallback* fallback = FallbackFor(env, req.agent_role);
  LlmRequest alt;
  if (fallback != nullptr) {
    alt = req;
    alt.model = fallback->model;
    // Answered by the fallback before a restart: not paid for twice.
    AF_ASSIGN_OR_RETURN(auto replayed, Replayed(env, alt, agent_id));
    if (replayed) return std::move(*replayed);
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
    Result<LlmResponse> resp =
        use_fallback ? CallModelOnce(env, fallback->client, alt, agent_id, &provider_failed)
                     : CallModelOnce(env, env.llm, req, agent_id, &provider_failed);
    LlmClient* used = use_fallback ? fallback->client : env.llm;
    if (resp.ok() || !provider_failed || !IsProviderOutage(resp.status()) ||
        !used->Health().breaker) {
      if (degraded && env.set_state) env.set_state("busy");
      if (degraded && resp.ok() && !use_fallback) {  // the outage this agent waited out is over
        EmitEvent(env.store, "llm.circuit", req.feature_id, req.task_id, agent_id,
                  {{"provider", std::string(env.llm->provider())}, {"state", "closed"}});
      }
      return resp;
    }
    EmitEvent(env.store, "error", req.feature_id, req.task_id, agent_id,
              {{"where", "llm"}, {"message", resp.status().ToString()}, {"retrying", true}});
    // The primary just opened its circuit: its fallback takes the next call.
    if (!use_fallback && fallback != nullptr && env.llm->Health().state == "open") continue;
    Status waited = WaitForCircuit(env, req, agent_id, &degraded);
    if (!waited.ok()) {
      if (degraded && env.set_state) env.set_state("busy");
      return waited;
    }
  }
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

Result<ConversationEnd> RunConversation(const AgentEnv& env, const Conversation& conv,
                                        const ToolContext& tools) {
  LlmRequest req;
  req.model = conv.model;
  req.system = conv.system;
  req.tools = ToolsForRole(conv.role);
  req.max_tokens = env.config->llm.max_tokens;
  req.temperature = env.config->llm.temperature;
  req.agent_role = CanonicalRole(conv.role);
  req.feature_id = conv.feature_id;
  req.task_id = conv.task_id;
  req.cancelled = CancelledBy(env);
  req.messages.push_back(Message::User(conv.first_user));

  auto logger = log::Get("agents");
  for (int turn = 1; turn <= conv.max_turns; ++turn) {
    if (env.check) AF_RETURN_IF_ERROR(env.check());
    LlmRequest sent = req;
    AF_RETURN_IF_ERROR(FitToBudget(env, conv, sent));
    AF_ASSIGN_OR_RETURN(LlmResponse resp, CallModel(env, sent, conv.agent_id));

    Message assistant = Message::Assistant(resp.text, resp.tool_calls);
    req.messages.push_back(assistant);
    if (resp.tool_calls.empty()) {
      req.messages.push_back(
          Message::User("Use your tools to do the work; when you are done, call " +
                        std::string(TerminalTool(conv.role)) + "."));
      continue;
    }
    for (const auto& call : resp.tool_calls) {
      ToolOutcome out = Offered(req.tools, call.name) ? ExecuteTool(call, tools)
                                                      : NotOffered(conv.role, req.tools, call.name);
      if (!out.is_error && kMutatingTools.count(call.name)) fault::CrashPoint("tool " + call.name);
      EmitEvent(env.store, "tool.call", conv.feature_id, conv.task_id, conv.agent_id,
                {{"tool", call.name},
                 {"args", ArgsSummary(call)},
                 {"ok", !out.is_error},
                 {"result", out.content.substr(0, 300)}});
      logger->debug("{} {}({}) -> {}{}", conv.agent_id, call.name, ArgsSummary(call).dump(),
                    out.is_error ? "error: " : "", out.content.substr(0, 120));
      req.messages.push_back(Message::ToolResult(call.id, out.content, out.is_error));
      if (out.terminal) return ConversationEnd{call.name, call.arguments, turn};
    }
  }
  return ResourceExhausted("step limit reached: the " + conv.role + " did not finish within " +
                               std::to_string(conv.max_turns) + " turns",
                           "the task may be too large: split it, or raise limits.max_steps");
}

}  // namespace af
