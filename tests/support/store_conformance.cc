#include "support/store_conformance.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/test_util.h"

namespace af::testing {

int StoreConformanceAnchor() { return 0; }

void StoreConformanceTest::SetUp() {
  auto made = GetParam().open();
  // A backend whose server is not installed on this machine (PostgreSQL)
  // skips, loudly, with the hint to install it; any other failure fails.
  if (!made.ok() && made.status().code() == Code::kUnavailable &&
      made.status().hint().find("scripts/setup") != std::string::npos) {
    GTEST_SKIP() << made.status().ToString();
  }
  ASSERT_TRUE(made.ok()) << "store factory failed: " << made.status().ToString();
  store_ = std::move(made).value();
}

// Only backend test files instantiate the suite; a binary without one is fine.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StoreConformanceTest);

namespace {

using nlohmann::json;

Feature MakeFeature(const std::string& title, const std::string& project = "default") {
  Feature f;
  f.title = title;
  f.project = project;
  f.priority = "high";
  f.request = {{"title", title}, {"requirements", {"a", "b"}}, {"tech_stack", "python3"}};
  return f;
}

Task MakeTask(const std::string& id, std::vector<std::string> deps = {}) {
  Task t;
  t.id = id;
  t.title = "title " + id;
  t.description = "description of " + id;
  t.role = "coder";
  t.dependencies = std::move(deps);
  t.files = {"src/" + id + ".py"};
  return t;
}

std::vector<Event> AllEvents(Store& store) {
  EventFilter f;
  f.limit = 10000;
  auto r = store.ListEvents(f);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<Event>{};
}

// --- Health, projects --------------------------------------------------------

TEST_P(StoreConformanceTest, CheckAndDescribe) {
  SC_ASSERT_OK(store_->Check());
  EXPECT_FALSE(store_->Describe().empty());
  EXPECT_EQ(store_->Describe().find("password"), std::string::npos);
}

TEST_P(StoreConformanceTest, FreshStoreIsMigratedAndMigrateIsANoOp) {
  SC_ASSERT_OK_AND_ASSIGN(MigrationStatus st, store_->GetMigrationStatus());
  EXPECT_GT(st.latest_version, 0);
  EXPECT_EQ(st.current_version, st.latest_version);
  EXPECT_TRUE(st.pending.empty());
  SC_ASSERT_OK_AND_ASSIGN(auto applied, store_->Migrate());
  EXPECT_TRUE(applied.empty());
  SC_ASSERT_OK_AND_ASSIGN(auto history, store_->MigrationHistory());
  ASSERT_EQ(static_cast<int>(history.size()), st.latest_version);
  for (size_t i = 0; i < history.size(); ++i) {
    EXPECT_EQ(history[i].version, static_cast<int>(i) + 1);
    EXPECT_FALSE(history[i].name.empty());
    EXPECT_GT(history[i].applied_ms, 0);
  }
}

TEST_P(StoreConformanceTest, EnsureProjectIsIdempotent) {
  SC_ASSERT_OK_AND_ASSIGN(Project a, store_->EnsureProject("alpha"));
  SC_ASSERT_OK_AND_ASSIGN(Project a2, store_->EnsureProject("alpha"));
  EXPECT_EQ(a.name, "alpha");
  EXPECT_EQ(a2.created_ms, a.created_ms);
  SC_ASSERT_OK(store_->EnsureProject("beta"));
  SC_ASSERT_OK_AND_ASSIGN(auto projects, store_->ListProjects());
  ASSERT_EQ(projects.size(), 2u);
  EXPECT_EQ(projects[0].name, "alpha");
  EXPECT_EQ(projects[1].name, "beta");
}

TEST_P(StoreConformanceTest, ProjectNamesThatCouldEscapeADirectoryAreRefused) {
  for (const std::string& bad :
       std::vector<std::string>{"", "../x", "a/b", ".hidden", "_x", "-x", std::string(65, 'a')}) {
    auto r = store_->EnsureProject(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
  SC_ASSERT_OK_AND_ASSIGN(auto projects, store_->ListProjects());
  EXPECT_TRUE(projects.empty());
}

// --- Features -------------------------------------------------------------------

TEST_P(StoreConformanceTest, CreateFeatureStoresItAndAppendsCreatedEvent) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("Add login", "web")));
  EXPECT_EQ(f.id.substr(0, 2), "f-");
  EXPECT_EQ(f.status, "queued");
  EXPECT_GT(f.created_ms, 0);
  EXPECT_EQ(f.updated_ms, f.created_ms);

  SC_ASSERT_OK_AND_ASSIGN(Feature got, store_->GetFeature(f.id));
  EXPECT_EQ(got.id, f.id);
  EXPECT_EQ(got.title, "Add login");
  EXPECT_EQ(got.project, "web");
  EXPECT_EQ(got.priority, "high");
  EXPECT_EQ(got.request, f.request);
  EXPECT_EQ(got.request["requirements"][1], "b");
  EXPECT_EQ(got.created_ms, f.created_ms);

  SC_ASSERT_OK_AND_ASSIGN(auto projects, store_->ListProjects());
  ASSERT_EQ(projects.size(), 1u);
  EXPECT_EQ(projects[0].name, "web");

  auto events = AllEvents(*store_);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "feature.created");
  EXPECT_EQ(events[0].feature_id, f.id);
  EXPECT_EQ(events[0].data["title"], "Add login");
  EXPECT_GT(events[0].seq, 0);
}

TEST_P(StoreConformanceTest, CreateFeatureKeepsAGivenIdAndRefusesDuplicatesAndBadValues) {
  Feature f = MakeFeature("x");
  f.id = "f-given";
  SC_ASSERT_OK_AND_ASSIGN(Feature made, store_->CreateFeature(f));
  EXPECT_EQ(made.id, "f-given");
  auto dup = store_->CreateFeature(f);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), Code::kAlreadyExists);

  Feature bad = MakeFeature("y");
  bad.status = "dreaming";
  EXPECT_EQ(store_->CreateFeature(bad).status().code(), Code::kInvalidArgument);
  bad = MakeFeature("y");
  bad.priority = "urgent";
  EXPECT_EQ(store_->CreateFeature(bad).status().code(), Code::kInvalidArgument);
  bad = MakeFeature("y", "../etc");
  EXPECT_EQ(store_->CreateFeature(bad).status().code(), Code::kInvalidArgument);

  // Only the first create left anything behind.
  EXPECT_EQ(AllEvents(*store_).size(), 1u);
  SC_ASSERT_OK_AND_ASSIGN(FeaturePage page, store_->ListFeatures({}));
  EXPECT_EQ(page.total, 1);
}

TEST_P(StoreConformanceTest, GetFeatureUnknownIsNotFoundNamingTheId) {
  auto r = store_->GetFeature("f-nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("f-nope"), std::string::npos);
  auto status = store_->FeatureStatus("f-nope");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.status().code(), Code::kNotFound);
  EXPECT_EQ(status.status().message(), r.status().message());
}

TEST_P(StoreConformanceTest, FeatureStatusFollowsTransitions) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("s")));
  SC_ASSERT_OK_AND_ASSIGN(std::string status, store_->FeatureStatus(f.id));
  EXPECT_EQ(status, "queued");
  SC_ASSERT_OK(store_->TransitionFeature(f.id, "queued", "cancelled", "by user", nullptr));
  SC_ASSERT_OK_AND_ASSIGN(status, store_->FeatureStatus(f.id));
  EXPECT_EQ(status, "cancelled");
}

TEST_P(StoreConformanceTest, ListFeaturesNewestFirstWithFiltersAndPagination) {
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    SC_ASSERT_OK_AND_ASSIGN(
        Feature f, store_->CreateFeature(MakeFeature("f" + std::to_string(i), i < 5 ? "a" : "b")));
    ids.push_back(f.id);
  }
  SC_ASSERT_OK(store_->TransitionFeature(ids[1], "queued", "planning", "", nullptr));
  SC_ASSERT_OK(store_->TransitionFeature(ids[6], "queued", "planning", "", nullptr));

  SC_ASSERT_OK_AND_ASSIGN(FeaturePage all, store_->ListFeatures({}));
  EXPECT_EQ(all.total, 7);
  ASSERT_EQ(all.features.size(), 7u);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(all.features[i].id, ids[6 - i]);

  FeatureFilter page2;
  page2.limit = 3;
  page2.offset = 3;
  SC_ASSERT_OK_AND_ASSIGN(FeaturePage p, store_->ListFeatures(page2));
  EXPECT_EQ(p.total, 7);
  ASSERT_EQ(p.features.size(), 3u);
  EXPECT_EQ(p.features[0].id, ids[3]);
  EXPECT_EQ(p.features[2].id, ids[1]);

  FeatureFilter past_end;
  past_end.offset = 10;
  SC_ASSERT_OK_AND_ASSIGN(FeaturePage empty, store_->ListFeatures(past_end));
  EXPECT_EQ(empty.total, 7);
  EXPECT_TRUE(empty.features.empty());

  FeatureFilter planning;
  planning.status = "planning";
  SC_ASSERT_OK_AND_ASSIGN(FeaturePage pl, store_->ListFeatures(planning));
  EXPECT_EQ(pl.total, 2);
  ASSERT_EQ(pl.features.size(), 2u);
  EXPECT_EQ(pl.features[0].id, ids[6]);
  EXPECT_EQ(pl.features[1].id, ids[1]);

  FeatureFilter both;
  both.status = "planning";
  both.project = "a";
  SC_ASSERT_OK_AND_ASSIGN(FeaturePage ab, store_->ListFeatures(both));
  EXPECT_EQ(ab.total, 1);
  ASSERT_EQ(ab.features.size(), 1u);
  EXPECT_EQ(ab.features[0].id, ids[1]);

  FeatureFilter proj_b;
  proj_b.project = "b";
  SC_ASSERT_OK_AND_ASSIGN(FeaturePage pb, store_->ListFeatures(proj_b));
  EXPECT_EQ(pb.total, 2);

  FeatureFilter bad;
  bad.limit = 0;
  EXPECT_EQ(store_->ListFeatures(bad).status().code(), Code::kInvalidArgument);
  bad = {};
  bad.status = "nonsense";
  EXPECT_EQ(store_->ListFeatures(bad).status().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformanceTest, TransitionFeatureUpdatesAndAppendsEventAtomically) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("t")));
  SC_ASSERT_OK_AND_ASSIGN(int64_t before, store_->LatestEventSeq());
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq, store_->TransitionFeature(f.id, "queued", "planning",
                                                                 "starting", {{"by", "coord"}}));
  EXPECT_GT(seq, before);
  SC_ASSERT_OK_AND_ASSIGN(Feature got, store_->GetFeature(f.id));
  EXPECT_EQ(got.status, "planning");
  EXPECT_EQ(got.reason, "starting");
  EXPECT_GE(got.updated_ms, f.updated_ms);

  auto events = AllEvents(*store_);
  ASSERT_EQ(events.size(), 2u);
  const Event& e = events.back();
  EXPECT_EQ(e.seq, seq);
  EXPECT_EQ(e.type, "feature.status");
  EXPECT_EQ(e.feature_id, f.id);
  EXPECT_EQ(e.data["from"], "queued");
  EXPECT_EQ(e.data["to"], "planning");
  EXPECT_EQ(e.data["reason"], "starting");
  EXPECT_EQ(e.data["by"], "coord");

  // Without an expected status the move is unconditional.
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq2, store_->TransitionFeature(f.id, std::nullopt, "failed",
                                                                  "budget_exceeded", nullptr));
  EXPECT_GT(seq2, seq);
  SC_ASSERT_OK_AND_ASSIGN(got, store_->GetFeature(f.id));
  EXPECT_EQ(got.status, "failed");
  EXPECT_EQ(got.reason, "budget_exceeded");
}

TEST_P(StoreConformanceTest, TransitionFeatureMismatchChangesNothing) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("t")));
  SC_ASSERT_OK_AND_ASSIGN(int64_t before, store_->LatestEventSeq());
  auto r = store_->TransitionFeature(f.id, "implementing", "testing", "x", nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("queued"), std::string::npos);
  EXPECT_NE(r.status().message().find("implementing"), std::string::npos);
  SC_ASSERT_OK_AND_ASSIGN(Feature got, store_->GetFeature(f.id));
  EXPECT_EQ(got.status, "queued");
  EXPECT_EQ(got.reason, "");
  EXPECT_EQ(got.updated_ms, f.updated_ms);
  SC_ASSERT_OK_AND_ASSIGN(int64_t after, store_->LatestEventSeq());
  EXPECT_EQ(after, before);
}

