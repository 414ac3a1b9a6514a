#include "af/agents/feature_machine.h"

#include <iterator>

#include "af/agents/gates.h"

namespace af {
namespace {

// The names are the store's (kFeatureStatuses, kTaskStatuses), in the enums'
// order: one list of names, checked at compile time.
static_assert(std::size(kFeatureStatuses) == static_cast<size_t>(FeatureState::kCancelled) + 1);
static_assert(kFeatureStatuses[static_cast<size_t>(FeatureState::kImplementing)] == "implementing");
static_assert(std::size(kTaskStatuses) == static_cast<size_t>(TaskState::kCancelled) + 1);
static_assert(kTaskStatuses[static_cast<size_t>(TaskState::kInProgress)] == "in_progress");

template <typename E, size_t N>
std::optional<E> Parse(const std::string_view (&names)[N], std::string_view name) {
  for (size_t i = 0; i < N; ++i)
    if (names[i] == name) return static_cast<E>(i);
  return std::nullopt;
}

constexpr std::string_view kFixTest = "-fixtest-";
constexpr std::string_view kFixReview = "-fixreview-";

Decision Fail(std::string reason, std::string message, std::string hint = {}) {
  Decision d;
  d.next = FeatureState::kFailed;
  d.reason = std::move(reason);
  d.message = std::move(message);
  d.hint = std::move(hint);
  return d;
}

Decision BackToImplementing(Task fix) {
  Decision d;
  d.next = FeatureState::kImplementing;
  d.data = {{"fix", fix.id}};
  d.fix = std::move(fix);
  return d;
}

}  // namespace

std::string_view ToString(FeatureState state) {
  return kFeatureStatuses[static_cast<size_t>(state)];
}

std::optional<FeatureState> ParseFeatureState(std::string_view name) {
  return Parse<FeatureState>(kFeatureStatuses, name);
}

std::string_view ToString(TaskState state) { return kTaskStatuses[static_cast<size_t>(state)]; }

std::optional<TaskState> ParseTaskState(std::string_view name) {
  return Parse<TaskState>(kTaskStatuses, name);
}

TaskState StateOf(const Task& task) {
  return ParseTaskState(task.status).value_or(TaskState::kFailed);
}

bool IsTerminal(FeatureState s) {
  return s == FeatureState::kCompleted || s == FeatureState::kFailed ||
         s == FeatureState::kCancelled;
}

StageOutcome StageOutcome::Done(nlohmann::json data) {
  StageOutcome o;
  o.data = std::move(data);
  return o;
}

StageOutcome StageOutcome::Failed(std::string reason, std::string message, std::string hint) {
  StageOutcome o;
  o.kind = Kind::kFailed;
  o.reason = std::move(reason);
  o.message = std::move(message);
  o.hint = std::move(hint);
  return o;
}

std::string GlobalTaskId(const std::string& feature_id, const std::string& local) {
  return feature_id + "-" + local;
}

Task FixTask(const std::string& feature_id, FixKind kind, int attempt, const std::string& detail) {
  const std::string n = std::to_string(attempt);
  Task fix;
  fix.feature_id = feature_id;
  fix.role = "coder";
  fix.status = Name(TaskState::kPending);
  if (kind == FixKind::kTest) {
    fix.id = GlobalTaskId(feature_id, "fixtest-" + n);
    fix.title = "Fix failing validation gates (attempt " + n + ")";
    fix.description =
        "The validation gates failed after the last change. Make them pass without "
        "weakening the tests.\n\n" +
        detail;
  } else {
    fix.id = GlobalTaskId(feature_id, "fixreview-" + n);
    fix.title = "Address review comments (round " + n + ")";
    fix.description = "The reviewer requested changes:\n" + detail;
  }
  return fix;
}

std::optional<FixKind> FixKindOf(const Task& task) {
  if (task.id.find(kFixTest) != std::string::npos) return FixKind::kTest;
  if (task.id.find(kFixReview) != std::string::npos) return FixKind::kReview;
  return std::nullopt;
}

Decision Decide(const std::string& feature_id, FeatureState state, const StageOutcome& outcome,
                const FixesUsed& used, const Limits& limits) {
  using Kind = StageOutcome::Kind;
  if (IsTerminal(state))
    return Fail("agent_error", "feature is already " + std::string(ToString(state)));
  switch (outcome.kind) {
    case Kind::kFailed:
      return Fail(outcome.reason.empty() ? "agent_error" : outcome.reason, outcome.message,
                  outcome.hint);
    case Kind::kDone: {
      Decision d;
      d.data = outcome.data;
      switch (state) {
        case FeatureState::kQueued:
          d.next = FeatureState::kPlanning;
          break;
        case FeatureState::kPlanning:
          d.next = FeatureState::kImplementing;
          break;
        case FeatureState::kImplementing:
          d.next = FeatureState::kTesting;
          break;
        case FeatureState::kTesting:
          d.next = FeatureState::kReviewing;
          break;
        case FeatureState::kReviewing:
          d.next = FeatureState::kDelivering;
          break;
        default:
          d.next = FeatureState::kCompleted;
          break;  // delivering
      }
      return d;
    }
    case Kind::kGatesFailed:
      if (state != FeatureState::kTesting) break;
      if (used.test >= limits.fix_attempts) {
        // Head and tail: a traceback's last line says what is wrong.
        const bool timed_out = outcome.detail.find("(sandbox.timeout_s)") != std::string::npos;
        return Fail(
            "gates_failed",
            (used.test == 0 ? std::string("validation gates fail and limits.fix_attempts "
                                          "= 0 allows no fix")
                            : "validation gates still fail after " + std::to_string(used.test) +
                                  " fix attempts (limits.fix_attempts)") +
                ": " + HeadAndTail(outcome.detail, 1200),
            timed_out ? "a gate ran out of time: raise sandbox.timeout_s if it needs "
                        "longer, or make it end on its own; then retry the feature"
                      : "read the gate's output above (all of it: the gate.result "
                        "events, or 'agent-factory feature events ID'); check that the "
                        "gate passes in a clean checkout of the branch, then raise "
                        "limits.fix_attempts or make the request's success criteria "
                        "match the gate");
      }
      return BackToImplementing(FixTask(feature_id, FixKind::kTest, used.test + 1, outcome.detail));
    case Kind::kChangesRequested:
      if (state != FeatureState::kReviewing) break;
      if (used.review >= limits.review_rounds) {
        return Fail("review_rejected",
                    (used.review == 0
                         ? std::string("the reviewer requests changes and "
                                       "limits.review_rounds = 0 allows no round "
                                       "to make them")
                         : "the reviewer still requests changes after " +
                               std::to_string(used.review) + " rounds (limits.review_rounds)") +
                        ":\n" + outcome.detail,
                    "read the reviewer's comments above; make the acceptance criteria concrete "
                    "enough to check, or raise limits.review_rounds");
      }
      return BackToImplementing(
          FixTask(feature_id, FixKind::kReview, used.review + 1, outcome.detail));
  }
  return Fail("agent_error", "internal error: an outcome the " + std::string(ToString(state)) +
                                 " stage cannot have");
}

}  // namespace af
