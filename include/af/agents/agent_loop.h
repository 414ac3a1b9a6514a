#pragma once
// One agent conversation: the tool-using loop every LLM agent runs. Each turn
// asks the model (through CallModel), executes the tool calls it makes and
// feeds the results back, until a terminal tool (finish, submit_plan,
// submit_review) is accepted.
//
// CallModel is where limits live: a call whose request was already answered
// for this feature is replayed from the store (a resumed step pays nothing);
// otherwise the step limit and budgets are checked first and the call is
// recorded with its response. A call that fails with a provider outage
// (IsProviderOutage) while the provider has a circuit breaker is tried again:
// at once while the circuit is closed (the client already retried with
// backoff, and the breaker counts the failure), and after waiting for the
// circuit to let a probe through while it is open (the agent is "degraded"
// meanwhile, and an llm.circuit event says until when). So an outage costs a
// feature time, not its result; the feature timeout and cancellation still
// end the wait.
//
// A reply the loop cannot use is not fatal: a call whose arguments are not a
// JSON object (ToolCall::arguments_error) or were cut off at the output limit
// (stop_reason "max_tokens"), a tool the role was not offered, a terminal tool
// that refuses its arguments, or a reply with no tool call is answered with a
// precise error (what was wrong, the role's tools, which tool ends the turn)
// and the model is asked again. Calls are checked against the role's tools
// before any runs. Only after limits.max_reasks such replies in a row does the
// conversation fail (kUnusableReplies).
//
// Errors carry a reason prefix the coordinator turns into the feature's
// failure reason: "step limit reached" (max_steps), "turn limit reached"
// (max_turns, one conversation's limits.max_turns), "budget exceeded"
// (budget_exceeded), "unusable model replies" (unusable_replies), Cancelled,
// DeadlineExceeded (timeout), or the provider's own error.

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "af/agents/budget.h"
#include "af/agents/tools.h"
#include "af/core/async.h"
#include "af/core/status.h"
#include "af/llm/llm_client.h"
#include "af/llm/types.h"

namespace af {

class LlmClient;
class Optimizer;
class Store;
struct Config;

// What a conversation needs from the world. Not owned.
struct AgentEnv {
  Store* store = nullptr;
  LlmClient* llm = nullptr;
  // Canonical role -> its fallback while llm's circuit is open; null or no
  // entry = the role waits for the circuit.
  const std::map<std::string, LlmFallback>* fallbacks = nullptr;
  const Config* config = nullptr;
  Optimizer* optimizer = nullptr;
  BudgetLedger* budget = nullptr;  // shared by every agent of the process
  // Ok to go on; Cancelled / DeadlineExceeded to stop (checked before each
  // call, and about every second while waiting for an open circuit). A model
  // call in flight also asks it (LlmRequest::cancelled) and is given up when
  // it says Cancelled, DeadlineExceeded or FailedPrecondition (ended).
  std::function<Status()> check;
  // Asked every ~100 ms while a model call is in flight (on the LLM client's
  // I/O thread, so it must be cheap): true gives the call up. Null = the
  // call asks WorkEnded(check()) instead.
  std::function<bool()> cancelled;
  // Reports the agent's state: "degraded" while it waits for an open circuit,
  // "busy" when it goes on. Null = not reported.
  std::function<void(const std::string& state)> set_state;
  // Where a conversation goes on after a model call: with one, a call holds
  // no thread while the provider answers (LlmClient::CompleteAsync); null =
  // the call blocks the thread running the conversation.
  Executor* executor = nullptr;
};

struct Conversation {
  std::string role;      // planner | coder | reviewer
  std::string agent_id;  // e.g. coder-2
  std::string feature_id, task_id;
  std::string model;  // empty = the provider's default
  std::string system;
  std::string first_user;
};

struct ConversationEnd {
  std::string tool;     // the accepted terminal tool
  nlohmann::json args;  // its arguments
  int turns = 0;
};

// Model call with replay, limits, waiting out an open circuit, and the
// llm.call event. CallModelTask is its coroutine (see AgentEnv::executor);
// CallModel blocks the calling thread for the call.
Async<Result<LlmResponse>> CallModelTask(const AgentEnv& env, const LlmRequest& request,
                                         const std::string& agent_id);
Result<LlmResponse> CallModel(const AgentEnv& env, const LlmRequest& request,
                              const std::string& agent_id);

// The conversation as a coroutine: it suspends at each model call (see
// AgentEnv::executor) and runs its tools on the thread that resumed it.
Async<Result<ConversationEnd>> Converse(const AgentEnv& env, const Conversation& conv,
                                        const ToolContext& tools);

// Appends an event to the store. A failure is logged, not returned: recording
// an event must never stop the work it describes.
void EmitEvent(Store* store, const std::string& type, const std::string& feature_id,
               const std::string& task_id, const std::string& agent, nlohmann::json data);

// Whether a check's status (AgentEnv::check) means the work ended: cancelled,
// failed, timed out, or the process stopping. A store error in the check does
// not: it must not drop a model call or kill a command doing its job.
bool WorkEnded(const Status& check);

// How an error that ends a feature because nothing was built begins.
inline constexpr char kNothingBuilt[] = "nothing was built";

// How an error begins when the model's replies could not be used (no tool
// call, arguments that are not JSON or were cut off at the output limit, a
// tool the role does not have, a terminal tool refusing its arguments) more
// than limits.max_reasks times in a row.
inline constexpr char kUnusableReplies[] = "unusable model replies";
// How a conversation that reached limits.max_turns fails (reason max_turns).
inline constexpr char kTurnLimit[] = "turn limit reached";

// "max_steps", "budget_exceeded", "timeout", "cancelled", "no_change",
// "unusable_replies" or "agent_error".
std::string FailureReason(const Status& status);

}  // namespace af