TEST_P(StoreConformanceTest, TransitionFeatureToTheSameStatusWritesNothing) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("t")));
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq,
                          store_->TransitionFeature(f.id, "queued", "queued", "r", nullptr));
  EXPECT_EQ(seq, 0);
  EXPECT_EQ(AllEvents(*store_).size(), 1u);
  SC_ASSERT_OK_AND_ASSIGN(Feature got, store_->GetFeature(f.id));
  EXPECT_EQ(got.reason, "");
}

TEST_P(StoreConformanceTest, TransitionFeatureRejectsBadInput) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("t")));
  EXPECT_EQ(
      store_->TransitionFeature("f-none", std::nullopt, "planning", "", nullptr).status().code(),
      Code::kNotFound);
  EXPECT_EQ(store_->TransitionFeature(f.id, std::nullopt, "flying", "", nullptr).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(store_->TransitionFeature(f.id, "flying", "planning", "", nullptr).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(store_->TransitionFeature(f.id, std::nullopt, "planning", "", json::array({1}))
                .status()
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(AllEvents(*store_).size(), 1u);
}

TEST_P(StoreConformanceTest, ConcurrentCompareAndSetTransitionLetsExactlyOneWin) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("race")));
  std::atomic<int> wins{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto r = store_->TransitionFeature(f.id, "queued", "planning", "", nullptr);
      if (r.ok()) {
        ++wins;
      } else if (r.status().code() == Code::kFailedPrecondition) {
        ++refused;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(refused.load(), 7);
  EXPECT_EQ(AllEvents(*store_).size(), 2u);
}

// --- Tasks ----------------------------------------------------------------------

TEST_P(StoreConformanceTest, CreateTasksStoresDagAndEvents) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("dag")));
  std::vector<Task> batch = {MakeTask("t-a"), MakeTask("t-b", {"t-a"}),
                             MakeTask("t-c", {"t-a", "t-b"}), MakeTask("")};
  SC_ASSERT_OK_AND_ASSIGN(auto made, store_->CreateTasks(f.id, batch));
  ASSERT_EQ(made.size(), 4u);
  EXPECT_EQ(made[3].id.substr(0, 2), "t-");
  EXPECT_EQ(made[0].feature_id, f.id);
  EXPECT_GT(made[0].created_ms, 0);

  SC_ASSERT_OK_AND_ASSIGN(auto listed, store_->ListTasks(f.id));
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0].id, "t-a");
  EXPECT_EQ(listed[1].id, "t-b");
  EXPECT_EQ(listed[2].id, "t-c");
  EXPECT_EQ(listed[3].id, made[3].id);
  EXPECT_TRUE(listed[0].dependencies.empty());
  EXPECT_EQ(listed[2].dependencies, (std::vector<std::string>{"t-a", "t-b"}));

  SC_ASSERT_OK_AND_ASSIGN(Task c, store_->GetTask("t-c"));
  EXPECT_EQ(c.title, "title t-c");
  EXPECT_EQ(c.description, "description of t-c");
  EXPECT_EQ(c.role, "coder");
  EXPECT_EQ(c.status, "pending");
  EXPECT_EQ(c.files, (std::vector<std::string>{"src/t-c.py"}));
  EXPECT_EQ(c.dependencies, (std::vector<std::string>{"t-a", "t-b"}));
  EXPECT_EQ(c.attempts, 0);

  auto events = AllEvents(*store_);
  ASSERT_EQ(events.size(), 5u);
  std::set<std::string> created_for;
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].type, "task.created");
    EXPECT_EQ(events[i].feature_id, f.id);
    created_for.insert(events[i].task_id);
  }
  EXPECT_EQ(created_for.size(), 4u);

  // A later batch may depend on tasks that already exist.
  SC_ASSERT_OK(store_->CreateTasks(f.id, {MakeTask("t-d", {"t-c"})}));
  SC_ASSERT_OK_AND_ASSIGN(listed, store_->ListTasks(f.id));
  ASSERT_EQ(listed.size(), 5u);
  EXPECT_EQ(listed[4].id, "t-d");
  EXPECT_EQ(listed[4].dependencies, (std::vector<std::string>{"t-c"}));
}

TEST_P(StoreConformanceTest, CreateTasksRefusesUnknownDependencyAndCyclesWritingNothing) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("dag")));
  SC_ASSERT_OK_AND_ASSIGN(Feature other, store_->CreateFeature(MakeFeature("other")));
  SC_ASSERT_OK(store_->CreateTasks(other.id, {MakeTask("t-other")}));
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq_before, store_->LatestEventSeq());

  auto unknown = store_->CreateTasks(f.id, {MakeTask("t-1"), MakeTask("t-2", {"t-ghost"})});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("t-ghost"), std::string::npos);

  // A task of another feature is not a valid dependency either.
  auto foreign = store_->CreateTasks(f.id, {MakeTask("t-1", {"t-other"})});
  EXPECT_EQ(foreign.status().code(), Code::kInvalidArgument);

  auto cycle = store_->CreateTasks(
      f.id, {MakeTask("t-1", {"t-3"}), MakeTask("t-2", {"t-1"}), MakeTask("t-3", {"t-2"})});
  ASSERT_FALSE(cycle.ok());
  EXPECT_EQ(cycle.status().code(), Code::kInvalidArgument);
  EXPECT_NE(cycle.status().message().find("cycle"), std::string::npos);

  auto self = store_->CreateTasks(f.id, {MakeTask("t-1", {"t-1"})});
  EXPECT_EQ(self.status().code(), Code::kInvalidArgument);

  auto dup = store_->CreateTasks(f.id, {MakeTask("t-1"), MakeTask("t-1")});
  EXPECT_EQ(dup.status().code(), Code::kInvalidArgument);

  Task bad_status = MakeTask("t-1");
  bad_status.status = "sleeping";
  EXPECT_EQ(store_->CreateTasks(f.id, {bad_status}).status().code(), Code::kInvalidArgument);

  EXPECT_EQ(store_->CreateTasks("f-missing", {MakeTask("t-9")}).status().code(), Code::kNotFound);

  SC_ASSERT_OK_AND_ASSIGN(auto tasks, store_->ListTasks(f.id));
  EXPECT_TRUE(tasks.empty());
  EXPECT_EQ(store_->GetTask("t-1").status().code(), Code::kNotFound);
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq_after, store_->LatestEventSeq());
  EXPECT_EQ(seq_after, seq_before);
}

TEST_P(StoreConformanceTest, TaskIdsAreGlobal) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f1, store_->CreateFeature(MakeFeature("1")));
  SC_ASSERT_OK_AND_ASSIGN(Feature f2, store_->CreateFeature(MakeFeature("2")));
  SC_ASSERT_OK(store_->CreateTasks(f1.id, {MakeTask("t-same")}));
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq_before, store_->LatestEventSeq());
  // The clash is on the second insert: the first must be rolled back with it.
  auto r = store_->CreateTasks(f2.id, {MakeTask("t-new"), MakeTask("t-same")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kAlreadyExists);
  SC_ASSERT_OK_AND_ASSIGN(auto tasks, store_->ListTasks(f2.id));
  EXPECT_TRUE(tasks.empty());
  EXPECT_EQ(store_->GetTask("t-new").status().code(), Code::kNotFound);
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq_after, store_->LatestEventSeq());
  EXPECT_EQ(seq_after, seq_before);
  SC_ASSERT_OK_AND_ASSIGN(Task same, store_->GetTask("t-same"));
  EXPECT_EQ(same.feature_id, f1.id);
}

TEST_P(StoreConformanceTest, GetTaskAndListTasksNotFound) {
  auto t = store_->GetTask("t-nope");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kNotFound);
  EXPECT_NE(t.status().message().find("t-nope"), std::string::npos);
  EXPECT_EQ(store_->ListTasks("f-nope").status().code(), Code::kNotFound);
}

TEST_P(StoreConformanceTest, TransitionTaskAppliesUpdateAndAppendsEvent) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("t")));
  SC_ASSERT_OK(store_->CreateTasks(f.id, {MakeTask("t-1")}));
  SC_ASSERT_OK(store_->TransitionTask("t-1", "pending", "ready", {}, nullptr));

  TaskUpdate start;
  start.assigned_agent = "coder-1";
  start.add_attempts = 1;
  SC_ASSERT_OK_AND_ASSIGN(
      int64_t seq, store_->TransitionTask("t-1", "ready", "in_progress", start, {{"note", "go"}}));
  SC_ASSERT_OK_AND_ASSIGN(Task t, store_->GetTask("t-1"));
  EXPECT_EQ(t.status, "in_progress");
  EXPECT_EQ(t.assigned_agent, "coder-1");
  EXPECT_EQ(t.attempts, 1);
  EXPECT_TRUE(t.result.is_null());

  auto events = AllEvents(*store_);
  const Event& e = events.back();
  EXPECT_EQ(e.seq, seq);
  EXPECT_EQ(e.type, "task.status");
  EXPECT_EQ(e.task_id, "t-1");
  EXPECT_EQ(e.feature_id, f.id);
  EXPECT_EQ(e.agent, "coder-1");
  EXPECT_EQ(e.data["from"], "ready");
  EXPECT_EQ(e.data["to"], "in_progress");
  EXPECT_EQ(e.data["note"], "go");

  TaskUpdate done;
  done.result = json{{"summary", "ok"}, {"files", {"a.py"}}};
  done.add_attempts = 1;
  SC_ASSERT_OK(store_->TransitionTask("t-1", "in_progress", "completed", done, nullptr));
  SC_ASSERT_OK_AND_ASSIGN(t, store_->GetTask("t-1"));
  EXPECT_EQ(t.status, "completed");
  EXPECT_EQ(t.attempts, 2);
  EXPECT_EQ(t.result["summary"], "ok");
  EXPECT_EQ(t.assigned_agent, "coder-1");  // untouched when not in the update
}

TEST_P(StoreConformanceTest, TransitionTaskMismatchChangesNothing) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("t")));
  SC_ASSERT_OK(store_->CreateTasks(f.id, {MakeTask("t-1")}));
  SC_ASSERT_OK_AND_ASSIGN(int64_t before, store_->LatestEventSeq());
  TaskUpdate u;
  u.assigned_agent = "coder-9";
  u.add_attempts = 3;
  auto r = store_->TransitionTask("t-1", "in_progress", "completed", u, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("pending"), std::string::npos);
  EXPECT_NE(r.status().message().find("in_progress"), std::string::npos);
  SC_ASSERT_OK_AND_ASSIGN(Task t, store_->GetTask("t-1"));
  EXPECT_EQ(t.status, "pending");
  EXPECT_EQ(t.attempts, 0);
  EXPECT_EQ(t.assigned_agent, "");
  SC_ASSERT_OK_AND_ASSIGN(int64_t after, store_->LatestEventSeq());
  EXPECT_EQ(after, before);

  EXPECT_EQ(store_->TransitionTask("t-none", std::nullopt, "ready", {}, nullptr).status().code(),
            Code::kNotFound);
  EXPECT_EQ(store_->TransitionTask("t-1", std::nullopt, "weird", {}, nullptr).status().code(),
            Code::kInvalidArgument);
}

TEST_P(StoreConformanceTest, TransitionTaskSameStatusAppliesUpdateWithoutEvent) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("t")));
  SC_ASSERT_OK(store_->CreateTasks(f.id, {MakeTask("t-1")}));
  SC_ASSERT_OK_AND_ASSIGN(int64_t before, store_->LatestEventSeq());
  TaskUpdate u;
  u.add_attempts = 1;
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq,
                          store_->TransitionTask("t-1", "pending", "pending", u, nullptr));
  EXPECT_EQ(seq, 0);
  SC_ASSERT_OK_AND_ASSIGN(Task t, store_->GetTask("t-1"));
  EXPECT_EQ(t.attempts, 1);
  SC_ASSERT_OK_AND_ASSIGN(int64_t after, store_->LatestEventSeq());
  EXPECT_EQ(after, before);
}

