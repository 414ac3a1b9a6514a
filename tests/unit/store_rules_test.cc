// The input checks both store backends share (src/store/store_rules.h). The
// conformance suites check that each backend refuses bad input; these pin the
// words of each refusal (message and hint), which users, docs and tests read.

#include "store/store_rules.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "support/test_util.h"

namespace af::store_internal {
namespace {

using nlohmann::json;
using testing::TempDir;

constexpr const char* kFeatureHint =
    "use one of queued, planning, implementing, testing, reviewing, delivering, completed, "
    "failed, cancelled";
constexpr const char* kTaskHint =
    "use one of pending, ready, in_progress, completed, failed, cancelled";

void ExpectRefused(const Status& s, Code code, const std::string& message,
                   const std::string& hint) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_EQ(s.message(), message);
  EXPECT_EQ(s.hint(), hint);
}

Feature GoodFeature() {
  Feature f;
  f.project = "demo";
  f.status = "queued";
  f.priority = "medium";
  return f;
}

TEST(StoreRulesTest, NewFeatureNeedsKnownStatusPriorityAndProject) {
  EXPECT_TRUE(CheckNewFeature(GoodFeature()).ok());
  Feature f = GoodFeature();
  f.status = "done";
  ExpectRefused(CheckNewFeature(f), Code::kInvalidArgument, "unknown feature status 'done'",
                kFeatureHint);
  f = GoodFeature();
  f.priority = "urgent";
  ExpectRefused(CheckNewFeature(f), Code::kInvalidArgument, "unknown priority 'urgent'",
                "use one of low, medium, high, critical");
  f = GoodFeature();
  f.project = "../etc";
  EXPECT_EQ(CheckNewFeature(f).code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckNewFeature(f).message(), CheckProjectName("../etc").message());
}

TEST(StoreRulesTest, FeatureFilterBoundsAndStatus) {
  FeatureFilter filter;
  EXPECT_TRUE(CheckFeatureFilter(filter).ok());
  for (auto [limit, offset] : {std::pair{0, 0}, {1001, 0}, {10, -1}}) {
    filter.limit = limit;
    filter.offset = offset;
    ExpectRefused(CheckFeatureFilter(filter), Code::kInvalidArgument,
                  "feature listing needs 1 <= limit <= 1000 and offset >= 0",
                  "e.g. limit=50&offset=0");
  }
  filter = FeatureFilter{};
  filter.status = "nope";
  ExpectRefused(CheckFeatureFilter(filter), Code::kInvalidArgument, "unknown feature status 'nope'",
                kFeatureHint);
}

TEST(StoreRulesTest, TransitionsNameTheUnknownStatusAndNeedObjectData) {
  EXPECT_TRUE(CheckFeatureTransition(std::nullopt, "planning", nullptr).ok());
  EXPECT_TRUE(CheckFeatureTransition("queued", "planning", json::object()).ok());
  ExpectRefused(CheckFeatureTransition(std::nullopt, "nope", nullptr), Code::kInvalidArgument,
                "unknown feature status 'nope'", kFeatureHint);
  // A known `to` with an unknown `expected_from`: the message names the latter.
  ExpectRefused(CheckFeatureTransition("was", "planning", nullptr), Code::kInvalidArgument,
                "unknown feature status 'was'", kFeatureHint);
  ExpectRefused(CheckFeatureTransition(std::nullopt, "planning", json::array()),
                Code::kInvalidArgument, "event data must be a JSON object, got array",
                "pass an object such as {\"key\": \"value\"} or null");

  TaskUpdate update;
  EXPECT_TRUE(CheckTaskTransition("ready", "in_progress", update, nullptr).ok());
  ExpectRefused(CheckTaskTransition("nope", "ready", update, nullptr), Code::kInvalidArgument,
                "unknown task status 'nope'", kTaskHint);
  update.add_attempts = -1;
  ExpectRefused(CheckTaskTransition(std::nullopt, "ready", update, nullptr), Code::kInvalidArgument,
                "attempts can only grow", "pass add_attempts >= 0");
  update.add_attempts = 0;
  ExpectRefused(CheckTaskTransition(std::nullopt, "ready", update, 3), Code::kInvalidArgument,
                "event data must be a JSON object, got number",
                "pass an object such as {\"key\": \"value\"} or null");
}

TEST(StoreRulesTest, ExpectedStatusIsTheCompareOfCompareAndSet) {
  EXPECT_TRUE(CheckExpectedStatus("task", "t1", "ready", std::nullopt, "failed").ok());
  EXPECT_TRUE(CheckExpectedStatus("task", "t1", "ready", "ready", "failed").ok());
  ExpectRefused(CheckExpectedStatus("feature", "f1", "planning", "queued", "failed"),
                Code::kFailedPrecondition,
                "feature f1 is 'planning', not the expected 'queued'; not moved to 'failed'",
                "reload the feature; another step already moved it");
  ExpectRefused(CheckExpectedStatus("task", "t1", "completed", "ready", "in_progress"),
                Code::kFailedPrecondition,
                "task t1 is 'completed', not the expected 'ready'; not moved to 'in_progress'",
                "reload the task; another step already moved it");
}

Task MakeTask(std::string id, std::vector<std::string> deps, std::string status = "pending") {
  Task t;
  t.id = std::move(id);
  t.status = std::move(status);
  t.dependencies = std::move(deps);
  return t;
}

TEST(StoreRulesTest, TaskBatchGetsIdsLosesRepeatedDependenciesAndRefusesBadOnes) {
  std::vector<Task> tasks = {MakeTask("a", {}), MakeTask("", {"a", "a", "x", "a"})};
  auto graph = PrepareTaskBatch(&tasks);
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();
  EXPECT_FALSE(tasks[1].id.empty());
  EXPECT_EQ(tasks[1].dependencies, (std::vector<std::string>{"a", "x"}));
  ASSERT_EQ(graph->size(), 2u);
  EXPECT_EQ((*graph)[1].id, tasks[1].id);
  EXPECT_EQ((*graph)[1].dependencies, tasks[1].dependencies);
  // "x" is neither in the batch nor stored; a stored "x" makes it known.
  ExpectRefused(CheckDependenciesKnown(*graph, {}, "f1"), Code::kInvalidArgument,
                "task " + tasks[1].id + " depends on unknown task 'x'",
                "dependencies must name tasks of feature f1 created before or in the same batch");
  EXPECT_TRUE(CheckDependenciesKnown(*graph, {"x"}, "f1").ok());

  tasks = {MakeTask("a", {}, "waiting")};
  ExpectRefused(PrepareTaskBatch(&tasks).status(), Code::kInvalidArgument,
                "task a has unknown status 'waiting'", kTaskHint);
  tasks = {MakeTask("a", {}), MakeTask("a", {})};
  ExpectRefused(PrepareTaskBatch(&tasks).status(), Code::kInvalidArgument,
                "task id a appears twice in the batch", "give every task its own id");
  tasks = {MakeTask("a", {"c"}), MakeTask("b", {}), MakeTask("c", {"a"})};
  ExpectRefused(PrepareTaskBatch(&tasks).status(), Code::kInvalidArgument,
                "task dependencies form a cycle through a, c",
                "a task may only depend on tasks that can finish before it");
}

TEST(StoreRulesTest, EventsNeedATypeObjectDataAndAPage) {
  Event e;
  ExpectRefused(CheckEvent(e), Code::kInvalidArgument, "event type is empty",
                "name the event, e.g. \"feature.status\"");
  e.type = "x";
  EXPECT_TRUE(CheckEvent(e).ok());
  EXPECT_TRUE(CheckEventData(nullptr).ok());
  ExpectRefused(CheckEventData("text"), Code::kInvalidArgument,
                "event data must be a JSON object, got string",
                "pass an object such as {\"key\": \"value\"} or null");
  EventFilter filter;
  EXPECT_TRUE(CheckEventFilter(filter).ok());
  filter.limit = 10001;
  ExpectRefused(CheckEventFilter(filter), Code::kInvalidArgument,
                "event listing needs 1 <= limit <= 10000 and after_seq >= 0",
                "page with after_seq = the last seq you received");
  filter.limit = 1;
  filter.after_seq = -1;
  EXPECT_EQ(CheckEventFilter(filter).code(), Code::kInvalidArgument);
}

TEST(StoreRulesTest, StoredJsonReadsBadTextAsNullAndListsStrings) {
  EXPECT_TRUE(ParseStoredJson("").is_null());
  EXPECT_TRUE(ParseStoredJson("{not json").is_null());
  EXPECT_EQ(ParseStoredJson("{\"a\":1}"), (json{{"a", 1}}));
  // Bad UTF-8 is replaced, never thrown.
  EXPECT_EQ(DumpStoredJson(json("a\xff")), "\"a\xef\xbf\xbd\"");
  EXPECT_EQ(StringList(json::parse(R"(["a", 1, "b", null])")),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(StringList(json::object()).empty());
}

TEST(StoreRulesTest, AgentsCallsAndKeysNeedTheirNames) {
  AgentRecord a;
  ExpectRefused(CheckAgent(a), Code::kInvalidArgument, "agent id is empty",
                "give every agent an id");
  a.id = "coder-1";
  a.state = "asleep";
  ExpectRefused(CheckAgent(a), Code::kInvalidArgument, "agent coder-1 has unknown state 'asleep'",
                "use one of running, busy, idle, degraded, offline");
  a.state = "idle";
  EXPECT_TRUE(CheckAgent(a).ok());

  LlmCall c;
  c.status = "";
  ExpectRefused(CheckLlmCall(c), Code::kInvalidArgument, "LLM call status is empty",
                "use \"ok\" or an error code name");
  c.status = "ok";
  EXPECT_TRUE(CheckLlmCall(c).ok());

  ApiKey k;
  k.name = "ci";
  ExpectRefused(CheckApiKey(k), Code::kInvalidArgument, "an API key needs a name and a key hash",
                "name the key, e.g. 'ci', and store only the hash of its secret");
  k.key_hash = "h";
  EXPECT_TRUE(CheckApiKey(k).ok());
}

TEST(StoreRulesTest, MemoryListingLinksAndDocuments) {
  MemoryFilter filter;
  EXPECT_TRUE(CheckMemoryFilter(filter).ok());
  filter.offset = -1;
  ExpectRefused(CheckMemoryFilter(filter), Code::kInvalidArgument,
                "memory listing needs 1 <= limit <= 10000 and offset >= 0",
                "page with offset = the number of memories already read");

  MemoryLink l;
  l.from_id = "m1";
  l.to_id = "m2";
  l.type = "";
  ExpectRefused(CheckMemoryLink(l), Code::kInvalidArgument,
                "a memory link needs from_id, to_id and type",
                "name both memories and the kind of link, e.g. relates_to");
  l.type = "relates_to";
  l.strength = 1;
  EXPECT_TRUE(CheckMemoryLink(l).ok());
  for (double bad : {0.0, 1.5, std::nan("")}) {
    l.strength = bad;
    Status s = CheckMemoryLink(l);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_EQ(s.hint(), "use a weight above 0 and at most 1");
  }
  l.strength = 1.5;
  EXPECT_EQ(CheckMemoryLink(l).message(), "memory link strength 1.500000 is out of range (0, 1]");

  std::vector<DocumentWrite> writes(2);
  writes[0].doc.source = "README.md";
  ExpectRefused(CheckDocumentWrites(writes), Code::kInvalidArgument, "a document needs a source",
                "give the file's path, or a name for a text given directly");
  writes[1].doc.source = "notes";
  EXPECT_TRUE(CheckDocumentWrites(writes).ok());
}

TEST(StoreRulesTest, PendingMigrationsFailTheHealthCheck) {
  MigrationStatus st;
  st.current_version = 2;
  st.latest_version = 3;
  EXPECT_TRUE(CheckSchemaCurrent(st, "db").ok());
  st.pending.push_back(Migration{});
  ExpectRefused(CheckSchemaCurrent(st, "/data/af.db"), Code::kFailedPrecondition,
                "database /data/af.db is at schema version 2 of 3",
                "run 'agent-factory db migrate'");
}

TEST(StoreRulesTest, BackupFileIsNewAndPrivate) {
  TempDir dir;
  const std::string path = (dir.path() / "copy.db").string();
  ASSERT_TRUE(CreateBackupFile(path).ok());
  auto perms = std::filesystem::status(path).permissions();
  EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
            std::filesystem::perms::none);
  ExpectRefused(CreateBackupFile(path), Code::kAlreadyExists,
                "backup copy " + path + " already exists",
                "choose another file name, or move the existing file aside");
  EXPECT_EQ(CreateBackupFile((dir.path() / "no" / "copy.db").string()).code(), Code::kUnavailable);
}

TEST(StoreRulesTest, WriteEventsCarryTheSameFieldsOnEveryBackend) {
  Feature f = GoodFeature();
  f.id = "f1";
  f.title = "Add login";
  f.created_ms = 7;
  Event created = FeatureCreatedEvent(f);
  EXPECT_EQ(created.type, "feature.created");
  EXPECT_EQ(created.feature_id, "f1");
  EXPECT_EQ(created.ts_ms, 7);
  EXPECT_EQ(created.data, (json{{"title", "Add login"},
                                {"project", "demo"},
                                {"priority", "medium"},
                                {"status", "queued"}}));

  // The caller's data is kept; from/to/reason are the store's and win.
  Event moved = FeatureStatusEvent("f1", "queued", "planning", "go", 9,
                                   {{"by", "coordinator"}, {"to", "spoofed"}});
  EXPECT_EQ(moved.type, "feature.status");
  EXPECT_EQ(
      moved.data,
      (json{{"by", "coordinator"}, {"from", "queued"}, {"to", "planning"}, {"reason", "go"}}));
  EXPECT_EQ(FeatureStatusEvent("f1", "a", "b", "", 9, nullptr).data.size(), 3u);

  Task t = MakeTask("t1", {"t0"}, "in_progress");
  t.feature_id = "f1";
  t.title = "write it";
  t.role = "coder";
  t.assigned_agent = "coder-1";
  Event task_created = TaskCreatedEvent(t, 11);
  EXPECT_EQ(task_created.type, "task.created");
  EXPECT_EQ(task_created.task_id, "t1");
  EXPECT_EQ(task_created.feature_id, "f1");
  EXPECT_EQ(task_created.data,
            (json{{"title", "write it"}, {"role", "coder"}, {"dependencies", {"t0"}}}));
  Event task_moved = TaskStatusEvent(t, "ready", 12, json::array());
  EXPECT_EQ(task_moved.type, "task.status");
  EXPECT_EQ(task_moved.agent, "coder-1");
  EXPECT_EQ(task_moved.ts_ms, 12);
  EXPECT_EQ(task_moved.data, (json{{"from", "ready"}, {"to", "in_progress"}}));
}

}  // namespace
}  // namespace af::store_internal
