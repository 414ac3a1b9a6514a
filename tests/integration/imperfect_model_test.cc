// The "imperfect model" suite: the whole pipeline against a scripted model
// that makes the mistakes real models make (malformed or cut-off tool-call
// JSON, an unknown tool, another role's tool, text where a call is needed, a
// terminal tool with arguments it refuses, an edit with no or two matches, a
// premature finish, a read past the size cap), over both wire formats. Each
// mistake must be answered with a precise error and recovered from, and the
// feature must complete; the suite counts the model calls each recovery cost
// (deterministic: one per unusable reply) and prints them as a table. Replies
// that stay unusable past limits.max_reasks fail the feature with that reason.
//
// To add a case, add a row to Scenarios(): which role errs, at which of its
// turns, with which replies, what the model must be told, and what it costs.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "af/agents/pipeline.h"
#include "af/store/store.h"
#include "support/pipeline_harness.h"

namespace af {
namespace {

using json = nlohmann::json;
using testing::Call;
using testing::FakeReply;
using testing::FakeToolCall;
using testing::PipelineHarness;
using testing::RecordedRequest;
using testing::Wire;

constexpr std::chrono::seconds kWait{60};  // upper bound; WaitFor returns at the end

// --- The perfect run: plan one task, write it.txt, finish, approve ---------

constexpr int kPerfectCalls = 4;  // planner 1, coder 2, reviewer 1

FakeReply PerfectTurn(const std::string& role, int turn) {
  if (role == "planner") {
    return FakeReply::Tools({Call("submit_plan", {{"tasks", json::array({{
                                                                {"id", "t1"},
                                                                {"title", "Write the file"},
                                                                {"description", "Write it.txt."},
                                                                {"role", "coder"},
                                                                {"dependencies", json::array()},
                                                                {"files", {"it.txt"}},
                                                            }})}})});
  }
  if (role == "coder") {
    return turn == 0
               ? FakeReply::Tools({Call("write_file", {{"path", "it.txt"}, {"content", "ok\n"}})})
               : FakeReply::Tools({Call("finish", {{"summary", "wrote it.txt"}})});
  }
  return FakeReply::Tools(
      {Call("submit_review", {{"verdict", "approve"}, {"comments", {"the gate passes"}}})});
}

// --- Imperfect replies -------------------------------------------------------

FakeToolCall RawCall(std::string name, std::string raw_arguments) {
  FakeToolCall c = Call(std::move(name), json::object());
  c.raw_arguments = std::move(raw_arguments);
  return c;
}

// A reply stopped at the output limit (OpenAI finish_reason "length").
FakeReply CutOff(FakeReply r) {
  r.stop_reason = "max_tokens";
  return r;
}

struct Scenario {
  std::string name;
  std::string role;  // whose conversation goes wrong: planner | coder | reviewer
  int at_turn = 0;   // before which of its perfect turns the replies come
  std::vector<FakeReply> replies;
  // Phrases the answer to the first reply must hold (tool results and user
  // text sent back after it).
  std::vector<std::string> told;
  int extra_calls = 0;  // model calls beyond the perfect run
};

std::vector<Scenario> Scenarios() {
  const std::string big_write = "{\"path\": \"big.txt\", \"content\": \"line 1\\nline 2\\nline";
  std::string long_text;  // 2,000 lines, about 26,000 characters: past read_file's cap
  for (int i = 1; i <= 2000; ++i) long_text += "line " + std::to_string(i) + " of long.txt\n";
  return {
      {"perfect run", "coder", 0, {}, {}, 0},
      {"malformed JSON",
       "coder",
       0,
       {FakeReply::Tools({RawCall("write_file", "{\"path\": \"it.txt\" \"content\": \"ok\"}")})},
       {"arguments of your write_file call could not be read", "not valid JSON", "column",
        "They began: '{\"path\": \"it.txt\" \"content\"",
        "Send the call again with a JSON object matching the write_file schema"},
       1},
      {"truncated call (max_tokens)",
       "coder",
       0,
       {CutOff(FakeReply::Tools({RawCall("write_file", big_write)}))},
       {"cut off at the output limit (16384 tokens)", "write_file", "not run", "edit_file"},
       1},
      {"cut off after a complete call",
       "coder",
       0,
       {CutOff(FakeReply::Tools({Call("write_file", {{"path", "it.txt"}, {"content", "ok\n"}}),
                                 RawCall("write_file", big_write)}))},
       {"cut off at the output limit"},
       1},
      {"unknown tool",
       "coder",
       0,
       {FakeReply::Tools({Call("teleport", {{"to", "mars"}})})},
       {"the coder has no tool 'teleport'", "its tools are: list_files, read_file, write_file",
        "call finish with a summary", "ends your turn"},
       1},
      {"text instead of a call",
       "coder",
       1,
       {FakeReply::Text("The file is written; I think we are done.")},
       {"Your reply had no tool call", "its tools: list_files", "call finish"},
       1},
      {"planner calls finish",
       "planner",
       0,
       {FakeReply::Tools({Call("finish", {{"summary", "planned it in my head"}})})},
       {"the planner has no tool 'finish'", "call submit_plan with the plan's tasks"},
       1},
      {"planner submits an empty plan",
       "planner",
       0,
       {FakeReply::Tools({Call("submit_plan", {{"tasks", json::array()}})})},
       {"the plan has no tasks", "call submit_plan again"},
       1},
      {"planner text cut off",
       "planner",
       0,
       {CutOff(FakeReply::Text("Let me think about the plan in great detail. First"))},
       {"cut off at the output limit (4096 tokens)", "had no tool call", "submit_plan"},
       1},
      {"truncated plan",
       "planner",
       0,
       {CutOff(FakeReply::Tools({RawCall("submit_plan", "{\"tasks\": [{\"id\": \"t1\", \"ti")}))},
       {"cut off at the output limit", "submit_plan", "Send it again, shorter"},
       1},
      {"reviewer calls write_file",
       "reviewer",
       0,
       {FakeReply::Tools({Call("write_file", {{"path", "it.txt"}, {"content", "better\n"}})})},
       {"the reviewer has no tool 'write_file'", "call submit_review with a verdict"},
       1},
      {"reviewer calls finish",
       "reviewer",
       0,
       {FakeReply::Tools({Call("finish", {{"summary", "looks good"}})})},
       {"the reviewer has no tool 'finish'", "submit_review"},
       1},
      {"reviewer's verdict is not one",
       "reviewer",
       0,
       {FakeReply::Tools(
           {Call("submit_review", {{"verdict", "lgtm"}, {"comments", json::array()}})})},
       {"verdict must be 'approve' or 'request_changes'"},
       1},
      // Tool mistakes: each is answered by the tool with what the model needs
      // to do better, and the next reply does.
      {"edit with no match",
       "coder",
       1,
       {FakeReply::Tools(
           {Call("edit_file", {{"path", "it.txt"}, {"old_text", "okay"}, {"new_text", "ok"}})})},
       {"old_text was not found in it.txt"},
       1},
      {"edit with two matches",
       "coder",
       1,
       {FakeReply::Tools(
            {Call("write_file", {{"path", "twice.txt"}, {"content", "a\na\n"}}),
             Call("edit_file", {{"path", "twice.txt"}, {"old_text", "a"}, {"new_text", "b"}})}),
        FakeReply::Tools(
            {Call("edit_file",
                  {{"path", "twice.txt"}, {"old_text", "a\na\n"}, {"new_text", "b\na\n"}})})},
       {"old_text occurs 2 times in twice.txt", "starting at lines 1, 2"},
       2},
      {"premature finish",
       "coder",
       0,
       {FakeReply::Tools({Call("finish", {{"summary", "done already"}})})},
       {"finish refused, once", "this task changed no file", "the task's checks fail",
        "call finish again"},
       1},
      {"long file read",
       "coder",
       0,
       {FakeReply::Tools({Call("write_file", {{"path", "long.txt"}, {"content", long_text}}),
                          Call("read_file", {{"path", "long.txt"}})}),
        FakeReply::Tools({Call("read_file", {{"path", "long.txt"}, {"start_line", 1900}})})},
       {"    1\tline 1 of long.txt\n", "more lines not shown", "Read on with start_line="},
       2},
      // limits.max_reasks (3) unusable replies, progress, three more: only
      // replies in a row count.
      {"3 bad, progress, 3 bad",
       "coder",
       0,
       {FakeReply::Text("thinking"), FakeReply::Tools({Call("teleport", json::object())}),
        FakeReply::Tools({RawCall("write_file", "{oops")}),
        FakeReply::Tools({Call("list_files", {{"path", "."}})}), FakeReply::Text("still thinking"),
        FakeReply::Text("and more"), FakeReply::Tools({RawCall("finish", "{\"summary\": ")})},
       {"Your reply had no tool call"},
       7},
  };
}

// Everything sent back to the model after its last reply: tool results and
// user text, in either wire format.
std::string ToldAfterLastReply(const RecordedRequest& req) {
  const json& messages = req.body.value("messages", json::array());
  size_t from = 0;
  for (size_t i = 0; i < messages.size(); ++i)
    if (messages[i].value("role", "") == "assistant") from = i + 1;
  std::string out;
  std::function<void(const json&)> add = [&](const json& content) {
    if (content.is_string()) {
      out += content.get<std::string>() + "\n";
    } else if (content.is_array()) {
      for (const json& b : content) {
        if (!b.is_object()) continue;
        if (b.contains("text")) add(b["text"]);
        if (b.contains("content")) add(b["content"]);  // an Anthropic tool_result
      }
    }
  };
  for (size_t i = from; i < messages.size(); ++i) add(messages[i].value("content", json()));
  return out;
}

// Answers as `s` says: the perfect run, with s.replies spliced into s.role's
// conversation before its turn s.at_turn. Records what the model was told
// right after the first spliced reply.
void Install(PipelineHarness& h, const Scenario& s, std::mutex* mu, std::string* told) {
  h.fake().SetResponder([s, mu, told](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    if (role.empty()) return std::nullopt;
    int turn = testing::AssistantTurns(req);
    if (role == s.role) {
      const int n = static_cast<int>(s.replies.size());
      if (turn == s.at_turn + 1 && n > 0) {
        std::lock_guard lock(*mu);
        *told = ToldAfterLastReply(req);
      }
      if (turn >= s.at_turn && turn < s.at_turn + n) return s.replies[turn - s.at_turn];
      if (turn >= s.at_turn + n) turn -= n;
    }
    return PerfectTurn(role, turn);
  });
}

// Installs scenario `s`, starts `h`, submits one feature titled `title` (gate
// `true`) and waits for its end. `mu` and `told` as for Install.
Result<Feature> RunOne(PipelineHarness& h, const Scenario& s, const std::string& title,
                       std::mutex* mu, std::string* told) {
  Install(h, s, mu, told);
  AF_RETURN_IF_ERROR(h.Start());
  AF_ASSIGN_OR_RETURN(Feature submitted,
                      h.pipeline().Submit(PipelineHarness::Request(title, {"true"})));
  return h.pipeline().WaitFor(submitted.id, kWait);
}

std::string FailureMessage(PipelineHarness& h, const std::string& feature_id) {
  for (const auto& e : h.Events(feature_id))
    if (e.type == "feature.status" && e.data.value("to", "") == "failed")
      return e.data.value("message", "");
  return "(no failed event)";
}

// The files on the feature's branch, one per line.
std::string BranchFiles(PipelineHarness& h, const std::string& feature_id) {
  auto r = testing::RunCommand({"/usr/bin/git", "-C", h.WorkspaceRoot().string(), "ls-tree", "-r",
                                "--name-only", "af/" + feature_id});
  return r.exit_code == 0 ? r.out : "(git ls-tree failed: " + r.err + ")";
}

class ImperfectModel : public ::testing::TestWithParam<Wire> {};

TEST_P(ImperfectModel, EveryMistakeIsRecoveredAndItsCostCounted) {
  struct Row {
    std::string name;
    int extra = 0;
    std::string status;
    int64_t sent = 0, baseline = 0;  // estimated input tokens, all calls
  };
  std::vector<Row> table;
  for (const Scenario& s : Scenarios()) {
    SCOPED_TRACE(s.name);
    PipelineHarness h(GetParam());
    std::mutex mu;
    std::string told;  // guarded by mu
    Install(h, s, &mu, &told);
    ASSERT_TRUE(h.Start().ok());
    auto submitted = h.pipeline().Submit(
        PipelineHarness::Request("Imperfect model: " + s.name, {"test \"$(cat it.txt)\" = ok"}));
    ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
    auto f = h.pipeline().WaitFor(submitted->id, kWait);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->status, "completed") << f->reason << ": " << FailureMessage(h, f->id);
    const int extra = static_cast<int>(h.fake().request_count()) - kPerfectCalls;
    EXPECT_EQ(extra, s.extra_calls);
    {
      std::lock_guard lock(mu);
      for (const std::string& phrase : s.told)
        EXPECT_NE(told.find(phrase), std::string::npos) << "missing: " << phrase << "\ntold:\n"
                                                        << told;
    }
    // What was delivered: the file, and nothing a call cut off at the output
    // limit would have written.
    const std::string files = BranchFiles(h, f->id);
    EXPECT_NE(files.find("it.txt\n"), std::string::npos) << files;
    EXPECT_EQ(files.find("big.txt"), std::string::npos) << files;
    Row row{s.name, extra, f->status};
    for (const auto& e : h.Events(f->id)) {
      if (e.type != "llm.call") continue;
      row.sent += e.data.value("context_tokens", int64_t{0});
      row.baseline += e.data.value("uncondensed_tokens", int64_t{0});
    }
    EXPECT_GT(row.sent, 0);
    EXPECT_LE(row.sent, row.baseline);  // condensing never adds
    table.push_back(row);
    h.Stop();
  }
  std::printf("[ info ] imperfect model, %s wire: model calls each recovery cost\n",
              testing::WireName(GetParam()).c_str());
  std::printf("[ info ]   %-34s %6s %8s %9s %6s  %s\n", "mistake", "extra", "sent", "baseline",
              "ratio", "feature");
  for (const Row& r : table)
    std::printf("[ info ]   %-34s %6d %8lld %9lld %5.2fx  %s\n", r.name.c_str(), r.extra,
                static_cast<long long>(r.sent), static_cast<long long>(r.baseline),
                r.baseline > 0 ? static_cast<double>(r.sent) / r.baseline : 0.0, r.status.c_str());
}

// Unusable replies past limits.max_reasks fail the feature with that reason
// and the last problem, after exactly max_reasks re-asks: not "completed",
// not a crash, not the step limit.
TEST_P(ImperfectModel, TooManyUnusableRepliesInARowFailTheFeature) {
  PipelineHarness h(GetParam());
  h.config().limits.max_reasks = 2;
  Scenario s{"always malformed",
             "coder",
             0,
             std::vector<FakeReply>(10, FakeReply::Tools({RawCall("write_file", "{\"path\": ")})),
             {},
             0};
  std::mutex mu;
  std::string told;
  auto f = RunOne(h, s, "Never usable", &mu, &told);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->status, "failed");
  EXPECT_EQ(f->reason, "unusable_replies");
  const std::string message = FailureMessage(h, f->id);
  EXPECT_NE(message.find("unusable model replies"), std::string::npos) << message;
  EXPECT_NE(message.find("limits.max_reasks"), std::string::npos) << message;
  EXPECT_NE(message.find("write_file"), std::string::npos) << message;
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
  // The planner's call, then the first reply and its 2 re-asks.
  EXPECT_EQ(h.fake().request_count(), 1u + 3u);
}