// --- Events ---------------------------------------------------------------------

TEST_P(StoreConformanceTest, EventsAreStrictlyIncreasingAndResumableWithoutGapOrDuplicate) {
  SC_ASSERT_OK_AND_ASSIGN(int64_t empty_latest, store_->LatestEventSeq());
  EXPECT_EQ(empty_latest, 0);
  std::vector<int64_t> seqs;
  for (int i = 0; i < 25; ++i) {
    Event e;
    e.type = "tool.call";
    e.feature_id = i % 2 ? "f-odd" : "f-even";
    e.agent = "coder-1";
    e.data = {{"i", i}};
    SC_ASSERT_OK_AND_ASSIGN(int64_t seq, store_->AppendEvent(e));
    if (!seqs.empty()) EXPECT_GT(seq, seqs.back());
    seqs.push_back(seq);
  }
  SC_ASSERT_OK_AND_ASSIGN(int64_t latest, store_->LatestEventSeq());
  EXPECT_EQ(latest, seqs.back());

  // Page through 7 at a time, resuming from the last seq seen.
  std::vector<int64_t> seen;
  EventFilter f;
  f.limit = 7;
  for (;;) {
    SC_ASSERT_OK_AND_ASSIGN(auto page, store_->ListEvents(f));
    if (page.empty()) break;
    for (const Event& e : page) seen.push_back(e.seq);
    f.after_seq = page.back().seq;
  }
  EXPECT_EQ(seen, seqs);

  EventFilter odd;
  odd.feature_id = "f-odd";
  SC_ASSERT_OK_AND_ASSIGN(auto odd_events, store_->ListEvents(odd));
  ASSERT_EQ(odd_events.size(), 12u);
  for (const Event& e : odd_events) {
    EXPECT_EQ(e.feature_id, "f-odd");
    EXPECT_EQ(e.data["i"].get<int>() % 2, 1);
    EXPECT_EQ(e.agent, "coder-1");
    EXPECT_GT(e.ts_ms, 0);
  }
  odd.after_seq = odd_events[5].seq;
  SC_ASSERT_OK_AND_ASSIGN(auto odd_rest, store_->ListEvents(odd));
  ASSERT_EQ(odd_rest.size(), 6u);
  EXPECT_EQ(odd_rest[0].seq, odd_events[6].seq);
}

TEST_P(StoreConformanceTest, AppendEventKeepsGivenTimeAndRefusesEmptyType) {
  Event e;
  e.type = "agent.heartbeat";
  e.agent = "planner-1";
  e.ts_ms = 1700000000123;
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq, store_->AppendEvent(e));
  auto all = AllEvents(*store_);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].seq, seq);
  EXPECT_EQ(all[0].ts_ms, 1700000000123);
  json j = all[0].ToJson();
  EXPECT_EQ(j["ts"], "2023-11-14T22:13:20.123Z");
  EXPECT_TRUE(j["feature_id"].is_null());
  EXPECT_EQ(j["agent"], "planner-1");

  Event bad;
  EXPECT_EQ(store_->AppendEvent(bad).status().code(), Code::kInvalidArgument);
  EventFilter f;
  f.limit = 0;
  EXPECT_EQ(store_->ListEvents(f).status().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformanceTest, ConcurrentWritersGetDistinctIncreasingSeqs) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<std::vector<int64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Event e;
        e.type = "test.concurrent";
        e.agent = "w" + std::to_string(t);
        e.data = {{"i", i}};
        auto r = store_->AppendEvent(e);
        if (r.ok()) got[t].push_back(*r);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<int64_t> all;
  for (const auto& v : got) {
    ASSERT_EQ(v.size(), static_cast<size_t>(kPerThread));
    for (size_t i = 1; i < v.size(); ++i) EXPECT_LT(v[i - 1], v[i]);
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));

  auto listed = AllEvents(*store_);
  ASSERT_EQ(listed.size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 1; i < listed.size(); ++i) ASSERT_LT(listed[i - 1].seq, listed[i].seq);
  std::vector<int> next(kThreads, 0);
  for (const Event& e : listed) {
    int w = std::stoi(e.agent.substr(1));
    EXPECT_EQ(e.data["i"].get<int>(), next[w]++) << "per-writer order kept";
  }
}

// --- Agents ---------------------------------------------------------------------

TEST_P(StoreConformanceTest, AgentsUpsertGetList) {
  AgentRecord a;
  a.id = "coder-1";
  a.role = "coder";
  a.state = "idle";
  a.last_heartbeat_ms = 1000;
  a.host = "box";
  a.pid = 42;
  a.counters = {{"tasks", 0}};
  SC_ASSERT_OK(store_->UpsertAgent(a));
  AgentRecord b = a;
  b.id = "alpha-0";
  b.role = "planner";
  SC_ASSERT_OK(store_->UpsertAgent(b));

  a.state = "busy";
  a.current_task = "t-1";
  a.last_heartbeat_ms = 2000;
  a.counters = {{"tasks", 3}};
  SC_ASSERT_OK(store_->UpsertAgent(a));

  SC_ASSERT_OK_AND_ASSIGN(AgentRecord got, store_->GetAgent("coder-1"));
  EXPECT_EQ(got.state, "busy");
  EXPECT_EQ(got.current_task, "t-1");
  EXPECT_EQ(got.last_heartbeat_ms, 2000);
  EXPECT_EQ(got.counters["tasks"], 3);
  EXPECT_EQ(got.host, "box");
  EXPECT_EQ(got.pid, 42);

  SC_ASSERT_OK_AND_ASSIGN(auto all, store_->ListAgents());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "alpha-0");
  EXPECT_EQ(all[1].id, "coder-1");

  auto missing = store_->GetAgent("ghost");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("ghost"), std::string::npos);
  AgentRecord bad = a;
  bad.state = "napping";
  EXPECT_EQ(store_->UpsertAgent(bad).code(), Code::kInvalidArgument);
  bad = a;
  bad.id = "";
  EXPECT_EQ(store_->UpsertAgent(bad).code(), Code::kInvalidArgument);
}

// A coder at work on t-1, last seen at 1000 ms, on host "box" as pid 42.
AgentRecord BusyCoder(const std::string& id) {
  AgentRecord a;
  a.id = id;
  a.role = "coder";
  a.state = "busy";
  a.current_task = "t-1";
  a.last_heartbeat_ms = 1000;
  a.host = "box";
  a.pid = 42;
  return a;
}

// An agent's state change and its event are written together; bad input
// (a bad record, an event without a type) writes neither.
TEST_P(StoreConformanceTest, UpsertAgentWithEventWritesBothOrNeither) {
  AgentRecord a = BusyCoder("coder-1");
  Event e;
  e.type = "agent.heartbeat";
  e.agent = a.id;
  e.data = {{"state", "busy"}};
  SC_ASSERT_OK_AND_ASSIGN(int64_t before, store_->LatestEventSeq());
  SC_ASSERT_OK_AND_ASSIGN(int64_t seq, store_->UpsertAgentWithEvent(a, e));
  EXPECT_GT(seq, before);
  SC_ASSERT_OK_AND_ASSIGN(AgentRecord got, store_->GetAgent("coder-1"));
  EXPECT_EQ(got.state, "busy");
  EXPECT_EQ(got.current_task, "t-1");
  SC_ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents({before, std::nullopt, 10}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq, seq);
  EXPECT_EQ(events[0].type, "agent.heartbeat");
  EXPECT_EQ(events[0].agent, "coder-1");
  EXPECT_EQ(events[0].data["state"], "busy");

  AgentRecord bad = a;
  bad.state = "napping";
  EXPECT_EQ(store_->UpsertAgentWithEvent(bad, e).status().code(), Code::kInvalidArgument);
  AgentRecord idle = a;
  idle.state = "idle";
  idle.current_task = "";
  Event untyped = e;
  untyped.type = "";
  EXPECT_FALSE(store_->UpsertAgentWithEvent(idle, untyped).ok());
  SC_ASSERT_OK_AND_ASSIGN(got, store_->GetAgent("coder-1"));
  EXPECT_EQ(got.state, "busy");
  SC_ASSERT_OK_AND_ASSIGN(int64_t after, store_->LatestEventSeq());
  EXPECT_EQ(after, seq);
}

// The lost-agent sweep's compare-and-set: it changes a record only while the
// record is not offline and still carries the heartbeat the sweeper saw.
TEST_P(StoreConformanceTest, MarkAgentOfflineIsACompareAndSet) {
  AgentRecord a = BusyCoder("coder-box-42-1");
  SC_ASSERT_OK(store_->UpsertAgent(a));

  // A beat the sweeper did not see: nothing changes.
  SC_ASSERT_OK_AND_ASSIGN(bool changed, store_->MarkAgentOffline(a.id, 999));
  EXPECT_FALSE(changed);
  SC_ASSERT_OK_AND_ASSIGN(AgentRecord got, store_->GetAgent(a.id));
  EXPECT_EQ(got.state, "busy");

  SC_ASSERT_OK_AND_ASSIGN(changed, store_->MarkAgentOffline(a.id, 1000));
  EXPECT_TRUE(changed);
  SC_ASSERT_OK_AND_ASSIGN(got, store_->GetAgent(a.id));
  EXPECT_EQ(got.state, "offline");
  EXPECT_EQ(got.current_task, "");
  EXPECT_EQ(got.last_heartbeat_ms, 1000);  // the last beat stays what it was
  EXPECT_EQ(got.host, "box");
  EXPECT_EQ(got.pid, 42);

  // Once only: a second sweeper (or a restarted one) changes nothing.
  SC_ASSERT_OK_AND_ASSIGN(changed, store_->MarkAgentOffline(a.id, 1000));
  EXPECT_FALSE(changed);

  EXPECT_EQ(store_->MarkAgentOffline("ghost", 1000).status().code(), Code::kNotFound);
}

// Forgetting a process gone for good: only an offline record that did not
// beat since the sweeper looked is deleted, once.
TEST_P(StoreConformanceTest, DeleteOfflineAgentIsACompareAndDelete) {
  AgentRecord a;
  a.id = "coder-box-43-1";
  a.role = "coder";
  a.state = "busy";
  a.last_heartbeat_ms = 1000;
  a.host = "box";
  a.pid = 43;
  SC_ASSERT_OK(store_->UpsertAgent(a));
  SC_ASSERT_OK_AND_ASSIGN(bool deleted, store_->DeleteOfflineAgent(a.id, 1000));
  EXPECT_FALSE(deleted) << "a record not offline stays";
  SC_ASSERT_OK_AND_ASSIGN(bool changed, store_->MarkAgentOffline(a.id, 1000));
  ASSERT_TRUE(changed);
  SC_ASSERT_OK_AND_ASSIGN(deleted, store_->DeleteOfflineAgent(a.id, 999));
  EXPECT_FALSE(deleted) << "a beat the sweeper did not see";
  SC_ASSERT_OK(store_->GetAgent(a.id).status());

  SC_ASSERT_OK_AND_ASSIGN(deleted, store_->DeleteOfflineAgent(a.id, 1000));
  EXPECT_TRUE(deleted);
  EXPECT_EQ(store_->GetAgent(a.id).status().code(), Code::kNotFound);
  SC_ASSERT_OK_AND_ASSIGN(deleted, store_->DeleteOfflineAgent(a.id, 1000));
  EXPECT_FALSE(deleted) << "once only";
  SC_ASSERT_OK_AND_ASSIGN(deleted, store_->DeleteOfflineAgent("ghost", 1000));
  EXPECT_FALSE(deleted);
}

// --- LLM calls ------------------------------------------------------------------

LlmCall MakeCall(const std::string& feature, int64_t in, int64_t out, double cost, int64_t at,
                 const std::string& hash, const std::string& status = "ok") {
  LlmCall c;
  c.feature_id = feature;
  c.task_id = "t-1";
  c.role = "coder";
  c.provider = "replay";
  c.model = "m";
  c.input_tokens = in;
  c.output_tokens = out;
  c.cost_usd = cost;
  c.latency_ms = 12;
  c.status = status;
  c.request_hash = hash;
  c.response = {{"content", "answer for " + hash}};
  c.created_ms = at;
  return c;
}

