// The pipeline split in two, as `serve --no-agents` and `worker` processes run
// it: a coordinator-only pipeline and agents-only pipelines sharing one store
// and one bus (here the in-process bus object, shared inside this process).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "af/core/json_util.h"
#include "af/store/store.h"
#include "support/pipeline_harness.h"
#include "support/two_task_script.h"

namespace af::testing {
namespace {

using std::chrono::seconds;

PipelineOptions CoordinatorOnly() {
  PipelineOptions o;
  o.agent_roles.emplace();  // no agents
  return o;
}

PipelineOptions AgentsOnly() {
  PipelineOptions o;
  o.run_coordinator = false;
  o.resume = false;
  o.agent_roles = std::map<std::string, int>{};
  for (const auto& role : WorkerRoles()) (*o.agent_roles)[role] = 1;
  return o;
}

TEST(PipelineSplitTest, AgentsStoppedMidTaskAreReplacedAndTheFeatureCompletesOnce) {
  PipelineHarness h(Wire::kOpenAi);
  // The first time the coder asks for its second step of t2 (b.txt written,
  // not committed), the model holds its answer: the agents are mid-task when
  // they stop. Every other request is answered by its key.
  std::atomic<bool> held{false};
  h.fake().SetResponder([&](const RecordedRequest& r) -> std::optional<FakeReply> {
    const std::string key = TwoTaskKeyOf(r);
    if (key == "coder:b:1" && !held.exchange(true)) return FakeReply::Hang();
    return TwoTaskAnswer(key);
  });
  ASSERT_TRUE(h.OpenServices().ok());
  const PipelineDeps deps = h.services().ForPipeline();

  auto coordinator = Pipeline::Start(deps, CoordinatorOnly());
  ASSERT_TRUE(coordinator.ok()) << coordinator.status().ToString();
  auto first = Pipeline::Start(deps, AgentsOnly());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  // Agents-only: submitting is the coordinator's.
  EXPECT_EQ((*first)->Submit(PipelineHarness::Request("x")).status().code(),
            Code::kFailedPrecondition);

  auto f = (*coordinator)
               ->Submit(PipelineHarness::Request("split demo",
                                                 {"grep -qx alpha a.txt && grep -qx beta b.txt"}));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return held.load(); }, seconds(60)));
  // Mid-task: t2's edit is in the tree, uncommitted.
  EXPECT_TRUE(std::filesystem::exists(h.TreeRoot(f->id) / "b.txt"));
  (*first)->Stop();
  first->reset();

  // The job went back to the queue: a new agents-only pipeline (another
  // worker) takes it, replays t2's recorded first answer and finishes.
  auto second = Pipeline::Start(deps, AgentsOnly());
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  auto done = (*coordinator)->WaitFor(f->id, seconds(90));
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->status, "completed") << done->reason;

  // One commit per task.
  EXPECT_EQ(h.CommitTaskIds(f->id), (std::vector<std::string>{f->id + "-t2", f->id + "-t1"}));
  // Each step asked once; only the one in flight at the stop asked twice.
  std::map<std::string, int> asked;
  for (const auto& r : h.fake().requests()) ++asked[TwoTaskKeyOf(r)];
  for (const auto& [key, n] : asked) EXPECT_EQ(n, key == "coder:b:1" ? 2 : 1) << key;
  EXPECT_EQ(DistinctPaidAnswers(h.store(), f->id), TwoTaskKeys().size());

  // The agents of the two agents-only pipelines have ids of their own, with
  // this host and pid; the coordinator's records stay "coordinator-1".
  auto agents = h.store().ListAgents();
  ASSERT_TRUE(agents.ok());
  std::set<std::string> coders;
  bool has_coordinator = false;
  for (const auto& a : *agents) {
    if (a.id == "coordinator-1") {
      has_coordinator = true;
      EXPECT_FALSE(Field(a.counters, "workspaces_id", "").empty()) << a.counters.dump();
    }
    if (a.role == "coder") {
      coders.insert(a.id);
      EXPECT_EQ(a.pid, getpid());
      EXPECT_NE(a.id.find("-" + std::to_string(getpid()) + "-"), std::string::npos) << a.id;
    }
  }
  EXPECT_TRUE(has_coordinator);
  EXPECT_EQ(coders.size(), 2u);
  (*second)->Stop();
  (*coordinator)->Stop();
}

TEST(PipelineSplitTest, AgentsOnlyRefuseWorkspacesThatAreNotTheCoordinators) {
  PipelineHarness h(Wire::kOpenAi);
  ASSERT_TRUE(h.OpenServices().ok());
  const PipelineDeps deps = h.services().ForPipeline();
  const auto marker = h.data_dir() / "workspaces" / ".af-workspaces-id";

  // No coordinator yet: nothing says which directory is shared.
  auto early = Pipeline::Start(deps, AgentsOnly());
  ASSERT_FALSE(early.ok());
  EXPECT_NE(early.status().message().find("no coordinator has recorded"), std::string::npos)
      << early.status().ToString();

  auto coordinator = Pipeline::Start(deps, CoordinatorOnly());
  ASSERT_TRUE(coordinator.ok()) << coordinator.status().ToString();
  ASSERT_TRUE(std::filesystem::exists(marker));
  {
    auto ok = Pipeline::Start(deps, AgentsOnly());
    EXPECT_TRUE(ok.ok()) << ok.status().ToString();
  }

  // Another directory at the same path (say a local one where the shared
  // mount should be): named, with what to do.
  std::ofstream(marker, std::ios::trunc) << "ws-some-other-directory\n";
  auto other = Pipeline::Start(deps, AgentsOnly());
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(other.status().message().find((h.data_dir() / "workspaces").string()),
            std::string::npos)
      << other.status().ToString();
  EXPECT_NE(other.status().hint().find("--data-dir"), std::string::npos);

  std::filesystem::remove_all(h.data_dir() / "workspaces");
  auto missing = Pipeline::Start(deps, AgentsOnly());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos)
      << missing.status().ToString();

  // A role without a mailbox is no worker role.
  PipelineOptions bad = AgentsOnly();
  (*bad.agent_roles)["optimizer"] = 1;
  auto refused = Pipeline::Start(deps, std::move(bad));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().hint().find("coder"), std::string::npos);
}

}  // namespace
}  // namespace af::testing