// What the model said instead of calling a tool reaches the user: a question
// it kept asking is quoted in the failure and in reply.refused events (the
// re-ask the product sent is not what the user needs to read).
TEST_P(ImperfectModel, AModelsOwnWordsAreQuotedWhenItNeverCallsATool) {
  PipelineHarness h(GetParam());
  h.config().limits.max_reasks = 1;
  const std::string question = "Before I start: should clamp accept floats?";
  Scenario s{
      "always asks", "coder", 0, std::vector<FakeReply>(5, FakeReply::Text(question)), {}, 0};
  std::mutex mu;
  std::string told;
  auto f = RunOne(h, s, "Asks", &mu, &told);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->reason, "unusable_replies");
  const std::string message = FailureMessage(h, f->id);
  EXPECT_NE(message.find("had no tool call; it said '" + question + "'"), std::string::npos)
      << message;
  int refused = 0;
  for (const auto& e : h.Events(f->id)) {
    if (e.type != "reply.refused") continue;
    ++refused;
    EXPECT_EQ(e.agent.rfind("coder", 0), 0u) << e.agent;
    EXPECT_NE(e.data.value("problem", "").find(question), std::string::npos) << e.data.dump();
  }
  EXPECT_EQ(refused, 2);  // the first reply and its one re-ask
}