TEST_P(StoreConformanceTest, LlmCallsRecordFindListAndSum) {
  SC_ASSERT_OK_AND_ASSIGN(LlmCall c1,
                          store_->RecordLlmCall(MakeCall("f-1", 100, 10, 0.5, 1000, "h1")));
  EXPECT_FALSE(c1.id.empty());
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-1", 200, 20, 0.25, 2000, "h2", "rate_limited")));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-1", 300, 30, 1.0, 3000, "h3")));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-2", 1, 1, 2.0, 4000, "h4")));

  SC_ASSERT_OK_AND_ASSIGN(auto found, store_->FindRecordedLlmCall("f-1", "h1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, c1.id);
  EXPECT_EQ(found->response["content"], "answer for h1");
  EXPECT_EQ(found->input_tokens, 100);
  EXPECT_EQ(found->latency_ms, 12);
  // A failed call is not a result to replay.
  SC_ASSERT_OK_AND_ASSIGN(auto failed, store_->FindRecordedLlmCall("f-1", "h2"));
  EXPECT_FALSE(failed.has_value());
  SC_ASSERT_OK_AND_ASSIGN(auto none, store_->FindRecordedLlmCall("f-1", "zzz"));
  EXPECT_FALSE(none.has_value());
  // Another feature's identical request is not replayed.
  SC_ASSERT_OK_AND_ASSIGN(auto other, store_->FindRecordedLlmCall("f-2", "h1"));
  EXPECT_FALSE(other.has_value());

  SC_ASSERT_OK_AND_ASSIGN(auto calls, store_->ListLlmCalls("f-1"));
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].request_hash, "h1");
  EXPECT_EQ(calls[1].status, "rate_limited");
  EXPECT_EQ(calls[2].request_hash, "h3");

  SC_ASSERT_OK_AND_ASSIGN(UsageTotals u, store_->FeatureUsage("f-1"));
  EXPECT_EQ(u.calls, 3);
  EXPECT_EQ(u.input_tokens, 600);
  EXPECT_EQ(u.output_tokens, 60);
  EXPECT_DOUBLE_EQ(u.cost_usd, 1.75);
  SC_ASSERT_OK_AND_ASSIGN(UsageTotals zero, store_->FeatureUsage("f-none"));
  EXPECT_EQ(zero.calls, 0);
  EXPECT_DOUBLE_EQ(zero.cost_usd, 0.0);

  SC_ASSERT_OK_AND_ASSIGN(double since, store_->CostSince(2000));
  EXPECT_DOUBLE_EQ(since, 3.25);
  SC_ASSERT_OK_AND_ASSIGN(double all, store_->CostSince(0));
  EXPECT_DOUBLE_EQ(all, 3.75);
  SC_ASSERT_OK_AND_ASSIGN(double later, store_->CostSince(5000));
  EXPECT_DOUBLE_EQ(later, 0.0);
}

TEST_P(StoreConformanceTest, UsageBreakdownSumsPerDayRoleAndModel) {
  const int64_t day1 = 1'764'374'400'000;  // 2025-11-29T00:00:00Z
  const int64_t day2 = day1 + 86'400'000;
  LlmCall planner = MakeCall("f-1", 10, 1, 0.5, day1 + 5, "a");
  planner.role = "planner";
  SC_ASSERT_OK(store_->RecordLlmCall(planner));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-1", 20, 2, 0.25, day1 + 6, "b")));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-1", 30, 3, 1.0, day2 + 1, "c", "unavailable")));
  LlmCall other_model = MakeCall("f-1", 40, 4, 2.0, day2 + 2, "d");
  other_model.model = "fallback-m";
  SC_ASSERT_OK(store_->RecordLlmCall(other_model));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-2", 50, 5, 4.0, day2 + 3, "e")));

  SC_ASSERT_OK_AND_ASSIGN(auto all, store_->UsageBreakdown({}));
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].day, "2025-11-29");
  EXPECT_EQ(all[0].role, "coder");
  EXPECT_EQ(all[0].totals.calls, 1);
  EXPECT_EQ(all[1].role, "planner");
  EXPECT_DOUBLE_EQ(all[1].totals.cost_usd, 0.5);
  EXPECT_EQ(all[2].day, "2025-11-30");
  EXPECT_EQ(all[2].model, "fallback-m");
  EXPECT_EQ(all[3].model, "m");
  EXPECT_EQ(all[3].totals.calls, 2);  // the failed call counts: it was paid for
  EXPECT_EQ(all[3].totals.input_tokens, 80);
  EXPECT_DOUBLE_EQ(all[3].totals.cost_usd, 5.0);

  SC_ASSERT_OK_AND_ASSIGN(auto one, store_->UsageBreakdown({"f-1", day2}));
  ASSERT_EQ(one.size(), 2u);
  EXPECT_DOUBLE_EQ(one[0].totals.cost_usd + one[1].totals.cost_usd, 3.0);
  SC_ASSERT_OK_AND_ASSIGN(auto none, store_->UsageBreakdown({"f-none", 0}));
  EXPECT_TRUE(none.empty());
}

TEST_P(StoreConformanceTest, StatsGroupFeaturesTasksAndLlmUsage) {
  SC_ASSERT_OK_AND_ASSIGN(StoreStats empty, store_->Stats());
  EXPECT_TRUE(empty.features_by_status.empty());
  EXPECT_TRUE(empty.tasks_by_role_status.empty());
  EXPECT_TRUE(empty.llm_usage.empty());

  SC_ASSERT_OK_AND_ASSIGN(Feature a, store_->CreateFeature(MakeFeature("a")));
  SC_ASSERT_OK(store_->CreateFeature(MakeFeature("b")));
  SC_ASSERT_OK(store_->TransitionFeature(a.id, std::nullopt, "planning", "", nullptr));
  Task reviewer = MakeTask("t-r");
  reviewer.role = "reviewer";
  SC_ASSERT_OK(store_->CreateTasks(a.id, {MakeTask("t-1"), MakeTask("t-2"), reviewer}));
  SC_ASSERT_OK(store_->TransitionTask("t-2", std::nullopt, "ready", {}, nullptr));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-1", 100, 10, 0.5, 1000, "h1")));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-1", 200, 20, 0.25, 2000, "h2")));
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-2", 1, 1, 2.0, 3000, "h3", "rate_limited")));

  SC_ASSERT_OK_AND_ASSIGN(StoreStats stats, store_->Stats());
  ASSERT_EQ(stats.features_by_status.size(), 2u);
  EXPECT_EQ(stats.features_by_status[0].key, "planning");
  EXPECT_EQ(stats.features_by_status[0].count, 1);
  EXPECT_EQ(stats.features_by_status[1].key, "queued");
  EXPECT_EQ(stats.features_by_status[1].count, 1);
  ASSERT_EQ(stats.tasks_by_role_status.size(), 3u);
  EXPECT_EQ(stats.tasks_by_role_status[0].key, "coder/pending");
  EXPECT_EQ(stats.tasks_by_role_status[0].count, 1);
  EXPECT_EQ(stats.tasks_by_role_status[1].key, "coder/ready");
  EXPECT_EQ(stats.tasks_by_role_status[2].key, "reviewer/pending");
  ASSERT_EQ(stats.llm_usage.size(), 2u);
  EXPECT_EQ(stats.llm_usage[0].provider, "replay");
  EXPECT_EQ(stats.llm_usage[0].model, "m");
  EXPECT_EQ(stats.llm_usage[0].status, "ok");
  EXPECT_EQ(stats.llm_usage[0].calls, 2);
  EXPECT_EQ(stats.llm_usage[0].input_tokens, 300);
  EXPECT_EQ(stats.llm_usage[0].output_tokens, 30);
  EXPECT_DOUBLE_EQ(stats.llm_usage[0].cost_usd, 0.75);
  EXPECT_EQ(stats.llm_usage[1].status, "rate_limited");
  EXPECT_EQ(stats.llm_usage[1].calls, 1);
}

TEST_P(StoreConformanceTest, FindLlmCallReturnsTheNewestSuccessfulRecording) {
  SC_ASSERT_OK(store_->RecordLlmCall(MakeCall("f-1", 1, 1, 0, 1000, "same")));
  LlmCall newer = MakeCall("f-1", 2, 2, 0, 2000, "same");
  newer.response = {{"content", "newer"}};
  SC_ASSERT_OK(store_->RecordLlmCall(newer));
  SC_ASSERT_OK_AND_ASSIGN(auto found, store_->FindRecordedLlmCall("f-1", "same"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->response["content"], "newer");
}

// --- Memories -------------------------------------------------------------------

TEST_P(StoreConformanceTest, MemoriesAreValidatedStoredAndFoundWithNamespaceFallback) {
  Memory m;
  m.ns = "project:demo";
  m.content = "Use python3 -m unittest for the textkit package";
  m.type = "code_pattern";
  m.importance = 7;
  m.tags = {"python", "testing"};
  m.source = {{"feature", "f-1"}};
  SC_ASSERT_OK_AND_ASSIGN(Memory stored, store_->AddMemory(m));
  EXPECT_FALSE(stored.id.empty());
  Memory g;
  g.content = "Gates run in a sandbox without network";
  g.type = "constraint";
  g.importance = 9;
  SC_ASSERT_OK(store_->AddMemory(g));

  SC_ASSERT_OK_AND_ASSIGN(auto found,
                          store_->FindMemories({"project:demo", "global"}, "UNITTEST python3", 5));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].id, stored.id);
  EXPECT_EQ(found[0].tags, (std::vector<std::string>{"python", "testing"}));
  EXPECT_EQ(found[0].source["feature"], "f-1");
  EXPECT_EQ(found[0].access_count, 1);
  // Empty query: everything, the project's namespace first, then global.
  SC_ASSERT_OK_AND_ASSIGN(auto all, store_->FindMemories({"project:demo", "global"}, "", 5));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].ns, "project:demo");
  EXPECT_EQ(all[1].ns, "global");
  SC_ASSERT_OK_AND_ASSIGN(auto limited, store_->FindMemories({"project:demo", "global"}, "", 1));
  EXPECT_EQ(limited.size(), 1u);
  SC_ASSERT_OK_AND_ASSIGN(auto other, store_->FindMemories({"project:other"}, "", 5));
  EXPECT_TRUE(other.empty());

  Memory bad = m;
  bad.type = "gossip";
  EXPECT_EQ(store_->AddMemory(bad).status().code(), Code::kInvalidArgument);
  bad = m;
  bad.importance = 11;
  EXPECT_EQ(store_->AddMemory(bad).status().code(), Code::kInvalidArgument);
  bad = m;
  bad.content.clear();
  EXPECT_EQ(store_->AddMemory(bad).status().code(), Code::kInvalidArgument);
  // Memories go into agents' contexts: a long text is refused, saying where it goes.
  bad = m;
  bad.content = std::string(kMaxMemoryContentBytes + 1, 'x');
  Status too_long = store_->AddMemory(bad).status();
  EXPECT_EQ(too_long.code(), Code::kInvalidArgument);
  EXPECT_NE(too_long.message().find("-byte limit"), std::string::npos) << too_long.ToString();
  EXPECT_NE(too_long.hint().find("knowledge base"), std::string::npos) << too_long.ToString();
  bad.content.pop_back();  // at the limit: accepted
  bad.id.clear();
  EXPECT_TRUE(store_->AddMemory(bad).ok());
}

// --- Knowledge: memory labels, links, documents, full text -------------------

Memory MakeMemory(const std::string& content, const std::string& ns = "global",
                  int importance = 5) {
  Memory m;
  m.ns = ns;
  m.content = content;
  m.importance = importance;
  return m;
}

KbChunk MakeChunk(const std::string& heading, const std::string& content, int line = 1) {
  KbChunk c;
  c.heading = heading;
  c.content = content;
  c.line_start = line;
  c.line_end = line + 2;
  return c;
}

KbDocument MakeDocument(const std::string& source, const std::string& ns = "global") {
  KbDocument d;
  d.ns = ns;
  d.source = source;
  d.content_hash = "hash-of-" + source;
  d.provenance = {{"feature", "f-1"}};
  return d;
}

std::vector<int64_t> LabelsOf(const std::vector<TextHit>& hits) {
  std::vector<int64_t> out;
  for (const auto& h : hits) out.push_back(h.label);
  return out;
}

