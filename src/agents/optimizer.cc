#include "af/agents/optimizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "af/core/config.h"
#include "af/core/embedded.h"
#include "af/core/log.h"
#include "af/core/strings.h"
#include "af/memory/knowledge.h"
#include "af/workspace/workspace.h"

namespace af {
namespace {

using json = nlohmann::json;

// Keeps the head and the tail of an over-long text, with a marker saying so.
std::string Cap(const std::string& text, size_t max_chars) {
  if (text.size() <= max_chars) return text;
  size_t head = max_chars * 2 / 3, tail = max_chars - head;
  return text.substr(0, head) + "\n... [" + std::to_string(text.size() - max_chars) +
         " characters left out to fit the context budget] ...\n" + text.substr(text.size() - tail);
}

std::string Bullets(const json& list) {
  std::string out;
  if (list.is_array())
    for (const auto& x : list)
      if (x.is_string()) out += "- " + x.get<std::string>() + "\n";
  return out.empty() ? "(none given)\n" : out;
}

}  // namespace

int64_t EstimateTokens(const LlmRequest& r) {
  size_t chars = r.system.size();
  for (const auto& m : r.messages) {
    chars += m.text.size() + 16;
    for (const auto& c : m.tool_calls) chars += c.name.size() + c.arguments.dump().size();
  }
  for (const auto& t : r.tools)
    chars += t.name.size() + t.description.size() + t.input_schema.dump().size();
  return static_cast<int64_t>(chars / 4) + 8;
}

namespace {

// One skill file's text; its keywords come from the `keywords:` line, or the
// name when there is none.
Skill ParseSkill(std::string name, std::string text) {
  Skill s;
  s.name = std::move(name);
  s.text = std::move(text);
  std::istringstream lines(s.text);
  for (std::string line; std::getline(lines, line);) {
    if (Lower(line).rfind("keywords:", 0) == 0) {
      std::stringstream kw(line.substr(9));
      for (std::string k; std::getline(kw, k, ',');) {
        k.erase(0, k.find_first_not_of(" \t"));
        k.erase(k.find_last_not_of(" \t\r") + 1);
        if (!k.empty()) s.keywords.push_back(Lower(k));
      }
      break;
    }
  }
  if (s.keywords.empty()) s.keywords.push_back(Lower(s.name));
  return s;
}

}  // namespace

std::vector<Skill> LoadSkills(const std::filesystem::path& dir) {
  std::vector<Skill> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".md") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& p : files) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    out.push_back(ParseSkill(p.stem().string(), ss.str()));
  }
  return out;
}

std::vector<Skill> BuiltinSkills() {
  std::vector<Skill> out;
  for (const EmbeddedFile& f : EmbeddedFilesUnder("skills")) {
    std::filesystem::path p(f.name);
    if (p.extension() == ".md")
      out.push_back(ParseSkill(p.stem().string(), std::string(f.content)));
  }
  return out;
}

Optimizer::Optimizer(ContextBudget budget, std::vector<Skill> skills, KnowledgeBase* kb,
                     int max_results)
    : budget_(budget), skills_(std::move(skills)), kb_(kb), max_results_(max_results) {}

std::vector<const Skill*> Optimizer::SkillsFor(const json& request) const {
  std::string hay = " " +
                    Lower(request.value("title", "") + " " + request.value("description", "") +
                          " " + request.value("tech_stack", "")) +
                    " ";
  for (auto& c : hay)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '#') c = ' ';
  std::vector<const Skill*> out;
  for (const auto& s : skills_) {
    for (const auto& k : s.keywords) {
      if (hay.find(" " + k + " ") != std::string::npos) {
        out.push_back(&s);
        break;
      }
    }
  }
  return out;
}