// A reply far longer than the output limit (a server that ignores
// max_tokens, a model repeating itself) is kept cut in the conversation, so
// the later requests stay small; the feature goes on and completes.
TEST_P(ImperfectModel, ARunawayReplyIsCutInTheConversation) {
  PipelineHarness h(GetParam());
  std::string runaway;
  while (runaway.size() < 2'000'000) runaway += "I will now write the file. ";
  Scenario s{"runaway text", "coder", 0, {FakeReply::Text(runaway)}, {}, 1};
  std::mutex mu;
  std::string told;
  auto f = RunOne(h, s, "Runaway", &mu, &told);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->status, "completed") << f->reason << ": " << FailureMessage(h, f->id);
  size_t later_coder_requests = 0;
  for (const auto& req : h.fake().requests()) {
    if (testing::AgentRoleOf(req) != "coder" || testing::AssistantTurns(req) == 0) continue;
    ++later_coder_requests;
    const std::string body = req.body.dump();
    EXPECT_LT(body.size(), 200'000u);
    EXPECT_NE(body.find("was cut: it was longer than the 16384-token output limit"),
              std::string::npos);
  }
  EXPECT_EQ(later_coder_requests, 2u);
}

// A tool call written as text (a local server without native tool-call
// parsing) is named as such, and the hint says how to turn parsing on.
TEST_P(ImperfectModel, AToolCallWrittenAsTextIsNamedWithTheServersFix) {
  PipelineHarness h(GetParam());
  h.config().limits.max_reasks = 0;
  const std::string text =
      "<tool_call>{\"name\": \"write_file\", \"arguments\": {\"path\": \"it.txt\"}}</tool_call>";
  Scenario s{"call as text", "coder", 0, {FakeReply::Text(text)}, {}, 0};
  std::mutex mu;
  std::string told;
  auto f = RunOne(h, s, "Text call", &mu, &told);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->reason, "unusable_replies");
  const std::string message = FailureMessage(h, f->id);
  EXPECT_NE(message.find("wrote a tool call as text"), std::string::npos) << message;
  std::string hint;
  for (const auto& e : h.Events(f->id))
    if (e.type == "feature.status" && e.data.value("to", "") == "failed")
      hint = e.data.value("hint", "");
  EXPECT_NE(hint.find("--jinja"), std::string::npos) << hint;
}

