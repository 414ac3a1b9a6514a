#pragma once
// The feature state machine, as a pure function of (state, what the state's
// work came to). The coordinator does the work of a state (dispatches the
// planner, the coders, the tester...), summarizes it as a StageOutcome, asks
// Decide what follows and applies that in one store transition:
//
//   queued -> planning -> implementing -> testing -> reviewing -> delivering -> completed
//                              ^             |            |
//                              +--- fix -----+------------+      (or failed / cancelled)
//
// A failing gate or a review asking for changes sends the feature back to
// implementing with one fix task, while limits.fix_attempts /
// limits.review_rounds allow; then it fails (gates_failed / review_rejected).
// Statuses are enums here; strings only where they are stored and served.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "af/store/types.h"

namespace af {

// In the order of the store's kFeatureStatuses (checked at compile time).
enum class FeatureState {
  kQueued,
  kPlanning,
  kImplementing,
  kTesting,
  kReviewing,
  kDelivering,
  kCompleted,
  kFailed,
  kCancelled,
};

// The stored name ("queued", ...) and back; nullopt for anything else.
std::string_view ToString(FeatureState state);
std::optional<FeatureState> ParseFeatureState(std::string_view name);
bool IsTerminal(FeatureState state);  // completed, failed, cancelled

// pending -> ready -> in_progress -> completed | failed | cancelled, in the
// order of the store's kTaskStatuses.
enum class TaskState { kPending, kReady, kInProgress, kCompleted, kFailed, kCancelled };

std::string_view ToString(TaskState state);
std::optional<TaskState> ParseTaskState(std::string_view name);
// The stored name as the store's calls take it.
inline std::string Name(TaskState state) { return std::string(ToString(state)); }
inline std::string Name(FeatureState state) { return std::string(ToString(state)); }
// A task's status (the store only holds known ones; anything else reads as
// failed, so it is never taken for done).
TaskState StateOf(const Task& task);

// What the work of a state came to.
struct StageOutcome {
  enum class Kind {
    kDone,              // the work succeeded; `data` goes with the transition
    kFailed,            // the work failed: reason, message, hint
    kGatesFailed,       // testing: a gate failed; `detail` says which and how
    kChangesRequested,  // reviewing: the reviewer's comments in `detail`
  };
  Kind kind = Kind::kDone;
  std::string reason, message, hint;  // kFailed
  std::string detail;                 // kGatesFailed, kChangesRequested
  nlohmann::json data = nlohmann::json::object();

  static StageOutcome Done(nlohmann::json data = nlohmann::json::object());
  static StageOutcome Failed(std::string reason, std::string message, std::string hint = {});
};

// Fix rounds a feature has had so far (its fix tasks).
struct FixesUsed {
  int test = 0;    // after failing gates
  int review = 0;  // after requested changes
};

struct Limits {
  int fix_attempts = 3;   // limits.fix_attempts
  int review_rounds = 2;  // limits.review_rounds
};

struct Decision {
  FeatureState next = FeatureState::kFailed;
  std::string reason, message, hint;               // next == kFailed
  nlohmann::json data = nlohmann::json::object();  // the transition's event data
  std::optional<Task> fix;                         // to create before moving back to implementing
};

// What follows `state` given its outcome. Never throws; an outcome that makes
// no sense for the state (say changes requested while planning) fails the
// feature with reason "agent_error" saying so.
Decision Decide(const std::string& feature_id, FeatureState state, const StageOutcome& outcome,
                const FixesUsed& used, const Limits& limits);

// Task ids are global in the store; a plan's ids are local to its feature.
std::string GlobalTaskId(const std::string& feature_id, const std::string& local);

// The fix task a failing gate or a review creates: id "<feature>-fixtest-N" or
// "<feature>-fixreview-N", a coder task carrying `detail`.
enum class FixKind { kTest, kReview };
Task FixTask(const std::string& feature_id, FixKind kind, int attempt, const std::string& detail);
// Which fix a task is, if any (from its id).
std::optional<FixKind> FixKindOf(const Task& task);

}  // namespace af