std::string Optimizer::BuildContext(const ContextInput& in, FeatureTree* tree,
                                    Retrieved* retrieved) const {
  // Characters available for the first message: preserve_at of the window,
  // less room for the system prompt, tools and the conversation to come.
  const size_t budget_chars =
      static_cast<size_t>(budget_.window_tokens * budget_.preserve_at * 4 * 0.5);
  const json& r = in.request;
  std::string out;
  out += "# Feature: " + r.value("title", "(untitled)") + "\n\n";
  out += "Project: " + in.project + "\n";
  out += "Tech stack: " + r.value("tech_stack", "(not specified)") + "\n\n";
  out += "## Description\n" + r.value("description", "") + "\n\n";
  out += "## Requirements\n" + Bullets(r.value("requirements", json::array())) + "\n";
  out += "## Acceptance criteria\n" + Bullets(r.value("acceptance_criteria", json::array())) + "\n";
  out += "## Validation gates (shell commands that must pass in the workspace)\n" +
         Bullets(r.value("validation_gates", json::array())) + "\n";
  if (!r.value("context", "").empty())
    out += "## Context\n" + Cap(r.value("context", ""), budget_chars / 8) + "\n\n";

  if (!in.task_title.empty()) {
    out += "# Your task: " + in.task_title + "\n" + in.task_description + "\n";
    if (!in.task_files.empty()) {
      out += "Files in scope:\n";
      for (const auto& f : in.task_files) out += "- " + f + "\n";
    }
    out += "\n";
  }

  std::string skills;
  for (const Skill* s : SkillsFor(r)) skills += s->text + "\n";
  if (!skills.empty()) out += "# Skills\n" + Cap(skills, budget_chars / 6) + "\n";

  if (kb_) {
    // What the task is about, as the search query: the task when there is
    // one, else the feature.
    SearchQuery q;
    q.text = in.task_title.empty()
                 ? r.value("title", "") + "\n" + r.value("description", "")
                 : in.task_title + "\n" + in.task_description + "\n" + r.value("title", "");
    q.text = q.text.substr(0, 2000);
    q.namespaces = NamespaceFallback("project:" + in.project);
    q.max_results = max_results_;
    auto logger = log::Get("optimizer");
    if (!Trim(q.text).empty()) {
      auto memories = kb_->Recall(q);
      if (!memories.ok()) logger->warn("memory search failed: {}", memories.status().ToString());
      if (memories.ok() && !memories->empty()) {
        std::string part;
        for (const auto& m : *memories) {
          part += "- [" + m.memory->type + ", importance " + std::to_string(m.memory->importance) +
                  "] " + Cap(m.content, 600) + "\n";
          if (retrieved) retrieved->memories.push_back(m.id);
        }
        out += "# What was learned before (memory)\n" + Cap(part, budget_chars / 10) + "\n";
      }
      auto chunks = kb_->Search(q);
      if (!chunks.ok()) logger->warn("knowledge search failed: {}", chunks.status().ToString());
      if (chunks.ok() && !chunks->empty()) {
        std::string part;
        for (const auto& c : *chunks) {
          part += "## " + c.source + " (lines " + std::to_string(c.line_start) + "-" +
                  std::to_string(c.line_end) + ")\n```\n" + Cap(c.content, 1500) + "\n```\n";
          if (retrieved) retrieved->knowledge.push_back(c.source + "#" + std::to_string(c.chunk));
        }
        out += "# Relevant knowledge (project code and documents)\n" + Cap(part, budget_chars / 8) +
               "\n";
      }
    }
  }

  if (tree) {
    auto files = tree->ListFiles("");
    if (files.ok()) {
      std::string list;
      for (const auto& f : *files) list += f + "\n";
      out += "# Workspace files\n" + (list.empty() ? "(empty)\n" : Cap(list, budget_chars / 10)) +
             "\n";
    }
    std::string contents;
    for (const auto& f : in.task_files) {
      auto content = tree->ReadFile(f);
      if (content.ok()) contents += "## " + f + "\n```\n" + *content + "\n```\n";
    }
    if (!contents.empty())
      out += "# Current content of the files in scope\n" + Cap(contents, budget_chars / 4) + "\n";
  }

  if (!in.history.empty()) {
    std::string h;
    for (const auto& x : in.history) h += x + "\n\n";
    out += "# What happened so far\n" + Cap(h, budget_chars / 4) + "\n";
  }
  if (!in.diff.empty())
    out +=
        "# The change (diff against main)\n```diff\n" + Cap(in.diff, budget_chars / 3) + "\n```\n";
  return Cap(out, budget_chars);
}

Status Optimizer::Fit(LlmRequest& request) const {
  const double window = static_cast<double>(budget_.window_tokens);
  int64_t tokens = EstimateTokens(request);
  if (tokens > window * budget_.preserve_at) {
    // Condense tool results and long texts of every turn but the first
    // message and the last four messages (two turns).
    size_t keep_from = request.messages.size() > 4 ? request.messages.size() - 4 : 0;
    for (size_t i = 1; i < keep_from; ++i) {
      Message& m = request.messages[i];
      if (m.text.size() > 400) {
        m.text = m.text.substr(0, 300) +
                 "\n... [condensed: " + std::to_string(m.text.size() - 300) +
                 " characters of an earlier turn left out] ...";
      }
      for (auto& c : m.tool_calls) {
        if (c.arguments.contains("content") && c.arguments["content"].is_string() &&
            c.arguments["content"].get<std::string>().size() > 400) {
          c.arguments["content"] = "[condensed: file content written earlier]";
        }
      }
    }
    tokens = EstimateTokens(request);
  }
  if (tokens > window * budget_.critical_at) {
    return ResourceExhausted(
        "context of about " + std::to_string(tokens) + " tokens exceeds context.critical_at (" +
            std::to_string(static_cast<int64_t>(window * budget_.critical_at)) + " of a " +
            std::to_string(budget_.window_tokens) + "-token window)",
        "split the task into smaller ones, or raise context.window_tokens for a model with a "
        "larger window");
  }
  return Status::Ok();
}

std::string SystemPrompt(const std::string& role) {
  const std::string r = CanonicalRole(role);
  const std::string common =
      "You are part of Agent Factory, a team of agents that turns a feature request into working, "
      "tested, reviewed code on a git branch. Work only through your tools. Paths are relative to "
      "the workspace root; anything outside it is refused.\n";
  if (r == "planner") {
    return common +
           "You are the planner. Read the feature request and decompose it into a small plan of "
           "coding tasks (usually 1 to 5). Each task is done by one coder, so make tasks cohesive "
           "and name the files each one owns; list dependencies so independent tasks run in "
           "parallel. Tests are part of the tasks: the validation gates are run automatically "
           "afterwards, then a reviewer checks the change. Call submit_plan exactly once.";
  }
  if (r == "coder") {
    return common +
           "You are a coder. Implement your task completely: write or edit the files, then run the "
           "relevant validation gates with run_command and fix what fails. Keep to your task's "
           "files where you can; other tasks may be running in parallel. When the work is done and "
           "checked, call finish with a summary of what changed and how you verified it.";
  }
  if (r == "reviewer") {
    return common +
           "You are the reviewer. Review the change (diff) against the acceptance criteria, using "
           "the gate results as evidence. Approve when every criterion is met and the gates pass; "
           "otherwise request changes with concrete, actionable comments. Cite evidence in your "
           "comments (gate names and results, files and lines of the diff). Call submit_review "
           "exactly once.";
  }
  return common;
}

}  // namespace af
