#include "support/pipeline_harness.h"

#include <sstream>

#include "af/store/store.h"

namespace af::testing {
namespace {

using json = nlohmann::json;

const json& Messages(const RecordedRequest& req) {
  static const json kEmpty = json::array();
  if (!req.body.is_object() || !req.body.contains("messages") || !req.body["messages"].is_array())
    return kEmpty;
  return req.body["messages"];
}

// Text of a content value: a string, or the text blocks of an array.
std::string ContentText(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array()) {
    for (const auto& b : content) {
      if (b.is_object() && b.value("type", "") == "text") out += b.value("text", "");
    }
  }
  return out;
}

// Anthropic tool_result content: a string or an array of text blocks.
std::string ResultText(const json& content) { return ContentText(content); }

}  // namespace

std::string WireName(Wire wire) { return wire == Wire::kOpenAi ? "openai" : "anthropic"; }

std::string SystemText(const RecordedRequest& req) {
  if (!req.body.is_object()) return {};
  if (req.body.contains("system")) return ContentText(req.body["system"]);
  for (const auto& m : Messages(req)) {
    if (m.value("role", "") == "system") return ContentText(m["content"]);
  }
  return {};
}

std::string AgentRoleOf(const RecordedRequest& req) {
  const std::string s = SystemText(req);
  if (s.find("You are the planner") != std::string::npos) return "planner";
  if (s.find("You are a coder") != std::string::npos) return "coder";
  if (s.find("You are the reviewer") != std::string::npos) return "reviewer";
  return {};
}

std::string FirstUserText(const RecordedRequest& req) {
  for (const auto& m : Messages(req)) {
    if (m.value("role", "") == "user") return ContentText(m["content"]);
  }
  return {};
}

std::string TaskTitleOf(const RecordedRequest& req) {
  std::istringstream lines(FirstUserText(req));
  const std::string marker = "# Your task: ";
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(marker, 0) == 0) return line.substr(marker.size());
  }
  return {};
}

int AssistantTurns(const RecordedRequest& req) {
  int n = 0;
  for (const auto& m : Messages(req)) n += m.value("role", "") == "assistant";
  return n;
}

namespace {

std::vector<SentToolResult> ToolResultsFrom(const json& messages, size_t from) {
  std::vector<SentToolResult> out;
  for (size_t i = from; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string role = m.value("role", "");
    if (role == "tool") {  // OpenAI
      SentToolResult r;
      r.tool_call_id = m.value("tool_call_id", "");
      r.content = ContentText(m.value("content", json()));
      r.is_error = r.content.rfind("ERROR: ", 0) == 0;
      out.push_back(std::move(r));
    } else if (role == "user" && m.contains("content") && m["content"].is_array()) {  // Anthropic
      for (const auto& b : m["content"]) {
        if (!b.is_object() || b.value("type", "") != "tool_result") continue;
        SentToolResult r;
        r.tool_call_id = b.value("tool_use_id", "");
        r.content = ResultText(b.value("content", json()));
        r.is_error = b.value("is_error", false);
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

}  // namespace

std::vector<SentToolResult> ToolResults(const RecordedRequest& req) {
  return ToolResultsFrom(Messages(req), 0);
}

std::vector<SentToolResult> LatestToolResults(const RecordedRequest& req) {
  const json& messages = Messages(req);
  size_t last_assistant = messages.size();
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].value("role", "") == "assistant") last_assistant = i;
  }
  if (last_assistant == messages.size()) return {};
  return ToolResultsFrom(messages, last_assistant + 1);
}

FakeToolCall Call(std::string name, nlohmann::json arguments, std::string id) {
  FakeToolCall c;
  c.id = std::move(id);
  c.name = std::move(name);
  c.arguments = std::move(arguments);
  return c;
}

PipelineHarness::PipelineHarness(Wire wire) : wire_(wire) {
  config_.data_dir = dir_.path().string();
  config_.llm.provider = WireName(wire);
  config_.llm.max_retries = 0;
  config_.llm.timeout_s = 30;
  if (wire == Wire::kOpenAi) {
    config_.llm.model = "gpt-4o-mini";
    config_.openai.api_key = "sk-test-pipeline-harness-0000";
    config_.openai.base_url = fake_.base_url() + "/v1";
  } else {
    config_.llm.model = "claude-sonnet-4-5";
    config_.anthropic.api_key = "sk-ant-test-pipeline-harness-0000";
    config_.anthropic.base_url = fake_.base_url();
  }
}

PipelineHarness::~PipelineHarness() {
  Stop();
  pipeline_.reset();
  services_.reset();
}

Status PipelineHarness::OpenServices() {
  if (!services_) {
    AF_ASSIGN_OR_RETURN(services_, Services::Open(config_, adjust_llm_));
  }
  return Status::Ok();
}

Status PipelineHarness::Start() {
  AF_ASSIGN_OR_RETURN(services_, Services::Open(config_, adjust_llm_));
  PipelineDeps deps = services_->ForPipeline();
  if (store_faults_) {
    faulty_store_ = std::make_unique<FaultyStore>(deps.store, store_faults_);
    deps.store = faulty_store_.get();
  }
  AF_ASSIGN_OR_RETURN(pipeline_, Pipeline::Start(deps));
  return Status::Ok();
}

void PipelineHarness::Stop() {
  if (pipeline_) pipeline_->Stop();
}

std::filesystem::path PipelineHarness::WorkspaceRoot(const std::string& project) const {
  return dir_.path() / "workspaces" / project;
}

std::filesystem::path PipelineHarness::TreeRoot(const std::string& feature_id,
                                                const std::string& project) const {
  return WorkspaceRoot(project) / ".af" / "worktrees" / feature_id;
}

FeatureRequest PipelineHarness::Request(const std::string& title, std::vector<std::string> gates) {
  FeatureRequest r;
  r.title = title;
  r.description =
      "An integration test feature driven by a scripted fake model, to check what "
      "the pipeline does with the model's tool calls.";
  r.requirements = {"do what the scripted model says"};
  r.acceptance_criteria = {"the validation gates pass"};
  r.tech_stack = "posix shell";
  r.validation_gates = std::move(gates);
  r.challenge_vague_requirements = false;
  return r;
}

std::vector<Event> PipelineHarness::Events(const std::string& feature_id) {
  std::vector<Event> out;
  Status s = ForEachEvent(store(), feature_id, [&](const Event& e) { out.push_back(e); });
  if (!s.ok()) out.clear();
  return out;
}

std::vector<std::string> PipelineHarness::CommitTaskIds(const std::string& feature_id,
                                                        const std::string& project) {
  // "@@<sha> <trailer values>" per commit; the marker tells commit lines from
  // any blank line the trailer placeholder may leave.
  CommandResult r = RunCommand({"/usr/bin/git", "-C", WorkspaceRoot(project).string(), "log",
                                "--format=@@%H %(trailers:key=Task-Id,valueonly,separator=%x2C)",
                                "main..af/" + feature_id});
  if (r.exit_code != 0) return {"git log failed: " + r.err};
  std::vector<std::string> ids;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("@@", 0) != 0) continue;
    size_t sp = line.find(' ');
    ids.push_back(sp == std::string::npos ? "" : line.substr(sp + 1));
  }
  return ids;
}

}  // namespace af::testing