TEST_P(StoreConformanceTest, AddMemoryGivesFreshLabelsAndRefusesATakenId) {
  SC_ASSERT_OK_AND_ASSIGN(Memory a, store_->AddMemory(MakeMemory("first")));
  SC_ASSERT_OK_AND_ASSIGN(Memory b, store_->AddMemory(MakeMemory("second")));
  EXPECT_GT(a.vector_label, 0);
  EXPECT_GT(b.vector_label, a.vector_label);
  EXPECT_TRUE(a.superseded_by.empty());

  Memory dup = MakeMemory("other text");
  dup.id = a.id;
  dup.vector_label = 12345;  // ignored: the store assigns labels
  auto r = store_->AddMemory(dup);
  EXPECT_EQ(r.status().code(), Code::kAlreadyExists) << r.status().ToString();
  SC_ASSERT_OK_AND_ASSIGN(Memory got, store_->GetMemory(a.id));
  EXPECT_EQ(got.content, "first");
  EXPECT_EQ(got.vector_label, a.vector_label);

  auto missing = store_->GetMemory("mem-nope");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("mem-nope"), std::string::npos);

  // Labels are never reused, even after the newest memory is deleted.
  SC_ASSERT_OK(store_->DeleteMemory(b.id));
  SC_ASSERT_OK_AND_ASSIGN(Memory c, store_->AddMemory(MakeMemory("third")));
  EXPECT_GT(c.vector_label, b.vector_label);
  EXPECT_EQ(store_->DeleteMemory(b.id).code(), Code::kNotFound);
}

TEST_P(StoreConformanceTest, UpdateMemoryGivesANewLabelExactlyWhenTheEmbeddedTextChanges) {
  Memory m = MakeMemory("cache the parsed config", "project:demo", 4);
  m.summary = "config cache";
  m.tags = {"perf"};
  SC_ASSERT_OK_AND_ASSIGN(Memory stored, store_->AddMemory(m));
  SC_ASSERT_OK_AND_ASSIGN(Memory other, store_->AddMemory(MakeMemory("unrelated")));

  Memory edit = stored;
  edit.importance = 9;
  edit.type = "code_pattern";
  edit.source = {{"task", "t-9"}};
  SC_ASSERT_OK_AND_ASSIGN(Memory same, store_->UpdateMemory(edit));
  EXPECT_EQ(same.vector_label, stored.vector_label);
  EXPECT_EQ(same.importance, 9);
  EXPECT_EQ(same.ns, "project:demo");

  int64_t last = std::max(stored.vector_label, other.vector_label);
  for (auto change : std::vector<std::function<void(Memory&)>>{
           [](Memory& x) { x.content = "cache the parsed config per run"; },
           [](Memory& x) { x.summary = "a new summary"; },
           [](Memory& x) {
             x.tags = {"perf", "config"};
           }}) {
    change(edit);
    SC_ASSERT_OK_AND_ASSIGN(Memory changed, store_->UpdateMemory(edit));
    EXPECT_GT(changed.vector_label, last);
    last = changed.vector_label;
  }
  SC_ASSERT_OK_AND_ASSIGN(Memory now, store_->GetMemory(stored.id));
  EXPECT_EQ(now.vector_label, last);
  EXPECT_EQ(now.tags, (std::vector<std::string>{"perf", "config"}));
  EXPECT_EQ(now.source["task"], "t-9");

  // By label: in the order asked, unknown and replaced labels skipped.
  SC_ASSERT_OK_AND_ASSIGN(auto by_label, store_->MemoriesByLabel({last, 999999, stored.vector_label,
                                                                  other.vector_label}));
  ASSERT_EQ(by_label.size(), 2u);
  EXPECT_EQ(by_label[0].id, stored.id);
  EXPECT_EQ(by_label[1].id, other.id);
  // Heads: the same rows, with everything a search filters and ranks by.
  SC_ASSERT_OK_AND_ASSIGN(auto heads, store_->MemoryHeadsByLabel(
                                          {last, 999999, stored.vector_label, other.vector_label}));
  ASSERT_EQ(heads.size(), 2u);
  for (size_t i = 0; i < heads.size(); ++i) {
    const Memory& whole = by_label[i];
    EXPECT_EQ(heads[i].id, whole.id);
    EXPECT_EQ(heads[i].ns, whole.ns);
    EXPECT_EQ(heads[i].type, whole.type);
    EXPECT_EQ(heads[i].importance, whole.importance);
    EXPECT_EQ(heads[i].tags, whole.tags);
    EXPECT_EQ(heads[i].created_ms, whole.created_ms);
    EXPECT_EQ(heads[i].updated_ms, whole.updated_ms);
    EXPECT_EQ(heads[i].accessed_ms, whole.accessed_ms);
    EXPECT_EQ(heads[i].access_count, whole.access_count);
    EXPECT_EQ(heads[i].archived, whole.archived);
    EXPECT_EQ(heads[i].superseded_by, whole.superseded_by);
    EXPECT_EQ(heads[i].vector_label, whole.vector_label);
  }
  EXPECT_EQ(heads[0].tags, (std::vector<std::string>{"perf", "config"}));

  Memory bad = now;
  bad.importance = 0;
  EXPECT_EQ(store_->UpdateMemory(bad).status().code(), Code::kInvalidArgument);
  bad = now;
  bad.id = "mem-nope";
  EXPECT_EQ(store_->UpdateMemory(bad).status().code(), Code::kNotFound);
}

