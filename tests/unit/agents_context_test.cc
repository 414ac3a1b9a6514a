// What the agents are given to read: gate outputs cut head and tail, diffs
// without build outputs, plans for one shared worktree, conversations
// condensed by budget (stubs, summaries), the replay provider's measured
// usage and answers to summaries, and the repository map.
#include <gtest/gtest.h>

#include <iostream>
#include <sstream>

#include "af/agents/optimizer.h"
#include "af/agents/repo_map.h"
#include "af/agents/tools.h"
#include "af/core/embedded.h"
#include "af/llm/llm_client.h"
#include "af/llm/pricing.h"
#include "llm/replay.h"
#include "llm/wire_codec.h"
#include "support/test_util.h"

namespace af {
namespace {

using json = nlohmann::json;

bool Has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

// --- Fix tasks: gate output head and tail ----------------------------------

TEST(ContextTest, DiffLeavesOutBuildOutputs) {
  const std::string diff =
      "diff --git a/src/a.py b/src/a.py\nnew file mode 100644\n--- /dev/null\n+++ b/src/a.py\n"
      "@@ -0,0 +1 @@\n+REAL-CHANGE\n"
      "diff --git a/build/out.o b/build/out.o\nBinary files differ\n"
      "diff --git a/src/__pycache__/a.pyc b/src/__pycache__/a.pyc\n+CACHE-NOISE\n"
      "diff --git a/README.md b/README.md\n+DOC-CHANGE\n";
  const std::string kept = DiffWithoutBuildOutputs(diff);
  EXPECT_TRUE(Has(kept, "REAL-CHANGE"));
  EXPECT_TRUE(Has(kept, "DOC-CHANGE"));
  EXPECT_FALSE(Has(kept, "CACHE-NOISE")) << kept;
  EXPECT_FALSE(Has(kept, "Binary files differ")) << kept;
  EXPECT_TRUE(Has(kept, "2 build output or cache file(s) left out")) << kept;
  EXPECT_EQ(DiffWithoutBuildOutputs("diff --git a/x b/x\n+y\n"), "diff --git a/x b/x\n+y\n");
}

TEST(ContextTest, ReviewerAndFixContextsShowTheRealChangeAndSiblingsFiles) {
  Optimizer opt(ContextBudget{}, {}, nullptr);
  ContextInput review;
  review.role = "reviewer";
  review.request = {{"title", "T"}};
  review.diff =
      "diff --git a/a.py b/a.py\n+REAL\ndiff --git a/build/x.o b/build/x.o\n+BUILD-NOISE\n";
  std::string text = opt.BuildContext(review, nullptr);
  EXPECT_TRUE(Has(text, "+REAL"));
  EXPECT_FALSE(Has(text, "BUILD-NOISE"));

  ContextInput coder;
  coder.role = "coder";
  coder.request = {{"title", "T"}};
  coder.task_title = "Write a";
  coder.task_files = {"a.py"};
  coder.sibling_files = {{"Write b", {"b.py", "b_util.py"}}};
  text = opt.BuildContext(coder, nullptr);
  EXPECT_TRUE(Has(text, "do not edit the files they own")) << text;
  EXPECT_TRUE(Has(text, "- Write b: b.py b_util.py")) << text;

  ContextInput fix = coder;
  fix.sibling_files.clear();
  fix.changed_files = {"a.py", "build/x.o"};
  fix.diff = "diff --git a/a.py b/a.py\n+FEATURE-SO-FAR\n";
  text = opt.BuildContext(fix, nullptr);
  EXPECT_TRUE(Has(text, "Files the feature changed so far:\n- a.py\n")) << text;
  EXPECT_FALSE(Has(text, "build/x.o"));
  EXPECT_TRUE(Has(text, "+FEATURE-SO-FAR"));
}

// --- Plans for one shared worktree ---------------------------------------------

json PlanTask(std::string id, std::vector<std::string> files, std::vector<std::string> deps = {}) {
  json t = {{"id", id},
            {"title", "T " + id},
            {"description", "do " + id},
            {"role", "coder"},
            {"dependencies", deps}};
  t["files"] = files;
  return t;
}

TEST(PlanCheckTest, ParallelTasksMayNotShareFilesAndMustListThem) {
  // Parallel, disjoint files: fine.
  EXPECT_TRUE(CheckPlan({{"tasks", {PlanTask("a", {"a.py"}), PlanTask("b", {"b.py"})}}}).empty());
  // Parallel, the same file (spelled differently): refused, naming both tasks.
  auto same =
      Joined(CheckPlan({{"tasks", {PlanTask("a", {"src/x.py"}), PlanTask("b", {"./src/x.py"})}}}));
  EXPECT_TRUE(Has(same, "tasks 'a' and 'b' may run in parallel")) << same;
  EXPECT_TRUE(Has(same, "'src/x.py'")) << same;
  // A directory and a file in it overlap.
  auto dir = Joined(CheckPlan({{"tasks", {PlanTask("a", {"src/"}), PlanTask("b", {"src/x.py"})}}}));
  EXPECT_TRUE(Has(dir, "may run in parallel")) << dir;
  // Ordered, even through another task: they may share.
  EXPECT_TRUE(CheckPlan({{"tasks",
                          {PlanTask("a", {"x.py"}), PlanTask("b", {"y.py"}, {"a"}),
                           PlanTask("c", {"x.py"}, {"b"})}}})
                  .empty());
  // c and b both follow a but not each other: parallel.
  auto fork = Joined(CheckPlan({{"tasks",
                                 {PlanTask("a", {"x.py"}), PlanTask("b", {"y.py"}, {"a"}),
                                  PlanTask("c", {"y.py"}, {"a"})}}}));
  EXPECT_TRUE(Has(fork, "tasks 'b' and 'c'")) << fork;
  // A parallel task without files: refused; a lone or ordered one needs none.
  auto nofiles = Joined(CheckPlan({{"tasks", {PlanTask("a", {"a.py"}), PlanTask("b", {})}}}));
  EXPECT_TRUE(Has(nofiles, "task 'b' may run in parallel with other tasks but lists no 'files'"))
      << nofiles;
  EXPECT_TRUE(CheckPlan({{"tasks", {PlanTask("a", {})}}}).empty());
  EXPECT_TRUE(CheckPlan({{"tasks", {PlanTask("a", {}), PlanTask("b", {}, {"a"})}}}).empty());
}

TEST(PlanCheckTest, TheRecordedExamplePlansPass) {
  auto text = FindEmbeddedFile("examples/replay/examples.jsonl");
  ASSERT_TRUE(text.has_value());
  std::istringstream lines{std::string(*text)};
  int plans = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    json entry = json::parse(line);
    for (const auto& call : entry["response"].value("tool_calls", json::array())) {
      if (call.value("name", "") != "submit_plan") continue;
      ++plans;
      EXPECT_EQ(Joined(CheckPlan(call["arguments"])), "") << line.substr(0, 200);
    }
  }
  EXPECT_GE(plans, 3);
}

// --- Condensing by budget ------------------------------------------------------

LlmRequest Reads(int turns, size_t chars_each) {
  LlmRequest r;
  r.system = "system";
  r.messages.push_back(Message::User("first message stays whole"));
  for (int i = 0; i < turns; ++i) {
    const std::string id = "c" + std::to_string(i);
    r.messages.push_back(
        Message::Assistant("", {{id, "read_file", {{"path", "f" + std::to_string(i) + ".py"}}}}));
    std::string body;
    while (body.size() < chars_each) body += "line of file " + std::to_string(i) + "\n";
    r.messages.push_back(Message::ToolResult(id, body));
  }
  return r;
}

TEST(FitTest, OlderToolOutputsBecomeStubsWithinTheWindow) {
  Optimizer opt(ContextBudget{200'000, 0.75, 0.90}, {}, nullptr);
  LlmRequest req = Reads(20, 2000);
  const size_t count = req.messages.size();
  FitReport report;
  ASSERT_TRUE(opt.Fit(req, {}, &report).ok());
  EXPECT_EQ(req.messages.size(), count);  // the turn count stays
  EXPECT_EQ(report.stubbed, 14);
  EXPECT_LT(report.tokens_after, report.tokens_before / 2);
  EXPECT_FALSE(report.summarized);
  // The oldest 14 of 20 outputs are stubs naming the call; the last six stay.
  EXPECT_TRUE(Has(req.messages[2].text, "[read_file f0.py: ")) << req.messages[2].text;
  EXPECT_TRUE(Has(req.messages[2].text, " lines, shown earlier]"));
  EXPECT_TRUE(Has(req.messages[28].text, "[read_file f13.py"));
  EXPECT_TRUE(Has(req.messages[30].text, "line of file 14\n"));
  EXPECT_TRUE(Has(req.messages.back().text, "line of file 19\n"));
}

// Tokens per conversation against resending it whole every turn: a coder that
// reads a 2,000-character file and writes a 1,500-character one on each of 30
// turns sends less than half the baseline.
TEST(FitTest, ALongConversationSendsUnderHalfTheBaseline) {
  Optimizer opt(ContextBudget{200'000, 0.75, 0.90}, {}, nullptr);
  LlmRequest conv;
  conv.system = std::string(4000, 's');                            // system prompt and tools
  conv.messages.push_back(Message::User(std::string(6000, 'c')));  // the context
  int64_t sent = 0, baseline = 0;
  for (int turn = 0; turn < 30; ++turn) {
    LlmRequest req = conv;
    FitReport report;
    ASSERT_TRUE(opt.Fit(req, {}, &report).ok());
    sent += report.tokens_after;
    baseline += report.tokens_before;
    const std::string r = "r" + std::to_string(turn), w = "w" + std::to_string(turn);
    conv.messages.push_back(
        Message::Assistant("Next I read and write.",
                           {{r, "read_file", {{"path", "src/m" + std::to_string(turn) + ".py"}}},
                            {w,
                             "write_file",
                             {{"path", "src/n" + std::to_string(turn) + ".py"},
                              {"content", std::string(1500, 'w')}}}}));
    conv.messages.push_back(Message::ToolResult(r, std::string(2000, 'f')));
    conv.messages.push_back(Message::ToolResult(w, "wrote it"));
  }
  const double ratio = static_cast<double>(sent) / static_cast<double>(baseline);
  std::cout << "30 turns: " << sent << " tokens sent against a baseline of " << baseline << " ("
            << ratio << "x)\n";
  EXPECT_LE(ratio, 0.5);
}

TEST(FitTest, OldWrittenFileContentsBecomeStubs) {
  Optimizer opt(ContextBudget{200'000, 0.75, 0.90}, {}, nullptr);
  LlmRequest req;
  req.messages.push_back(Message::User("task"));
  req.messages.push_back(Message::Assistant(
      "", {{"w", "write_file", {{"path", "big.py"}, {"content", std::string(5000, 'x')}}}}));
  req.messages.push_back(Message::ToolResult("w", "wrote big.py"));
  LlmRequest later = Reads(7, 300);
  for (size_t i = 1; i < later.messages.size(); ++i) req.messages.push_back(later.messages[i]);
  ASSERT_TRUE(opt.Fit(req).ok());
  EXPECT_EQ(req.messages[1].tool_calls[0].arguments["content"], "[1 lines, written earlier]");
  EXPECT_EQ(req.messages[1].tool_calls[0].arguments["path"], "big.py");
}

TEST(FitTest, AbovePreserveAtAnOlderSpanIsSummarisedOnceAndReused) {
  Optimizer opt(ContextBudget{10'000, 0.75, 0.90}, {}, nullptr);
  // Forty turns of short outputs and long reasoning: stubs alone cannot fit.
  LlmRequest base;
  base.messages.push_back(Message::User("the task"));
  for (int i = 0; i < 40; ++i) {
    const std::string id = "c" + std::to_string(i);
    base.messages.push_back(
        Message::Assistant(std::string(1000, 'r'), {{id, "run_command", {{"command", "make"}}}}));
    base.messages.push_back(Message::ToolResult(id, "ok"));
  }
  ASSERT_GT(EstimateTokens(base), 7'500);
  int calls = 0;
  LlmRequest asked;
  Summarizer summarize = [&](const LlmRequest& r) -> Result<std::string> {
    ++calls;
    asked = r;
    return std::string("SUMMARY: ran make forty times");
  };
  LlmRequest req = base;
  FitReport report;
  ASSERT_TRUE(opt.Fit(req, summarize, &report).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(report.summarized);
  EXPECT_TRUE(report.summary_called);
  EXPECT_LE(report.tokens_after, 7'500);
  EXPECT_EQ(req.messages.size(), base.messages.size());
  EXPECT_TRUE(Has(req.messages[0].text, "the task"));
  EXPECT_TRUE(Has(req.messages[0].text, "SUMMARY: ran make forty times"));
  EXPECT_EQ(req.messages[1].text, "");
  EXPECT_EQ(req.messages[1].tool_calls[0].arguments, (json{{"command", "make"}}));
  EXPECT_EQ(req.messages.back().text, "ok");  // the last turns stay
  // The summarisation request: its own role, the transcript to condense.
  EXPECT_EQ(asked.agent_role, kSummarizerRole);
  EXPECT_TRUE(asked.tools.empty());
  EXPECT_TRUE(Has(asked.messages[0].text, "CALL run_command"));

  // The next turn condenses the same span: the summary is reused.
  LlmRequest next = base;
  next.messages.push_back(Message::Assistant("", {{"x", "list_files", {{"path", "."}}}}));
  next.messages.push_back(Message::ToolResult("x", "a\nb"));
  FitReport again;
  ASSERT_TRUE(opt.Fit(next, summarize, &again).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(again.summarized);
  EXPECT_FALSE(again.summary_called);

  // A failing summarizer: long texts are cut instead, and the report says why.
  Optimizer fresh(ContextBudget{10'000, 0.75, 0.90}, {}, nullptr);
  LlmRequest cut = base;
  FitReport fallback;
  ASSERT_TRUE(
      fresh
          .Fit(
              cut,
              [](const LlmRequest&) -> Result<std::string> { return Unavailable("provider down"); },
              &fallback)
          .ok());
  EXPECT_FALSE(fallback.summarized);
  EXPECT_TRUE(Has(fallback.fallback, "provider down")) << fallback.fallback;
  EXPECT_TRUE(Has(cut.messages[1].text, "[condensed:"));
}

// --- The replay provider: measured usage, summaries -------------------------

TEST(ReplayContextTest, UsageIsMeasuredFromTheRequestAndSummariesAreAnswered) {
  testing::TempDir dir;
  dir.Write(
      "rec.jsonl",
      R"({"match": {"role": "coder"}, "response": {"text": "hi", "usage": {"input_tokens": 99999, "output_tokens": 99999}}}
{"match": {"contains": "npm"}, "response": {"text": "matched by text"}}
)");
  LlmOptions o;
  o.provider = "replay";
  o.replay_file = (dir.path() / "rec.jsonl").string();
  auto client = LlmClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  LlmRequest req;
  req.agent_role = "coder";
  req.system = std::string(4000, 's');
  req.messages.push_back(Message::User("write the code"));
  auto r = (*client)->Complete(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->usage.input_tokens, EstimateTokens(req));
  EXPECT_GT(r->usage.input_tokens, 1000);
  EXPECT_EQ(r->usage.output_tokens, EstimateTokens(*r));

  // A summarisation request quoting "npm" is not answered by the text match,
  // but by a local summary listing the calls.
  LlmRequest ask;
  ask.agent_role = kSummarizerRole;
  ask.messages.push_back(
      Message::User("# Transcript to summarise\nCALL run_command {\"command\":\"npm test\"}\n"));
  auto s = (*client)->Complete(ask);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_NE(s->text, "matched by text");
  EXPECT_TRUE(Has(s->text, "run_command {\"command\":\"npm test\"}")) << s->text;
}

// --- Prompt caching (Anthropic) -------------------------------------------------

TEST(PromptCacheTest, CachedInputIsReadFromTheUsageAndPriced) {
  auto codec = llm::MakeAnthropicCodec();
  json body = {{"content", json::array({{{"type", "text"}, {"text", "hi"}}})},
               {"usage",
                {{"input_tokens", 10},
                 {"output_tokens", 2},
                 {"cache_read_input_tokens", 500},
                 {"cache_creation_input_tokens", 40}}}};
  auto r = codec->DecodeResponse(body);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->usage.input_tokens, 10);
  EXPECT_EQ(r->usage.cache_read_tokens, 500);
  EXPECT_EQ(r->usage.cache_creation_tokens, 40);
  // Reads at a tenth of the input rate, writes at 1.25 times it.
  Usage read{0, 0, 1'000'000, 0}, write{0, 0, 0, 1'000'000};
  EXPECT_DOUBLE_EQ(CostUsd("anthropic", "claude-sonnet-4-5", read),
                   0.1 * CostUsd("anthropic", "claude-sonnet-4-5", {1'000'000, 0}));
  EXPECT_DOUBLE_EQ(CostUsd("anthropic", "claude-sonnet-4-5", write),
                   1.25 * CostUsd("anthropic", "claude-sonnet-4-5", {1'000'000, 0}));
}

// --- The repository map --------------------------------------------------------

TEST(RepoMapTest, DefinitionsRankedByReferencesWithinTheBudget) {
  testing::TempDir dir;
  dir.Write("pkg/util.py",
            "import os\n\ndef helper(x):\n    return x\n\n\ndef rarely_used():\n    pass\n\n"
            "class Store:\n    def get(self):\n        return helper(1)\n");
  dir.Write("pkg/a.py", "from pkg.util import helper, Store\nhelper(2)\nStore()\n");
  dir.Write("pkg/b.py", "from pkg.util import helper\nprint(helper(3))\n");
  dir.Write("src/lib.h", "#pragma once\nstruct Point {\n  int x;\n};\nint Area(const Point& p);\n");
  dir.Write("src/lib.cc", "#include \"lib.h\"\nint Area(const Point& p) {\n  return p.x;\n}\n");
  dir.Write("run.sh", "#!/bin/bash\nsetup_env() {\n  echo hi\n}\nsetup_env\n");
  dir.Write("web/app.js", "export function render(el) {}\nconst onClick = (e) => render(e);\n");
  dir.Write("README.md", "# readme\n");
  std::vector<std::string> files = {"README.md", "pkg/a.py",   "pkg/b.py",  "pkg/util.py",
                                    "run.sh",    "src/lib.cc", "src/lib.h", "web/app.js"};
  auto defs = ExtractDefinitions(dir.path(), files);
  std::map<std::string, int> refs;
  for (const auto& d : defs) refs[d.name] = d.references;
  ASSERT_TRUE(refs.count("helper"));
  EXPECT_EQ(defs[0].name, "helper");  // the most referenced comes first
  EXPECT_EQ(refs["helper"], 5);
  EXPECT_EQ(refs["rarely_used"], 0);
  for (const char* name : {"Store", "get", "Point", "Area", "setup_env", "render", "onClick"})
    EXPECT_TRUE(refs.count(name)) << name;

  const std::string map = BuildRepoMap(dir.path(), files, 4000);
  EXPECT_TRUE(Has(map, "pkg/util.py:\n  3: def helper(x)  [5 refs]\n")) << map;
  EXPECT_TRUE(Has(map, "README.md")) << map;  // files without definitions are named
  // A small budget keeps the most referenced definition and drops the least.
  const std::string small = BuildRepoMap(dir.path(), files, 120);
  EXPECT_LE(small.size(), 120u);
  EXPECT_TRUE(Has(small, "helper")) << small;
  EXPECT_FALSE(Has(small, "rarely_used")) << small;
  EXPECT_EQ(BuildRepoMap(dir.path(), {"README.md"}, 1000), "");

  // A link (a sandboxed command can make one to any path) is not read: the
  // map goes into the model's context.
  testing::TempDir outside;
  outside.Write("stolen.py", "def walrus_canary_7741(key):\n    return key\n");
  std::filesystem::create_symlink(outside.path() / "stolen.py", dir.path() / "linked.py");
  std::vector<std::string> with_link = files;
  with_link.push_back("linked.py");
  EXPECT_FALSE(Has(BuildRepoMap(dir.path(), with_link, 4000), "walrus_canary"));
}

}  // namespace
}  // namespace af
