#include <gtest/gtest.h>

#include "af/store/types.h"

namespace af {
namespace {

TEST(StoreTypesTest, FormatUtcMillis) {
  EXPECT_EQ(FormatUtcMillis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatUtcMillis(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(FormatUtcMillis(-1), "1969-12-31T23:59:59.999Z");
}

TEST(StoreTypesTest, EventToJsonHasTheSseShape) {
  Event e;
  e.seq = 7;
  e.type = "task.status";
  e.feature_id = "f-1";
  e.task_id = "";
  e.agent = "coder-1";
  e.ts_ms = 1700000000005;
  e.data = {{"from", "ready"}, {"to", "in_progress"}};
  nlohmann::json j = e.ToJson();
  EXPECT_EQ(j, nlohmann::json::parse(R"({"seq":7,"type":"task.status","feature_id":"f-1",
      "task_id":null,"agent":"coder-1","ts":"2023-11-14T22:13:20.005Z",
      "data":{"from":"ready","to":"in_progress"}})"));
  Event bare;
  bare.type = "x";
  EXPECT_TRUE(bare.ToJson()["agent"].is_null());
  EXPECT_TRUE(bare.ToJson()["feature_id"].is_null());
  EXPECT_TRUE(bare.ToJson()["data"].is_object());
}

TEST(StoreTypesTest, StatusSets) {
  EXPECT_TRUE(IsFeatureStatus("delivering"));
  EXPECT_FALSE(IsFeatureStatus("done"));
  EXPECT_TRUE(IsTaskStatus("in_progress"));
  EXPECT_FALSE(IsTaskStatus("queued"));
  EXPECT_TRUE(IsAgentState("degraded"));
  EXPECT_TRUE(IsPriority("critical"));
  EXPECT_FALSE(IsPriority("urgent"));
}

// One rule for every caller (PRP parsers, run --project, the store): the
// first character is a letter or digit, so "_x" is refused everywhere.
TEST(StoreTypesTest, CheckProjectNameIsTheOneProjectRule) {
  for (const std::string& good :
       std::vector<std::string>{"a", "my-app", "App_2.0", "9lives", std::string(64, 'x')})
    EXPECT_TRUE(CheckProjectName(good).ok()) << good;
  for (const std::string& bad : std::vector<std::string>{"", "_x", ".hidden", "-x", "../evil",
                                                         "a/b", "a b", std::string(65, 'x')}) {
    Status s = CheckProjectName(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("[A-Za-z0-9][A-Za-z0-9._-]{0,63}"), std::string::npos);
  }
}

}  // namespace
}  // namespace af