TEST_P(StoreConformanceTest, ListMemoriesFiltersByNamespaceTypeEveryTagAndArchive) {
  Memory a = MakeMemory("alpha", "project:demo", 9);
  a.type = "bug_fix";
  a.tags = {"python", "parser"};
  Memory b = MakeMemory("beta", "project:demo", 5);
  b.tags = {"python"};
  Memory c = MakeMemory("gamma", "global", 7);
  c.tags = {"python", "parser"};
  Memory d = MakeMemory("delta", "global", 10);
  d.archived = true;
  SC_ASSERT_OK_AND_ASSIGN(a, store_->AddMemory(a));
  SC_ASSERT_OK_AND_ASSIGN(b, store_->AddMemory(b));
  SC_ASSERT_OK_AND_ASSIGN(c, store_->AddMemory(c));
  SC_ASSERT_OK_AND_ASSIGN(d, store_->AddMemory(d));
  Memory old_b = b;
  old_b.superseded_by = a.id;
  SC_ASSERT_OK(store_->UpdateMemory(old_b));

  auto ids = [](const std::vector<Memory>& ms) {
    std::vector<std::string> out;
    for (const auto& m : ms) out.push_back(m.content);
    return out;
  };
  MemoryFilter f;
  SC_ASSERT_OK_AND_ASSIGN(auto all, store_->ListMemories(f));
  EXPECT_EQ(ids(all), (std::vector<std::string>{"alpha", "gamma"}));  // most important first
  f.include_archived = true;
  SC_ASSERT_OK_AND_ASSIGN(auto with_archived, store_->ListMemories(f));
  EXPECT_EQ(ids(with_archived), (std::vector<std::string>{"delta", "alpha", "gamma", "beta"}));
  f.namespaces = {"project:demo"};
  SC_ASSERT_OK_AND_ASSIGN(auto demo, store_->ListMemories(f));
  EXPECT_EQ(ids(demo), (std::vector<std::string>{"alpha", "beta"}));
  f.namespaces = {};
  f.tags = {"parser", "python"};
  SC_ASSERT_OK_AND_ASSIGN(auto tagged, store_->ListMemories(f));
  EXPECT_EQ(ids(tagged), (std::vector<std::string>{"alpha", "gamma"}));
  f.tags = {"python", "nope"};
  SC_ASSERT_OK_AND_ASSIGN(auto none, store_->ListMemories(f));
  EXPECT_TRUE(none.empty());
  f.tags = {};
  f.types = {"bug_fix", "constraint"};
  SC_ASSERT_OK_AND_ASSIGN(auto typed, store_->ListMemories(f));
  EXPECT_EQ(ids(typed), (std::vector<std::string>{"alpha"}));
  f.types = {};
  f.limit = 2;
  f.offset = 1;
  SC_ASSERT_OK_AND_ASSIGN(auto page, store_->ListMemories(f));
  EXPECT_EQ(ids(page), (std::vector<std::string>{"alpha", "gamma"}));

  f.limit = 0;
  EXPECT_EQ(store_->ListMemories(f).status().code(), Code::kInvalidArgument);
  f.limit = 10;
  f.offset = -1;
  EXPECT_EQ(store_->ListMemories(f).status().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformanceTest, TouchMemoriesMarksThemAccessed) {
  SC_ASSERT_OK_AND_ASSIGN(Memory a, store_->AddMemory(MakeMemory("alpha")));
  SC_ASSERT_OK_AND_ASSIGN(Memory b, store_->AddMemory(MakeMemory("beta")));
  SC_ASSERT_OK(store_->TouchMemories({a.id, a.id, "mem-unknown"}));
  SC_ASSERT_OK(store_->TouchMemories({}));
  SC_ASSERT_OK_AND_ASSIGN(Memory a2, store_->GetMemory(a.id));
  SC_ASSERT_OK_AND_ASSIGN(Memory b2, store_->GetMemory(b.id));
  EXPECT_EQ(a2.access_count, 2);
  EXPECT_GT(a2.accessed_ms, 0);
  EXPECT_EQ(b2.access_count, 0);
  EXPECT_EQ(a2.vector_label, a.vector_label);
}

// A recall runs before every model call: it scores at most the newest 3,000
// matching memories, however many there are. The oldest memories here are
// the best matches by BM25 (the word twice, short), and are not returned
// for it.
TEST_P(StoreConformanceTest, MemorySearchScoresAtMostTheNewest3000) {
  std::vector<int64_t> labels;
  for (int i = 0; i < 3100; ++i) {
    SC_ASSERT_OK_AND_ASSIGN(
        Memory m,
        store_->AddMemory(MakeMemory(i < 100 ? "lemon lemon zest"
                                             : "lemon and a longer text " + std::to_string(i))));
    labels.push_back(m.vector_label);
  }
  SC_ASSERT_OK_AND_ASSIGN(auto hits, store_->SearchMemoryText({}, "lemon", 10));
  ASSERT_EQ(hits.size(), 10u);
  for (const auto& h : hits) EXPECT_GE(h.label, labels[100]) << h.label;
  // A word fewer memories hold still finds the old ones: all its matches are scored.
  SC_ASSERT_OK_AND_ASSIGN(auto zest, store_->SearchMemoryText({}, "zest", 1000));
  EXPECT_EQ(zest.size(), 100u);
  for (const auto& h : zest) EXPECT_LT(h.label, labels[100]) << h.label;
}

TEST_P(StoreConformanceTest, SearchMemoryTextFindsWordsRanksAndFilters) {
  Memory best = MakeMemory("parse_config reads the config file; config errors name the line");
  best.summary = "config parsing";
  SC_ASSERT_OK_AND_ASSIGN(best, store_->AddMemory(best));
  Memory weak = MakeMemory("the server starts after reading its settings, then the config");
  SC_ASSERT_OK_AND_ASSIGN(weak, store_->AddMemory(weak));
  Memory tagged = MakeMemory("Prefer small commits", "project:demo");
  tagged.tags = {"git_workflow"};
  SC_ASSERT_OK_AND_ASSIGN(tagged, store_->AddMemory(tagged));
  SC_ASSERT_OK_AND_ASSIGN(Memory accent, store_->AddMemory(MakeMemory("Le café est prêt")));
  SC_ASSERT_OK_AND_ASSIGN(Memory gone, store_->AddMemory(MakeMemory("config that was archived")));
  gone.archived = true;
  SC_ASSERT_OK(store_->UpdateMemory(gone));
  SC_ASSERT_OK_AND_ASSIGN(Memory replaced, store_->AddMemory(MakeMemory("config superseded")));
  replaced.superseded_by = best.id;
  SC_ASSERT_OK(store_->UpdateMemory(replaced));

  // The substring search skips them too.
  SC_ASSERT_OK_AND_ASSIGN(auto found, store_->FindMemories({"global"}, "config", 10));
  ASSERT_EQ(found.size(), 2u);
  for (const auto& m : found) EXPECT_TRUE(m.id == best.id || m.id == weak.id) << m.content;

  // '_' separates words: parse_config is found by "config"; case is ignored.
  SC_ASSERT_OK_AND_ASSIGN(auto hits, store_->SearchMemoryText({}, "CONFIG", 10));
  ASSERT_EQ(LabelsOf(hits), (std::vector<int64_t>{best.vector_label, weak.vector_label}));
  EXPECT_GT(hits[0].score, hits[1].score);
  // Words are OR-ed; tags are searched; diacritics are ignored.
  SC_ASSERT_OK_AND_ASSIGN(auto workflow, store_->SearchMemoryText({}, "workflow nothing", 10));
  EXPECT_EQ(LabelsOf(workflow), (std::vector<int64_t>{tagged.vector_label}));
  SC_ASSERT_OK_AND_ASSIGN(auto cafe, store_->SearchMemoryText({}, "CAFE", 10));
  EXPECT_EQ(LabelsOf(cafe), (std::vector<int64_t>{accent.vector_label}));
  // Namespaces filter; limit caps.
  SC_ASSERT_OK_AND_ASSIGN(auto other_ns, store_->SearchMemoryText({"project:demo"}, "config", 10));
  EXPECT_TRUE(other_ns.empty());
  SC_ASSERT_OK_AND_ASSIGN(auto demo,
                          store_->SearchMemoryText({"project:demo", "x"}, "commits", 10));
  EXPECT_EQ(LabelsOf(demo), (std::vector<int64_t>{tagged.vector_label}));
  SC_ASSERT_OK_AND_ASSIGN(auto one, store_->SearchMemoryText({}, "config", 1));
  EXPECT_EQ(LabelsOf(one), (std::vector<int64_t>{best.vector_label}));
  SC_ASSERT_OK_AND_ASSIGN(auto zero, store_->SearchMemoryText({}, "config", 0));
  EXPECT_TRUE(zero.empty());
  // A changed text is found by its new words only, under its new label.
  Memory edit = weak;
  edit.content = "the listener binds late";
  SC_ASSERT_OK_AND_ASSIGN(edit, store_->UpdateMemory(edit));
  SC_ASSERT_OK_AND_ASSIGN(auto after, store_->SearchMemoryText({}, "config listener", 10));
  std::vector<int64_t> after_labels = LabelsOf(after);
  std::sort(after_labels.begin(), after_labels.end());
  EXPECT_EQ(after_labels, (std::vector<int64_t>{best.vector_label, edit.vector_label}));
  EXPECT_GT(edit.vector_label, weak.vector_label);
  // Deleted: gone from the index.
  SC_ASSERT_OK(store_->DeleteMemory(best.id));
  SC_ASSERT_OK_AND_ASSIGN(auto deleted, store_->SearchMemoryText({}, "config", 10));
  EXPECT_TRUE(deleted.empty());
}

TEST_P(StoreConformanceTest, TextSearchIsSafeWithHostileInput) {
  SC_ASSERT_OK(store_->AddMemory(MakeMemory("config NEAR the parser AND lexer")));
  SC_ASSERT_OK(store_->ReplaceDocument(
      MakeDocument("a.md"), {MakeChunk("# Config", "config NEAR the parser AND lexer")}, nullptr));
  std::vector<std::string> hostile = {
      "\"",
      "\"\"\"",
      "config\"",
      "*",
      "conf*",
      "AND",
      "OR OR OR",
      "NOT config",
      "config AND",
      "NEAR(",
      "NEAR(config parser, 2)",
      "-config",
      "content:config",
      "heading : config",
      "((config",
      "config))",
      "^config",
      "{content heading}: config",
      "",
      "   \t\n ",
      "!@#$%^&*()[]{};:'\",.<>/?\\|`~",
      std::string(10 * 1024, 'a'),
      [] {
        std::string s;
        for (int i = 0; i < 2000; ++i) s += "w" + std::to_string(i) + " \" ( * ";
        return s;
      }(),
      std::string("\xff\xfe\x80 config \xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80"),
      std::string("conf\0ig", 7),
      "\xe2\x80\x94\xe2\x86\x92 \xf0\x9f\x98\x80",  // em dash, arrow, emoji alone
      "caf\xc3\xa9\xe2\x80\x94"
      "config",
  };
  for (const auto& q : hostile) {
    auto m = store_->SearchMemoryText({}, q, 10);
    EXPECT_TRUE(m.ok()) << "memory query [" << q.substr(0, 60) << "]: " << m.status().ToString();
    auto c = store_->SearchChunkText({"global"}, q, 10);
    EXPECT_TRUE(c.ok()) << "chunk query [" << q.substr(0, 60) << "]: " << c.status().ToString();
    auto c2 = store_->SearchChunkText({}, q, 10);
    EXPECT_TRUE(c2.ok()) << "chunk query [" << q.substr(0, 60) << "]: " << c2.status().ToString();
  }
  // Operators are plain words and punctuation separates: these still find it.
  for (const char* q : {"\"config", "conf* config", "NEAR(config", "-config", "content:config",
                        "((config))", "and"}) {
    SC_ASSERT_OK_AND_ASSIGN(auto m, store_->SearchMemoryText({}, q, 10));
    EXPECT_EQ(m.size(), 1u) << q;
    SC_ASSERT_OK_AND_ASSIGN(auto c, store_->SearchChunkText({}, q, 10));
    EXPECT_EQ(c.size(), 1u) << q;
  }
  // No words: no results, not an error.
  SC_ASSERT_OK_AND_ASSIGN(auto nothing, store_->SearchChunkText({}, "*** \"\" ()", 10));
  EXPECT_TRUE(nothing.empty());
}

TEST_P(StoreConformanceTest, ReplaceDocumentReplacesItsChunksAndReportsTheRemovedLabels) {
  std::vector<int64_t> removed = {42};
  SC_ASSERT_OK_AND_ASSIGN(
      auto first, store_->ReplaceDocument(MakeDocument("docs/guide.md", "project:demo"),
                                          {MakeChunk("# Guide", "install with apt", 1),
                                           MakeChunk("# Guide > Usage", "run the server", 4),
                                           MakeChunk("", "license text", 9)},
                                          &removed));
  ASSERT_EQ(first.size(), 3u);
  EXPECT_TRUE(removed.empty());
  EXPECT_LT(first[0], first[1]);
  EXPECT_LT(first[1], first[2]);
  SC_ASSERT_OK_AND_ASSIGN(KbDocument doc, store_->FindDocument("project:demo", "docs/guide.md"));
  EXPECT_FALSE(doc.id.empty());
  EXPECT_EQ(doc.chunk_count, 3);
  EXPECT_EQ(doc.content_hash, "hash-of-docs/guide.md");
  EXPECT_EQ(doc.provenance["feature"], "f-1");
  EXPECT_GT(doc.created_ms, 0);
  EXPECT_EQ(store_->FindDocument("global", "docs/guide.md").status().code(), Code::kNotFound);

  SC_ASSERT_OK_AND_ASSIGN(auto chunks, store_->ChunksByLabel({first[2], 999999, first[0]}));
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].label, first[2]);
  EXPECT_EQ(chunks[0].ordinal, 2);
  EXPECT_EQ(chunks[0].content, "license text");
  EXPECT_EQ(chunks[1].heading, "# Guide");
  EXPECT_EQ(chunks[1].ordinal, 0);
  EXPECT_EQ(chunks[1].line_start, 1);
  EXPECT_EQ(chunks[1].line_end, 3);
  EXPECT_EQ(chunks[1].source, "docs/guide.md");
  EXPECT_EQ(chunks[1].ns, "project:demo");
  EXPECT_EQ(chunks[1].document_id, doc.id);

  KbDocument again = MakeDocument("docs/guide.md", "project:demo");
  again.content_hash = "new-hash";
  SC_ASSERT_OK_AND_ASSIGN(auto second,
                          store_->ReplaceDocument(again,
                                                  {MakeChunk("# Guide", "install with pip", 1),
                                                   MakeChunk("# Guide > Usage", "serve it", 4)},
                                                  &removed));
  EXPECT_EQ(removed, first);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_GT(second[0], first[2]);  // labels are never reused
  SC_ASSERT_OK_AND_ASSIGN(KbDocument doc2, store_->FindDocument("project:demo", "docs/guide.md"));
  EXPECT_EQ(doc2.id, doc.id);  // the same document, re-ingested
  EXPECT_EQ(doc2.content_hash, "new-hash");
  EXPECT_EQ(doc2.chunk_count, 2);
  SC_ASSERT_OK_AND_ASSIGN(auto old_chunks, store_->ChunksByLabel(first));
  EXPECT_TRUE(old_chunks.empty());
  SC_ASSERT_OK_AND_ASSIGN(auto apt, store_->SearchChunkText({}, "apt", 10));
  EXPECT_TRUE(apt.empty());
  SC_ASSERT_OK_AND_ASSIGN(auto pip, store_->SearchChunkText({}, "pip", 10));
  EXPECT_EQ(LabelsOf(pip), (std::vector<int64_t>{second[0]}));
  SC_ASSERT_OK_AND_ASSIGN(auto labels, store_->ChunkLabels());
  EXPECT_EQ(labels, second);

  // A failed replace changes nothing: the id of another document collides.
  SC_ASSERT_OK(store_->ReplaceDocument(MakeDocument("other.md"), {MakeChunk("", "x")}, nullptr));
  KbDocument clash = MakeDocument("docs/guide.md", "project:demo");
  clash.id = store_->FindDocument("global", "other.md")->id;
  removed = {7};
  auto failed = store_->ReplaceDocument(clash, {MakeChunk("", "clash text")}, &removed);
  EXPECT_EQ(failed.status().code(), Code::kAlreadyExists) << failed.status().ToString();
  EXPECT_EQ(removed, (std::vector<int64_t>{7}));
  SC_ASSERT_OK_AND_ASSIGN(auto kept, store_->ChunksByLabel(second));
  EXPECT_EQ(kept.size(), 2u);
  SC_ASSERT_OK_AND_ASSIGN(auto still, store_->SearchChunkText({}, "pip", 10));
  EXPECT_EQ(still.size(), 1u);

  KbDocument nameless;
  EXPECT_EQ(store_->ReplaceDocument(nameless, {}, nullptr).status().code(), Code::kInvalidArgument);

  SC_ASSERT_OK_AND_ASSIGN(auto all_docs, store_->ListDocuments(""));
  ASSERT_EQ(all_docs.size(), 2u);
  EXPECT_EQ(all_docs[0].source, "other.md");  // by namespace, then source
  SC_ASSERT_OK_AND_ASSIGN(auto demo_docs, store_->ListDocuments("project:demo"));
  ASSERT_EQ(demo_docs.size(), 1u);

  SC_ASSERT_OK_AND_ASSIGN(auto deleted, store_->DeleteDocument(doc.id));
  EXPECT_EQ(deleted, second);
  EXPECT_EQ(store_->DeleteDocument(doc.id).status().code(), Code::kNotFound);
  SC_ASSERT_OK_AND_ASSIGN(auto none, store_->SearchChunkText({}, "pip", 10));
  EXPECT_TRUE(none.empty());
}

TEST_P(StoreConformanceTest, SearchChunkTextRanksAndFiltersByNamespace) {
  SC_ASSERT_OK_AND_ASSIGN(
      auto a, store_->ReplaceDocument(
                  MakeDocument("a.md", "project:demo"),
                  {MakeChunk("# Retry policy", "retry the request with backoff; retry at most 3"),
                   MakeChunk("# Other", "unrelated words about logging, and one retry")},
                  nullptr));
  SC_ASSERT_OK_AND_ASSIGN(auto b,
                          store_->ReplaceDocument(MakeDocument("b.md", "global"),
                                                  {MakeChunk("", "global retry notes")}, nullptr));
  SC_ASSERT_OK_AND_ASSIGN(auto all, store_->SearchChunkText({}, "retry policy", 10));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].label, a[0]);  // heading and content both match
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GE(all[i - 1].score, all[i].score);
  SC_ASSERT_OK_AND_ASSIGN(auto demo, store_->SearchChunkText({"project:demo"}, "retry", 10));
  EXPECT_EQ(demo.size(), 2u);
  for (const auto& h : demo) EXPECT_NE(h.label, b[0]);
  SC_ASSERT_OK_AND_ASSIGN(auto global, store_->SearchChunkText({"global"}, "retry", 10));
  EXPECT_EQ(LabelsOf(global), (std::vector<int64_t>{b[0]}));
  SC_ASSERT_OK_AND_ASSIGN(auto capped, store_->SearchChunkText({}, "retry", 1000000));
  EXPECT_EQ(capped.size(), 3u);
}

