#include "af/core/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "af/core/repeated_failure_log.h"
#include "support/test_util.h"

namespace af {
namespace {

TEST(LogTest, LevelSpecParsesDefaultAndComponents) {
  auto spec = log::ParseLevelSpec("warn, llm=debug,store=trace");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->default_level, spdlog::level::warn);
  EXPECT_EQ(spec->components.at("llm"), spdlog::level::debug);
  EXPECT_EQ(spec->components.at("store"), spdlog::level::trace);
  EXPECT_FALSE(log::ParseLevelSpec("info,llm=chatty").ok());
}

TEST(LogTest, RedactsRegisteredSecretsAndKeyShapes) {
  log::ClearSecretsForTest();
  log::AddSecret("hunter2-very-secret");
  EXPECT_EQ(log::Redact("password hunter2-very-secret used"), "password [REDACTED] used");
  EXPECT_EQ(log::Redact("key sk-ant-api03-AAAABBBBCCCCDDDD1234 failed"), "key [REDACTED] failed");
  EXPECT_EQ(log::Redact("admin af_0123456789abcdef0123456789"), "admin [REDACTED]");
  // Short or embedded look-alikes are left alone.
  EXPECT_EQ(log::Redact("task-sk-1 and sk-short"), "task-sk-1 and sk-short");
  log::ClearSecretsForTest();
}

TEST(LogTest, FileGetsJsonLinesWithComponentLevelsAndRedaction) {
  testing::TempDir dir;
  auto file = dir.path() / "logs" / "agent-factory.log";
  log::ClearSecretsForTest();
  log::AddSecret("super-secret-value-42");
  ASSERT_TRUE(log::Init({.level = "warn,llm=debug", .file = file.string(), .console = false}).ok());
  log::Get("llm")->debug("calling with key super-secret-value-42");
  log::Get("store")->info("hidden at warn");
  log::Get("store")->warn("visible \"quoted\"");
  log::Get("llm")->flush();
  log::Get("store")->flush();
  std::istringstream lines(testing::ReadFile(file));
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["component"], "llm");
  EXPECT_EQ(rows[0]["level"], "debug");
  EXPECT_EQ(rows[0]["msg"], "calling with key [REDACTED]");
  EXPECT_EQ(rows[1]["msg"], "visible \"quoted\"");
  EXPECT_TRUE(rows[1]["ts"].get<std::string>().ends_with("Z"));
  EXPECT_EQ(testing::ReadFile(file).find("super-secret"), std::string::npos);
  EXPECT_FALSE(log::Init({.level = "bogus"}).ok());
  ASSERT_TRUE(log::Init({.level = "info", .console = false}).ok());
  log::ClearSecretsForTest();
}

// The data directory is a file (or not writable): the error says the log
// directory could not be made, and why, not that the log file does not exist.
TEST(LogTest, AnUncreatableLogDirectoryIsNamedWithItsCause) {
  testing::TempDir dir;
  const auto blocker = dir.Write("data", "a file where the data directory should be");
  Status s = log::Init(
      {.level = "info", .file = (blocker / "logs" / "af.log").string(), .console = false});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot create the log directory " + (blocker / "logs").string() +
                             ": Not a directory"),
            std::string::npos)
      << s.ToString();
  EXPECT_NE(s.hint().find("writable"), std::string::npos) << s.hint();
  ASSERT_TRUE(log::Init({.level = "info", .console = false}).ok());
}

TEST(LogTest, RotatesBySize) {
  testing::TempDir dir;
  auto file = dir.path() / "r.log";
  ASSERT_TRUE(log::Init({.level = "info",
                         .file = file.string(),
                         .max_file_bytes = 4096,
                         .max_files = 2,
                         .console = false})
                  .ok());
  for (int i = 0; i < 200; ++i) log::Get("rot")->info("line {} {}", i, std::string(60, 'x'));
  log::Get("rot")->flush();
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "r.1.log"));
  EXPECT_LE(std::filesystem::file_size(file), 4096u);
  ASSERT_TRUE(log::Init({.level = "info", .console = false}).ok());
}

// A process killed with SIGKILL cannot flush: info lines must reach the file
// on their own, within about a second, not only when a warning comes.
TEST(LogTest, InfoLinesReachTheFileWithinSecondsWithoutAFlushOrAWarning) {
  testing::TempDir dir;
  auto file = dir.path() / "logs" / "agent-factory.log";
  ASSERT_TRUE(log::Init({.level = "info", .file = file.string(), .console = false}).ok());
  log::Get("flushcheck")->info("an info line that must not wait for a warning");
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return testing::ReadFile(file).find("an info line that must not wait") != std::string::npos;
      },
      std::chrono::seconds(5)));
  ASSERT_TRUE(log::Init({.level = "info", .console = false}).ok());
}

// A failure repeated many times a second (a poll while the database is away)
// makes a line at first, one a minute at most with the count, one at the end.
TEST(LogTest, RepeatedFailureLogSaysItOnceAMinuteWithACountAndWhenBack) {
  std::ostringstream out;
  auto logger = std::make_shared<spdlog::logger>(
      "repeated", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger->set_pattern("%l %v");
  auto now = std::chrono::steady_clock::time_point{};
  RepeatedFailureLog failures(logger, "polling", std::chrono::minutes(1), [&] { return now; });
  const Status away = Unavailable("the database is away");
  failures.Succeeded();                // nothing failed: nothing to say
  for (int i = 0; i < 20 * 90; ++i) {  // 90 s at 20 a second
    failures.Failed(away);
    now += std::chrono::milliseconds(50);
  }
  EXPECT_EQ(failures.failures(), 1800);
  failures.Succeeded();
  failures.Succeeded();
  EXPECT_EQ(failures.failures(), 0);
  EXPECT_EQ(out.str(),
            "warning polling failed: the database is away\n"
            "warning polling still fails: 1200 more time(s) in the last 60 s; the latest: "
            "the database is away\n"
            "info polling works again, after 1800 failure(s) over 90 s\n");
  // A new outage starts over.
  const size_t before = out.str().size();
  failures.Failed(away);
  EXPECT_EQ(out.str().substr(before), "warning polling failed: the database is away\n");
}

}  // namespace
}  // namespace af
