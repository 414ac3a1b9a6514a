// The pure rules behind `agent-factory doctor`'s checks.
#include <gtest/gtest.h>

#include "cli/doctor.h"

namespace af::cli {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

TEST(DoctorRules, FreeSpaceIsAProblemUnderOneGibOrFivePercent) {
  EXPECT_TRUE(FreeSpaceFinding("/d", 50 * kGiB, 100 * kGiB).ok);
  Finding low = FreeSpaceFinding("/d", kGiB / 2, 100 * kGiB);
  EXPECT_FALSE(low.ok);
  EXPECT_NE(low.found.find("512 MiB free"), std::string::npos) << low.found;
  EXPECT_NE(low.fix.find("AF_DATA_DIR"), std::string::npos);
  // 2 GiB free, but of a 1 TiB disk: 0.2%.
  EXPECT_FALSE(FreeSpaceFinding("/d", 2 * kGiB, 1024 * kGiB).ok);
  EXPECT_TRUE(FreeSpaceFinding("/d", 2 * kGiB, 10 * kGiB).ok);
}

TEST(DoctorRules, HttpDatesAreParsedAsUtc) {
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_FALSE(ParseHttpDate("yesterday").has_value());
  EXPECT_FALSE(ParseHttpDate("").has_value());
}

TEST(DoctorRules, ClockSkewBeyondAMinuteEitherWayIsAProblem) {
  EXPECT_TRUE(ClockSkewFinding("api.example", 1000, 1060).ok);
  EXPECT_TRUE(ClockSkewFinding("api.example", 1060, 1000).ok);
  Finding behind = ClockSkewFinding("api.example", 1000, 1600);
  EXPECT_FALSE(behind.ok);
  EXPECT_NE(behind.found.find("600 s behind api.example"), std::string::npos) << behind.found;
  EXPECT_NE(behind.fix.find("timedatectl set-ntp true"), std::string::npos);
  Finding ahead = ClockSkewFinding("api.example", 1600, 1000);
  EXPECT_FALSE(ahead.ok);
  EXPECT_NE(ahead.found.find("600 s ahead of api.example"), std::string::npos) << ahead.found;
}

TEST(DoctorRules, AProxyForALoopbackBaseUrlNotInNoProxyIsAProblem) {
  EXPECT_TRUE(ProxyFinding({}, "http://127.0.0.1:11434/v1").ok);
  // libcurl reads only the lower-case http_proxy for http:// URLs.
  EXPECT_TRUE(ProxyFinding({{"HTTP_PROXY", "http://p:3128"}}, "http://127.0.0.1:1/v1").ok);
  Finding bad =
      ProxyFinding({{"http_proxy", "http://user:hunter22@p:3128"}}, "http://127.0.0.1:11434/v1");
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.found.find("http_proxy=http://user:***@p:3128"), std::string::npos) << bad.found;
  EXPECT_EQ(bad.found.find("hunter22"), std::string::npos);
  EXPECT_NE(bad.fix.find("NO_PROXY"), std::string::npos);
  EXPECT_TRUE(ProxyFinding({{"http_proxy", "http://p:3128"}, {"NO_PROXY", "localhost,127.0.0.1"}},
                           "http://127.0.0.1:11434/v1")
                  .ok);
  EXPECT_FALSE(ProxyFinding({{"ALL_PROXY", "http://p:3128"}}, "http://localhost:8000").ok);
  EXPECT_TRUE(
      ProxyFinding({{"ALL_PROXY", "http://p:3128"}, {"no_proxy", "*"}}, "http://localhost:8000")
          .ok);
  // A remote provider through a proxy is what proxies are for.
  Finding remote = ProxyFinding({{"HTTPS_PROXY", "http://p:3128"}}, "https://api.anthropic.com");
  EXPECT_TRUE(remote.ok);
  EXPECT_NE(remote.found.find("api.anthropic.com go through HTTPS_PROXY"), std::string::npos)
      << remote.found;
  EXPECT_TRUE(ProxyFinding({{"HTTPS_PROXY", "http://p:3128"}, {"NO_PROXY", ".anthropic.com"}},
                           "https://api.anthropic.com")
                  .found.find("NO_PROXY exempts") != std::string::npos);
}

TEST(DoctorRules, PrivateFilesHaveNoGroupOrOtherBits) {
  EXPECT_TRUE(PrivateModeFinding("/c/secrets.age", 0100600, false).ok);
  Finding f = PrivateModeFinding("/c/secrets.age", 0100644, false);
  EXPECT_FALSE(f.ok);
  EXPECT_NE(f.found.find("mode 0644"), std::string::npos) << f.found;
  EXPECT_EQ(f.fix, "chmod 600 /c/secrets.age");
  Finding d = PrivateModeFinding("/data", 040755, true);
  EXPECT_FALSE(d.ok);
  EXPECT_EQ(d.fix, "chmod 700 /data");
}

TEST(DoctorRules, TheReportSaysEachCheckAndItsFix) {
  DoctorReport r;
  DoctorCheck a;
  a.name = "git";
  a.found = "git version 2.39";
  DoctorCheck b;
  b.name = "schema";
  b.ok = false;
  b.found = "version 3 of 5";
  b.fix = "agent-factory db migrate";
  r.checks = {a, b};
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.ToText(),
            "✔ git: git version 2.39\n✘ schema: version 3 of 5\n    fix: agent-factory db "
            "migrate\n1 of 2 checks found a problem\n");
  auto j = r.ToJson();
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["checks"][1]["fix"], "agent-factory db migrate");
  EXPECT_FALSE(j["checks"][0].contains("fixed"));

  // What --fix did, or that it could not.
  r.checks[0].fixed = "chmod 700 /data";
  r.checks[1].fixed = std::string(kCouldNotFix) + "cannot create /x: Permission denied";
  const std::string text = r.ToText();
  EXPECT_NE(text.find("    fixed: chmod 700 /data\n"), std::string::npos) << text;
  EXPECT_NE(text.find("    not fixed: cannot create /x: Permission denied\n"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace af::cli