// Each role's calls carry its output limit: the coder's default is large
// enough for a whole-file write.
TEST_P(ImperfectModel, CoderCallsHaveRoomForAWholeFile) {
  PipelineHarness h(GetParam());
  std::mutex mu;
  std::string told;
  Install(h, Scenario{"perfect", "coder", 0, {}, {}, 0}, &mu, &told);
  ASSERT_TRUE(h.Start().ok());
  auto submitted = h.pipeline().Submit(PipelineHarness::Request("Sizes", {"true"}));
  ASSERT_TRUE(submitted.ok());
  auto f = h.pipeline().WaitFor(submitted->id, kWait);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->status, "completed") << f->reason;
  int coder_calls = 0;
  for (const auto& req : h.fake().requests()) {
    const std::string role = testing::AgentRoleOf(req);
    if (role.empty()) continue;
    EXPECT_EQ(req.body.value("max_tokens", 0), role == "coder" ? 16384 : 4096) << role;
    coder_calls += role == "coder";
  }
  EXPECT_EQ(coder_calls, 2);
}

// Tokens over a session as long as real models run (SWE-agent and OpenHands
// trajectories take 20-40 turns): the coder runs 26 commands whose outputs
// are about 1,000 tokens each (a test run, a grep) before it writes and
// finishes. Resending the whole history every turn (the baseline) grows with
// the square of the turns; the stubs of outputs older than the last six keep
// each request near constant. The figures are request sizes measured by the
// same estimate on both sides, so the ratio is deterministic.
TEST_P(ImperfectModel, ALongSessionCostsUnderHalfTheFullHistoryBaseline) {
  constexpr int kCommands = 26;
  PipelineHarness h(GetParam());
  h.fake().SetResponder([](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    if (role.empty()) return std::nullopt;
    const int turn = testing::AssistantTurns(req);
    if (role != "coder") return PerfectTurn(role, turn);
    if (turn >= kCommands) return PerfectTurn(role, turn - kCommands);
    const std::string from = std::to_string(turn * 10000);
    return FakeReply::Tools({Call(
        "run_command", {{"command", "seq " + from + " " + std::to_string(turn * 10000 + 700)}})});
  });
  ASSERT_TRUE(h.Start().ok());
  auto submitted = h.pipeline().Submit(
      PipelineHarness::Request("A long session", {"test \"$(cat it.txt)\" = ok"}));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  auto f = h.pipeline().WaitFor(submitted->id, kWait);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->status, "completed") << f->reason << ": " << FailureMessage(h, f->id);
  EXPECT_EQ(h.fake().request_count(), static_cast<size_t>(kPerfectCalls + kCommands));
  int64_t sent = 0, baseline = 0, coder_sent = 0, coder_baseline = 0;
  for (const auto& e : h.Events(f->id)) {
    if (e.type != "llm.call") continue;
    const int64_t s = e.data.value("context_tokens", int64_t{0});
    const int64_t b = e.data.value("uncondensed_tokens", int64_t{0});
    sent += s;
    baseline += b;
    if (e.data.value("role", "") == "coder") {
      coder_sent += s;
      coder_baseline += b;
    }
  }
  ASSERT_GT(baseline, 0);
  const double ratio = static_cast<double>(sent) / static_cast<double>(baseline);
  std::printf(
      "[ info ] long session, %s wire: %d calls, %lld tokens sent, baseline %lld: %.2fx "
      "(coder %lld / %lld)\n",
      testing::WireName(GetParam()).c_str(), kPerfectCalls + kCommands,
      static_cast<long long>(sent), static_cast<long long>(baseline), ratio,
      static_cast<long long>(coder_sent), static_cast<long long>(coder_baseline));
  // The coder's last request still carries the newest output in full (a
  // line only the output holds, not the command), and the oldest as a stub.
  std::string coder_last;
  for (const auto& req : h.fake().requests())
    if (testing::AgentRoleOf(req) == "coder") coder_last = req.body.dump();
  auto output_line = [](int turn) { return "\\n" + std::to_string(turn * 10000 + 350) + "\\n"; };
  EXPECT_NE(coder_last.find(output_line(kCommands - 1)), std::string::npos);
  EXPECT_EQ(coder_last.find(output_line(1)), std::string::npos);
  EXPECT_LE(ratio, 0.5);
}

INSTANTIATE_TEST_SUITE_P(Wires, ImperfectModel, ::testing::Values(Wire::kOpenAi, Wire::kAnthropic),
                         [](const ::testing::TestParamInfo<Wire>& info) {
                           return testing::WireName(info.param);
                         });

}  // namespace
}  // namespace af
