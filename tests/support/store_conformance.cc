#include "support/store_conformance.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace af::testing {

int StoreConformanceAnchor() { return 0; }

void StoreConformanceTest::SetUp() {
  auto made = GetParam().open();
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

}  // namespace
}  // namespace af::testing
