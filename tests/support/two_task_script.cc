#include "support/two_task_script.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "support/pipeline_harness.h"

namespace af::testing {

using json = nlohmann::json;

std::string TwoTaskKeyOf(const RecordedRequest& r) {
  const std::string title = TaskTitleOf(r);
  const std::string task = title == "Write a.txt" ? "a" : title == "Write b.txt" ? "b" : "";
  return AgentRoleOf(r) + ":" + task + ":" + std::to_string(AssistantTurns(r));
}

FakeReply TwoTaskAnswer(const std::string& key) {
  if (key == "planner::0") {
    json plan = {{"tasks",
                  {{{"id", "t1"},
                    {"title", "Write a.txt"},
                    {"description", "a.txt with alpha"},
                    {"role", "coder"}},
                   {{"id", "t2"},
                    {"title", "Write b.txt"},
                    {"description", "b.txt with beta"},
                    {"role", "coder"},
                    {"dependencies", {"t1"}}}}}};
    return FakeReply::Tools({Call("submit_plan", plan, "p1")});
  }
  if (key == "coder:a:0")
    return FakeReply::Tools(
        {Call("write_file", {{"path", "a.txt"}, {"content", "alpha\n"}}, "w1")});
  if (key == "coder:b:0")
    return FakeReply::Tools({Call("write_file", {{"path", "b.txt"}, {"content", "beta\n"}}, "w1")});
  if (key == "coder:a:1" || key == "coder:b:1")
    return FakeReply::Tools({Call("finish", {{"summary", "wrote the file"}}, "f1")});
  if (key == "reviewer::0") {
    return FakeReply::Tools(
        {Call("submit_review", {{"verdict", "approve"}, {"comments", {"the gate passed"}}}, "r1")});
  }
  return FakeReply::Status(400, R"({"error":{"message":"unexpected request )" + key + R"("}})");
}

const std::vector<std::string>& TwoTaskKeys() {
  static const std::vector<std::string> keys = {"planner::0", "coder:a:0", "coder:a:1",
                                                "coder:b:0",  "coder:b:1", "reviewer::0"};
  return keys;
}

size_t DistinctPaidAnswers(Store& store, const std::string& feature_id) {
  auto calls = store.ListLlmCalls(feature_id);
  EXPECT_TRUE(calls.ok()) << calls.status().ToString();
  if (!calls.ok()) return 0;
  std::set<std::string> hashes;
  for (const auto& c : *calls) {
    if (c.status == "ok")
      EXPECT_TRUE(hashes.insert(c.request_hash).second) << "paid twice: " << c.request_hash;
  }
  return hashes.size();
}

}  // namespace af::testing
