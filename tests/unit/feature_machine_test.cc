#include "af/agents/feature_machine.h"

#include <gtest/gtest.h>

namespace af {
namespace {

using Kind = StageOutcome::Kind;
constexpr Limits kLimits{3, 2};

StageOutcome Outcome(Kind kind, std::string detail = {}) {
  StageOutcome o;
  o.kind = kind;
  o.detail = std::move(detail);
  return o;
}

TEST(FeatureMachineTest, NamesRoundTrip) {
  for (auto s : {FeatureState::kQueued, FeatureState::kPlanning, FeatureState::kImplementing,
                 FeatureState::kTesting, FeatureState::kReviewing, FeatureState::kDelivering,
                 FeatureState::kCompleted, FeatureState::kFailed, FeatureState::kCancelled}) {
    EXPECT_EQ(ParseFeatureState(ToString(s)), s) << ToString(s);
  }
  EXPECT_FALSE(ParseFeatureState("Planning").has_value());
  EXPECT_FALSE(ParseFeatureState("").has_value());
  EXPECT_TRUE(IsTerminal(FeatureState::kCancelled));
  EXPECT_FALSE(IsTerminal(FeatureState::kDelivering));
}

TEST(FeatureMachineTest, DoneMovesAlongTheHappyPath) {
  const std::pair<FeatureState, FeatureState> steps[] = {
      {FeatureState::kQueued, FeatureState::kPlanning},
      {FeatureState::kPlanning, FeatureState::kImplementing},
      {FeatureState::kImplementing, FeatureState::kTesting},
      {FeatureState::kTesting, FeatureState::kReviewing},
      {FeatureState::kReviewing, FeatureState::kDelivering},
      {FeatureState::kDelivering, FeatureState::kCompleted},
  };
  for (const auto& [from, to] : steps) {
    Decision d = Decide("f-1", from, StageOutcome::Done({{"k", 1}}), {}, kLimits);
    EXPECT_EQ(d.next, to) << ToString(from);
    EXPECT_EQ(d.data, (nlohmann::json{{"k", 1}})) << "the outcome's data goes with the transition";
    EXPECT_FALSE(d.fix.has_value());
  }
}

TEST(FeatureMachineTest, FailureEndsTheFeatureWithItsReason) {
  Decision d =
      Decide("f-1", FeatureState::kPlanning,
             StageOutcome::Failed("max_steps", "step limit reached", "raise it"), {}, kLimits);
  EXPECT_EQ(d.next, FeatureState::kFailed);
  EXPECT_EQ(d.reason, "max_steps");
  EXPECT_EQ(d.message, "step limit reached");
  EXPECT_EQ(d.hint, "raise it");
  EXPECT_EQ(
      Decide("f-1", FeatureState::kTesting, StageOutcome::Failed("", "x"), {}, kLimits).reason,
      "agent_error");
}

TEST(FeatureMachineTest, FailingGatesGoBackToACoderUntilTheAttemptsAreUsed) {
  const auto gates = Outcome(Kind::kGatesFailed, "Gate `pytest` failed (exit 1)");
  Decision d = Decide("f-1", FeatureState::kTesting, gates, {0, 0}, kLimits);
  EXPECT_EQ(d.next, FeatureState::kImplementing);
  ASSERT_TRUE(d.fix.has_value());
  EXPECT_EQ(d.fix->id, "f-1-fixtest-1");
  EXPECT_EQ(d.fix->role, "coder");
  EXPECT_EQ(d.fix->status, "pending");
  EXPECT_NE(d.fix->description.find("Gate `pytest` failed"), std::string::npos);
  EXPECT_EQ(d.data, (nlohmann::json{{"fix", "f-1-fixtest-1"}}));
  EXPECT_EQ(FixKindOf(*d.fix), FixKind::kTest);

  EXPECT_EQ(Decide("f-1", FeatureState::kTesting, gates, {2, 0}, kLimits).fix->id, "f-1-fixtest-3");
  Decision last = Decide("f-1", FeatureState::kTesting, gates, {3, 1}, kLimits);
  EXPECT_EQ(last.next, FeatureState::kFailed);
  EXPECT_EQ(last.reason, "gates_failed");
  EXPECT_NE(last.message.find("after 3 fix attempts (limits.fix_attempts)"), std::string::npos)
      << last.message;
  EXPECT_FALSE(last.fix.has_value());
}

TEST(FeatureMachineTest, RequestedChangesGoBackToACoderUntilTheRoundsAreUsed) {
  const auto changes = Outcome(Kind::kChangesRequested, "- add a test\n");
  Decision d = Decide("f-1", FeatureState::kReviewing, changes, {3, 1}, kLimits);
  EXPECT_EQ(d.next, FeatureState::kImplementing);
  ASSERT_TRUE(d.fix.has_value());
  EXPECT_EQ(d.fix->id, "f-1-fixreview-2");
  EXPECT_EQ(FixKindOf(*d.fix), FixKind::kReview);
  EXPECT_NE(d.fix->description.find("- add a test"), std::string::npos);

  Decision last = Decide("f-1", FeatureState::kReviewing, changes, {0, 2}, kLimits);
  EXPECT_EQ(last.next, FeatureState::kFailed);
  EXPECT_EQ(last.reason, "review_rejected");
  EXPECT_NE(last.message.find("- add a test"), std::string::npos);
}

TEST(FeatureMachineTest, OutcomesTheStateCannotHaveFailLoudly) {
  Decision d = Decide("f-1", FeatureState::kPlanning, Outcome(Kind::kGatesFailed), {}, kLimits);
  EXPECT_EQ(d.next, FeatureState::kFailed);
  EXPECT_EQ(d.reason, "agent_error");
  EXPECT_NE(d.message.find("planning"), std::string::npos) << d.message;
  EXPECT_EQ(
      Decide("f-1", FeatureState::kTesting, Outcome(Kind::kChangesRequested), {}, kLimits).next,
      FeatureState::kFailed);
  EXPECT_EQ(Decide("f-1", FeatureState::kCompleted, StageOutcome::Done(), {}, kLimits).next,
            FeatureState::kFailed);
}

TEST(FeatureMachineTest, TaskStatesRoundTripAndUnknownReadsAsFailed) {
  for (auto s : {TaskState::kPending, TaskState::kReady, TaskState::kInProgress,
                 TaskState::kCompleted, TaskState::kFailed, TaskState::kCancelled}) {
    EXPECT_EQ(ParseTaskState(Name(s)), s) << ToString(s);
  }
  Task t;
  t.status = "in_progress";
  EXPECT_EQ(StateOf(t), TaskState::kInProgress);
  t.status = "done";  // never stored; must not be taken for completed
  EXPECT_EQ(StateOf(t), TaskState::kFailed);
}

TEST(FeatureMachineTest, PlanTasksAreNotFixes) {
  Task t;
  t.id = "f-1-t1";
  EXPECT_FALSE(FixKindOf(t).has_value());
  EXPECT_EQ(GlobalTaskId("f-1", "t1"), "f-1-t1");
}

}  // namespace
}  // namespace af