// Stopwords are not searched when the query has other words: OR-ed, "the"
// or "how" would match every chunk. A query made only of stopwords still
// finds what contains them.
TEST_P(StoreConformanceTest, SearchTextIgnoresStopwordsUnlessTheyAreAllThereIs) {
  SC_ASSERT_OK_AND_ASSIGN(
      auto labels,
      store_->ReplaceDocument(MakeDocument("s.md", "global"),
                              {MakeChunk("", "how to rotate the signing keys"),
                               MakeChunk("", "the cache of the build is in the out directory"),
                               MakeChunk("", "to be or not to be, that is the question")},
                              nullptr));
  SC_ASSERT_OK_AND_ASSIGN(auto keys, store_->SearchChunkText({}, "how do I rotate the keys", 10));
  EXPECT_EQ(LabelsOf(keys), (std::vector<int64_t>{labels[0]}));
  SC_ASSERT_OK_AND_ASSIGN(auto only, store_->SearchChunkText({}, "to be or not", 10));
  ASSERT_FALSE(only.empty());
  EXPECT_EQ(only[0].label, labels[2]);
  SC_ASSERT_OK_AND_ASSIGN(auto the, store_->SearchChunkText({}, "THE", 10));
  EXPECT_EQ(the.size(), 3u);
  SC_ASSERT_OK(
      store_->AddMemory(MakeMemory("the deploy of the web tier uses blue-green")).status());
  SC_ASSERT_OK(store_->AddMemory(MakeMemory("the tests of the parser are slow")).status());
  SC_ASSERT_OK_AND_ASSIGN(auto deploy, store_->SearchMemoryText({}, "what is the deploy", 10));
  EXPECT_EQ(deploy.size(), 1u);
}

// A word that very many rows hold no longer pulls them all into the search
// (scoring them would cost tens of ms) when rarer words are there; a query
// of common words only still answers.
TEST_P(StoreConformanceTest, SearchTextDropsVeryCommonWordsWhenRarerOnesAreThere) {
  std::vector<DocumentWrite> writes(2);
  writes[0].doc = MakeDocument("filler.md");
  for (int i = 0; i < 7000; ++i)
    writes[0].chunks.push_back(MakeChunk("", "common filler text " + std::to_string(i)));
  writes[1].doc = MakeDocument("rare.md");
  writes[1].chunks = {MakeChunk("", "common zebra"), MakeChunk("", "a quokka")};
  SC_ASSERT_OK(store_->ReplaceDocuments(&writes));
  const auto& rare = writes[1].labels;
  SC_ASSERT_OK_AND_ASSIGN(auto hits, store_->SearchChunkText({}, "common zebra quokka", 1000));
  ASSERT_EQ(hits.size(), 2u);  // not the 7,000 rows holding "common"
  EXPECT_EQ(std::set<int64_t>({hits[0].label, hits[1].label}),
            std::set<int64_t>(rare.begin(), rare.end()));
  SC_ASSERT_OK_AND_ASSIGN(auto common, store_->SearchChunkText({}, "common filler text", 10));
  EXPECT_EQ(common.size(), 10u);
  SC_ASSERT_OK_AND_ASSIGN(auto two, store_->SearchChunkText({}, "filler zebra", 10));
  EXPECT_EQ(two.size(), 10u);  // two words: both searched, whatever they cost
}

// Many documents in one transaction, as ReplaceDocument would write each;
// a failure on any of them writes none.
TEST_P(StoreConformanceTest, ReplaceDocumentsWritesAllOrNothing) {
  SC_ASSERT_OK_AND_ASSIGN(
      auto old_labels,
      store_->ReplaceDocument(MakeDocument("b.md"),
                              {MakeChunk("", "old b one"), MakeChunk("", "old b two")}, nullptr));
  SC_ASSERT_OK_AND_ASSIGN(int64_t g, store_->KnowledgeGeneration());
  std::vector<DocumentWrite> writes(3);
  writes[0].doc = MakeDocument("a.md", "project:demo");
  writes[0].chunks = {MakeChunk("# A", "alpha one"), MakeChunk("# A", "alpha two")};
  writes[1].doc = MakeDocument("b.md");
  writes[1].chunks = {MakeChunk("", "new b")};
  writes[2].doc = MakeDocument("c.md");  // no chunks
  writes[2].removed = {99};
  SC_ASSERT_OK(store_->ReplaceDocuments(&writes));
  ASSERT_EQ(writes[0].labels.size(), 2u);
  EXPECT_TRUE(writes[0].removed.empty());
  ASSERT_EQ(writes[1].labels.size(), 1u);
  EXPECT_EQ(writes[1].removed, old_labels);
  EXPECT_GT(writes[1].labels[0], writes[0].labels[1]);  // in order, never reused
  EXPECT_TRUE(writes[2].labels.empty());
  EXPECT_TRUE(writes[2].removed.empty());
  SC_ASSERT_OK_AND_ASSIGN(int64_t g2, store_->KnowledgeGeneration());
  EXPECT_GT(g2, g);
  SC_ASSERT_OK_AND_ASSIGN(auto chunks, store_->ChunksByLabel(writes[0].labels));
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[1].content, "alpha two");
  EXPECT_EQ(chunks[1].ns, "project:demo");
  EXPECT_EQ(chunks[1].ordinal, 1);
  SC_ASSERT_OK_AND_ASSIGN(KbDocument c, store_->FindDocument("global", "c.md"));
  EXPECT_EQ(c.chunk_count, 0);
  SC_ASSERT_OK_AND_ASSIGN(auto all, store_->ChunkLabels());
  EXPECT_EQ(all.size(), 3u);

  // The second write's id belongs to another document: nothing is written,
  // not even the first write, and no label is reported.
  std::vector<DocumentWrite> failing(2);
  failing[0].doc = MakeDocument("d.md");
  failing[0].chunks = {MakeChunk("", "delta")};
  failing[1].doc = MakeDocument("e.md");
  failing[1].doc.id = c.id;
  failing[1].chunks = {MakeChunk("", "epsilon")};
  Status st = store_->ReplaceDocuments(&failing);
  EXPECT_EQ(st.code(), Code::kAlreadyExists) << st.ToString();
  EXPECT_TRUE(failing[0].labels.empty());
  EXPECT_EQ(store_->FindDocument("global", "d.md").status().code(), Code::kNotFound);
  SC_ASSERT_OK_AND_ASSIGN(auto delta, store_->SearchChunkText({}, "delta", 10));
  EXPECT_TRUE(delta.empty());
  SC_ASSERT_OK_AND_ASSIGN(int64_t g3, store_->KnowledgeGeneration());
  EXPECT_EQ(g3, g2);

  std::vector<DocumentWrite> nameless(1);
  EXPECT_EQ(store_->ReplaceDocuments(&nameless).code(), Code::kInvalidArgument);
  std::vector<DocumentWrite> none;
  SC_ASSERT_OK(store_->ReplaceDocuments(&none));
}

TEST_P(StoreConformanceTest, KnowledgeGenerationRisesWithEveryLabelledWriteOnly) {
  SC_ASSERT_OK_AND_ASSIGN(int64_t g, store_->KnowledgeGeneration());
  auto rose = [&](const char* what) {
    auto now = store_->KnowledgeGeneration();
    ASSERT_TRUE(now.ok()) << now.status().ToString();
    EXPECT_GT(*now, g) << what;
    g = *now;
  };
  auto same = [&](const char* what) {
    auto now = store_->KnowledgeGeneration();
    ASSERT_TRUE(now.ok()) << now.status().ToString();
    EXPECT_EQ(*now, g) << what;
  };
  SC_ASSERT_OK_AND_ASSIGN(Memory a, store_->AddMemory(MakeMemory("alpha")));
  rose("AddMemory");
  SC_ASSERT_OK_AND_ASSIGN(Memory b, store_->AddMemory(MakeMemory("beta")));
  rose("AddMemory");
  a.importance = 8;
  SC_ASSERT_OK_AND_ASSIGN(a, store_->UpdateMemory(a));
  same("UpdateMemory of importance");
  a.content = "alpha, revised";
  SC_ASSERT_OK_AND_ASSIGN(a, store_->UpdateMemory(a));
  rose("UpdateMemory of content");
  a.archived = true;
  SC_ASSERT_OK_AND_ASSIGN(a, store_->UpdateMemory(a));
  rose("archiving");
  a.archived = false;
  SC_ASSERT_OK_AND_ASSIGN(a, store_->UpdateMemory(a));
  rose("unarchiving");
  b.superseded_by = a.id;
  SC_ASSERT_OK_AND_ASSIGN(b, store_->UpdateMemory(b));
  rose("superseding");
  MemoryLink link;
  link.from_id = a.id;
  link.to_id = b.id;
  SC_ASSERT_OK(store_->UpsertMemoryLink(link));
  SC_ASSERT_OK(store_->TouchMemories({a.id}));
  SC_ASSERT_OK(store_->SearchMemoryText({}, "alpha", 5).status());
  same("links, touches and searches");
  SC_ASSERT_OK(store_->DeleteMemory(b.id));
  rose("DeleteMemory");
  SC_ASSERT_OK_AND_ASSIGN(
      auto labels, store_->ReplaceDocument(MakeDocument("x.md"), {MakeChunk("", "x")}, nullptr));
  rose("ReplaceDocument");
  SC_ASSERT_OK_AND_ASSIGN(KbDocument doc, store_->FindDocument("global", "x.md"));
  SC_ASSERT_OK(store_->DeleteDocument(doc.id));
  rose("DeleteDocument");
  EXPECT_FALSE(store_->DeleteDocument(doc.id).ok());
  EXPECT_FALSE(store_->AddMemory(MakeMemory("")).ok());
  same("failed writes");
}

TEST_P(StoreConformanceTest, MemoryLinksUpsertListDeleteAndGoWithTheirMemory) {
  SC_ASSERT_OK_AND_ASSIGN(Memory a, store_->AddMemory(MakeMemory("alpha")));
  SC_ASSERT_OK_AND_ASSIGN(Memory b, store_->AddMemory(MakeMemory("beta")));
  SC_ASSERT_OK_AND_ASSIGN(Memory c, store_->AddMemory(MakeMemory("gamma")));
  MemoryLink ab{a.id, b.id, "relates_to", 0.4};
  MemoryLink ca{c.id, a.id, "fixes", 0.9};
  MemoryLink bc{b.id, c.id, "relates_to", 0.2};
  SC_ASSERT_OK(store_->UpsertMemoryLink(ab));
  SC_ASSERT_OK(store_->UpsertMemoryLink(ca));
  SC_ASSERT_OK(store_->UpsertMemoryLink(bc));
  SC_ASSERT_OK_AND_ASSIGN(auto of_a, store_->MemoryLinks(a.id));
  ASSERT_EQ(of_a.size(), 2u);
  EXPECT_EQ(of_a[0].from_id, c.id);  // strongest first, either direction
  EXPECT_EQ(of_a[0].type, "fixes");
  EXPECT_DOUBLE_EQ(of_a[0].strength, 0.9);
  EXPECT_EQ(of_a[1].to_id, b.id);
  int64_t created = of_a[1].created_ms;
  EXPECT_GT(created, 0);

  ab.strength = 1.0;  // upsert: the same (from, to, type) changes, keeps created_ms
  SC_ASSERT_OK(store_->UpsertMemoryLink(ab));
  SC_ASSERT_OK_AND_ASSIGN(auto all, store_->AllMemoryLinks());
  ASSERT_EQ(all.size(), 3u);
  for (const auto& l : all) {
    if (l.from_id == a.id) {
      EXPECT_DOUBLE_EQ(l.strength, 1.0);
      EXPECT_EQ(l.created_ms, created);
    }
  }
  MemoryLink other_type = ab;
  other_type.type = "caused_by";
  SC_ASSERT_OK(store_->UpsertMemoryLink(other_type));
  EXPECT_EQ(store_->AllMemoryLinks()->size(), 4u);

  for (double bad : {0.0, -0.5, 1.5, std::nan("")}) {
    MemoryLink l = ab;
    l.strength = bad;
    EXPECT_EQ(store_->UpsertMemoryLink(l).code(), Code::kInvalidArgument) << bad;
  }
  MemoryLink no_type = ab;
  no_type.type = "";
  EXPECT_EQ(store_->UpsertMemoryLink(no_type).code(), Code::kInvalidArgument);
  MemoryLink dangling{a.id, "mem-missing", "relates_to", 0.5};
  Status s = store_->UpsertMemoryLink(dangling);
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_NE(s.message().find("mem-missing"), std::string::npos) << s.ToString();

  SC_ASSERT_OK(store_->DeleteMemoryLink(a.id, b.id, "caused_by"));
  EXPECT_EQ(store_->DeleteMemoryLink(a.id, b.id, "caused_by").code(), Code::kNotFound);
  EXPECT_EQ(store_->AllMemoryLinks()->size(), 3u);

  // Deleting a memory takes every link touching it.
  SC_ASSERT_OK(store_->DeleteMemory(a.id));
  SC_ASSERT_OK_AND_ASSIGN(auto left, store_->AllMemoryLinks());
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].from_id, b.id);
  EXPECT_EQ(left[0].to_id, c.id);
  EXPECT_TRUE(store_->MemoryLinks(a.id)->empty());
}

