// `agent-factory memory ...` as a user runs it: remember, recall, list, graph,
// evolve, and an export read back into a fresh data directory.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

class CliMemoryTest : public ::testing::Test {
 protected:
  std::map<std::string, std::string> Env(const std::string& data) {
    return {{"DATABASE_URL", "\x01unset"},
            {"AF_LLM_PROVIDER", "\x01unset"},
            {"ANTHROPIC_API_KEY", "\x01unset"},
            {"OPENAI_API_KEY", "\x01unset"},
            {"AF_CONFIG_DIR", "\x01unset"},
            {"AF_LOG", "\x01unset"},
            {"AF_DATA_DIR", (dir_.path() / data).string()}};
  }

  CommandResult Memory(std::vector<std::string> args, const std::string& data = "data") {
    std::vector<std::string> argv = {BinaryPath(), "memory"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, Env(data), dir_.path().string());
  }

  json MemoryJson(std::vector<std::string> args, const std::string& data = "data") {
    args.push_back("--json");
    auto r = Memory(args, data);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }

  // The export's records by id, without the times the import sets anew.
  std::map<std::string, json> Records(const std::string& jsonl) {
    std::map<std::string, json> out;
    std::istringstream in(jsonl);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      json j = json::parse(line);
      for (auto k : {"created_ms", "updated_ms", "accessed_ms", "access_count"}) j.erase(k);
      out[j["id"]] = j;
    }
    return out;
  }

  TempDir dir_;
};

TEST_F(CliMemoryTest, RememberRecallListGraph) {
  json a = MemoryJson({"remember", "The payment service retries webhooks three times", "--type",
                       "architecture_decision", "--importance", "8", "--tags", "payments, webhooks",
                       "--namespace", "project:shop", "--summary", "webhook retries"});
  const std::string id = a["id"];
  EXPECT_EQ(a["importance"], 8);
  EXPECT_EQ(a["tags"], json({"payments", "webhooks"}));
  EXPECT_EQ(a["namespace"], "project:shop");
  MemoryJson({"remember", "Use ruff for linting python code", "--type", "preference"});

  json recalled = MemoryJson({"recall", "webhook retries", "--namespace", "project:shop"});
  ASSERT_FALSE(recalled["results"].empty()) << recalled.dump();
  EXPECT_EQ(recalled["results"][0]["id"], id);
  for (auto k : {"id", "source", "chunk", "score", "content"})
    EXPECT_TRUE(recalled["results"][0].contains(k)) << k;

  auto human = Memory({"recall", "ruff linting"});
  EXPECT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("Use ruff"), std::string::npos) << human.out;

  json listed = MemoryJson({"list", "--type", "preference"});
  ASSERT_EQ(listed["memories"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["memories"][0]["content"], "Use ruff for linting python code");
  EXPECT_EQ(MemoryJson({"list", "--namespace", "project:shop"})["memories"].size(), 1u);

  json graph = MemoryJson({"graph", id});
  EXPECT_EQ(graph["nodes"][0]["id"], id) << graph.dump();

  json evolved = MemoryJson({"evolve", "--dry-run"});
  EXPECT_TRUE(evolved.contains("archived")) << evolved.dump();
  EXPECT_EQ(evolved["dry_run"], true);
}

TEST_F(CliMemoryTest, ExportThenRememberFromGivesTheSameRecordsAndIsIdempotent) {
  const std::string a =
      MemoryJson({"remember", "Gates run with pytest -q", "--type", "configuration"})["id"];
  const std::string b =
      MemoryJson({"remember", "Flaky test fixed by freezing the clock", "--type", "bug_fix",
                  "--importance", "9", "--tags", "tests", "--namespace", "project:p"})["id"];
  ASSERT_NE(a, b);
  const fs::path file = dir_.path() / "memories.jsonl";
  auto exported = Memory({"export", "--output", file.string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const std::string text = ReadFile(file);
  auto records = Records(text);
  ASSERT_EQ(records.size(), 2u) << text;
  EXPECT_EQ(records[b]["importance"], 9);
  EXPECT_TRUE(records[b].contains("links"));

  // Into a fresh data directory, twice: the second run adds nothing.
  json first = MemoryJson({"remember", "--from", file.string()}, "fresh");
  EXPECT_EQ(first["added"], 2) << first.dump();
  json second = MemoryJson({"remember", "--from", file.string()}, "fresh");
  EXPECT_EQ(second["added"], 0) << second.dump();
  EXPECT_EQ(second["existing"], 2);

  auto again = Memory({"export"}, "fresh");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Records(again.out), records) << again.out;
}

// Text that is not UTF-8 (a Latin-1 note, say) is kept, and --json shows it
// with U+FFFD where the bad bytes are instead of aborting.
TEST_F(CliMemoryTest, JsonOutputReplacesBytesThatAreNotUtf8) {
  auto r = Memory({"remember", "caf\xe9 in Latin-1", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("caf\xef\xbf\xbd in Latin-1"), std::string::npos) << r.out;
  for (std::vector<std::string> args : {std::vector<std::string>{"list"}, {"recall", "Latin"}}) {
    json j = MemoryJson(args);
    EXPECT_NE(j.dump().find("caf\xef\xbf\xbd"), std::string::npos) << j.dump();
  }
}

TEST_F(CliMemoryTest, BadInputSaysWhatToDoAndFails) {
  auto r = Memory({"remember", "x", "--importance", "11"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("importance must be from 1 to 10"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos);
  r = Memory({"remember", "x", "--importance", "0"});  // was stored as the default, 5
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("importance must be from 1 to 10 (got 0)"), std::string::npos) << r.err;

  r = Memory({"remember", "x", "--type", "gossip"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown memory type 'gossip'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bug_fix"), std::string::npos) << "the hint lists the types: " << r.err;

  r = Memory({"remember"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--from"), std::string::npos) << r.err;

  r = Memory({"remember", "--from", (dir_.path() / "missing.jsonl").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot read"), std::string::npos) << r.err;

  r = Memory({"export", "--output", dir_.path().string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir_.path().string() + " is a directory"), std::string::npos) << r.err;

  for (const std::string& not_a_file : {dir_.path().string(), std::string("/dev/null")}) {
    r = Memory({"remember", "--from", not_a_file});  // was "0 memories added"
    EXPECT_EQ(r.exit_code, 2) << not_a_file;
    EXPECT_NE(r.err.find(not_a_file + " is not a regular file"), std::string::npos) << r.err;
  }

  std::ofstream(dir_.path() / "bad.jsonl") << "{\"content\":\"no id\"}\n";
  r = Memory({"remember", "--from", (dir_.path() / "bad.jsonl").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.jsonl:1"), std::string::npos) << r.err;

  r = Memory({"graph", "mem-nope"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace af::testing