// Several links at once are all written, or none of them: one bad link (a
// missing end, a bad strength) leaves the others out too.
TEST_P(StoreConformanceTest, MemoryLinksInOneCallAreAllOrNothing) {
  SC_ASSERT_OK_AND_ASSIGN(Memory a, store_->AddMemory(MakeMemory("alpha")));
  SC_ASSERT_OK_AND_ASSIGN(Memory b, store_->AddMemory(MakeMemory("beta")));
  SC_ASSERT_OK_AND_ASSIGN(Memory c, store_->AddMemory(MakeMemory("gamma")));
  const MemoryLink ab{a.id, b.id, "relates_to", 0.4};
  const MemoryLink ac{a.id, c.id, "relates_to", 0.7};
  SC_ASSERT_OK(store_->UpsertMemoryLinks({}));
  EXPECT_EQ(store_->UpsertMemoryLinks({ab, {a.id, "mem-missing", "relates_to", 0.5}}).code(),
            Code::kNotFound);
  EXPECT_EQ(store_->UpsertMemoryLinks({ab, {a.id, c.id, "relates_to", 1.5}}).code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(store_->AllMemoryLinks()->empty());

  SC_ASSERT_OK(store_->UpsertMemoryLinks({ab, ac}));
  SC_ASSERT_OK_AND_ASSIGN(auto of_a, store_->MemoryLinks(a.id));
  ASSERT_EQ(of_a.size(), 2u);
  EXPECT_EQ(of_a[0].to_id, c.id);  // strongest first
  EXPECT_EQ(of_a[1].to_id, b.id);
}

TEST_P(StoreConformanceTest, TextsLabelsAndCountsServeTheVectorIndex) {
  SC_ASSERT_OK_AND_ASSIGN(
      auto labels,
      store_->ReplaceDocument(
          MakeDocument("a.md", "project:demo"),
          {MakeChunk("# A", "one"), MakeChunk("", "two"), MakeChunk("# C", "three")}, nullptr));
  SC_ASSERT_OK(store_->ReplaceDocument(MakeDocument("b.md"), {}, nullptr));  // no chunks
  Memory m = MakeMemory("use WAL", "project:demo");
  m.summary = "sqlite";
  m.tags = {"db", "perf"};
  SC_ASSERT_OK_AND_ASSIGN(m, store_->AddMemory(m));
  SC_ASSERT_OK_AND_ASSIGN(Memory plain, store_->AddMemory(MakeMemory("plain")));
  Memory archived = MakeMemory("old");
  archived.archived = true;
  SC_ASSERT_OK_AND_ASSIGN(archived, store_->AddMemory(archived));
  MemoryLink l{m.id, plain.id, "relates_to", 0.5};
  SC_ASSERT_OK(store_->UpsertMemoryLink(l));

  // Pages of two, continued from the last label, cover every chunk once.
  std::vector<Store::LabelledText> texts;
  int64_t after = 0;
  for (;;) {
    SC_ASSERT_OK_AND_ASSIGN(auto page, store_->ChunkTexts(after, 2));
    if (page.empty()) break;
    texts.insert(texts.end(), page.begin(), page.end());
    after = page.back().label;
  }
  ASSERT_EQ(texts.size(), 3u);
  EXPECT_EQ(texts[0].label, labels[0]);
  EXPECT_EQ(texts[0].text, "# A\none");
  EXPECT_EQ(texts[0].ns, "project:demo");
  EXPECT_EQ(texts[1].text, "two");
  EXPECT_EQ(texts[2].label, labels[2]);

  SC_ASSERT_OK_AND_ASSIGN(auto mem_texts, store_->MemoryTexts(0, 100));
  ASSERT_EQ(mem_texts.size(), 2u);  // not the archived one
  EXPECT_EQ(mem_texts[0].label, m.vector_label);
  EXPECT_EQ(mem_texts[0].text, "sqlite\nuse WAL\ndb perf");
  EXPECT_EQ(mem_texts[0].ns, "project:demo");
  EXPECT_EQ(mem_texts[1].text, "plain");
  SC_ASSERT_OK_AND_ASSIGN(auto after_first, store_->MemoryTexts(m.vector_label, 100));
  EXPECT_EQ(after_first.size(), 1u);
  EXPECT_EQ(store_->ChunkTexts(0, 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->MemoryTexts(0, 10001).status().code(), Code::kInvalidArgument);

  SC_ASSERT_OK_AND_ASSIGN(auto chunk_labels, store_->ChunkLabels());
  EXPECT_EQ(chunk_labels, labels);
  SC_ASSERT_OK_AND_ASSIGN(auto memory_labels, store_->MemoryLabels());
  EXPECT_EQ(memory_labels, (std::vector<int64_t>{m.vector_label, plain.vector_label}));

  SC_ASSERT_OK_AND_ASSIGN(KbCounts counts, store_->CountKnowledge());
  EXPECT_EQ(counts.documents, 2);
  EXPECT_EQ(counts.chunks, 3);
  EXPECT_EQ(counts.memories, 2);
  EXPECT_EQ(counts.archived_memories, 1);
  EXPECT_EQ(counts.links, 1);
}

// --- API keys -------------------------------------------------------------------

TEST_P(StoreConformanceTest, ApiKeysCreateFindRevokeTouchCount) {
  ApiKey admin;
  admin.name = "admin";
  admin.key_hash = "hash-admin";
  admin.prefix = "afk_abcd";
  admin.permissions = {"admin"};
  SC_ASSERT_OK_AND_ASSIGN(ApiKey a, store_->CreateApiKey(admin));
  EXPECT_FALSE(a.id.empty());
  EXPECT_GT(a.created_ms, 0);
  ApiKey reader = admin;
  reader.name = "reader";
  reader.key_hash = "hash-reader";
  reader.permissions = {"features:read", "agents:read"};
  SC_ASSERT_OK_AND_ASSIGN(ApiKey r, store_->CreateApiKey(reader));

  SC_ASSERT_OK_AND_ASSIGN(ApiKey found, store_->FindApiKeyByHash("hash-reader"));
  EXPECT_EQ(found.id, r.id);
  EXPECT_EQ(found.name, "reader");
  EXPECT_EQ(found.prefix, "afk_abcd");
  EXPECT_EQ(found.permissions, (std::vector<std::string>{"features:read", "agents:read"}));
  EXPECT_FALSE(found.revoked);
  EXPECT_EQ(found.last_used_ms, 0);

  auto unknown = store_->FindApiKeyByHash("hash-unknown");
  EXPECT_EQ(unknown.status().code(), Code::kNotFound);
  EXPECT_EQ(unknown.status().message().find("hash-unknown"), std::string::npos);

  ApiKey clash = reader;
  clash.id.clear();
  clash.name = "clash";
  EXPECT_EQ(store_->CreateApiKey(clash).status().code(), Code::kAlreadyExists);
  ApiKey nameless = reader;
  nameless.name.clear();
  nameless.key_hash = "other";
  EXPECT_EQ(store_->CreateApiKey(nameless).status().code(), Code::kInvalidArgument);

  SC_ASSERT_OK_AND_ASSIGN(int64_t active, store_->CountActiveApiKeys());
  EXPECT_EQ(active, 2);

  SC_ASSERT_OK(store_->TouchApiKey(r.id, 123456));
  SC_ASSERT_OK_AND_ASSIGN(found, store_->FindApiKeyByHash("hash-reader"));
  EXPECT_EQ(found.last_used_ms, 123456);
  EXPECT_EQ(store_->TouchApiKey("key-none", 1).code(), Code::kNotFound);

  SC_ASSERT_OK(store_->RevokeApiKey(r.id));
  SC_ASSERT_OK(store_->RevokeApiKey(r.id));  // idempotent
  SC_ASSERT_OK_AND_ASSIGN(found, store_->FindApiKeyByHash("hash-reader"));
  EXPECT_TRUE(found.revoked);
  SC_ASSERT_OK_AND_ASSIGN(active, store_->CountActiveApiKeys());
  EXPECT_EQ(active, 1);
  auto revoke_unknown = store_->RevokeApiKey("key-none");
  EXPECT_EQ(revoke_unknown.code(), Code::kNotFound);
  EXPECT_NE(revoke_unknown.message().find("key-none"), std::string::npos);

  SC_ASSERT_OK_AND_ASSIGN(auto keys, store_->ListApiKeys());
  ASSERT_EQ(keys.size(), 2u);
  std::set<std::string> names{keys[0].name, keys[1].name};
  EXPECT_EQ(names, (std::set<std::string>{"admin", "reader"}));
  for (const ApiKey& k : keys) EXPECT_EQ(k.revoked, k.name == "reader");
}

// --- Backup ---------------------------------------------------------------------

// The copy is one moment's state even while another thread keeps writing:
// its events are exactly a prefix of the log (no gap, nothing torn), and at
// least everything committed before the call.
TEST_P(StoreConformanceTest, BackupToCopiesOneMomentWhileWritesGoOn) {
  SC_ASSERT_OK_AND_ASSIGN(Feature f, store_->CreateFeature(MakeFeature("Backed up")));
  SC_ASSERT_OK_AND_ASSIGN(Memory m, store_->AddMemory([] {
    Memory mem;
    mem.content = "the backup keeps memories";
    return mem;
  }()));
  for (int i = 0; i < 50; ++i) {
    Event e;
    e.type = "test.before";
    e.feature_id = f.id;
    SC_ASSERT_OK(store_->AppendEvent(e));
  }
  SC_ASSERT_OK_AND_ASSIGN(int64_t before, store_->LatestEventSeq());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) {
      Event e;
      e.type = "test.during";
      e.feature_id = f.id;
      if (!store_->AppendEvent(e).ok()) return;
    }
  });
  TempDir dir;
  const std::string copy = (dir.path() / "copy.db").string();
  Status backed = store_->BackupTo(copy);
  stop = true;
  writer.join();
  SC_ASSERT_OK(backed);
  EXPECT_EQ(std::filesystem::status(copy).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  SC_ASSERT_OK_AND_ASSIGN(auto opened, Store::Open({.url = "sqlite:" + copy, .migrate = false}));
  SC_ASSERT_OK_AND_ASSIGN(Feature got, opened->GetFeature(f.id));
  EXPECT_EQ(got.title, "Backed up");
  SC_ASSERT_OK_AND_ASSIGN(Memory got_m, opened->GetMemory(m.id));
  EXPECT_EQ(got_m.content, m.content);
  std::vector<Event> events = AllEvents(*opened);
  ASSERT_GE(static_cast<int64_t>(events.size()), before);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq, static_cast<int64_t>(i) + 1);

  // Nothing is overwritten.
  Status again = store_->BackupTo(copy);
  EXPECT_EQ(again.code(), Code::kAlreadyExists) << again.ToString();
  SC_ASSERT_OK_AND_ASSIGN(auto reopened, Store::Open({.url = "sqlite:" + copy, .migrate = false}));
  EXPECT_TRUE(reopened->GetFeature(f.id).ok());
}

}  // namespace
}  // namespace af::testing
