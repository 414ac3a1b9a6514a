#include "af/agents/optimizer.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "af/agents/gates.h"
#include "af/agents/repo_map.h"
#include "af/core/config.h"
#include "af/core/embedded.h"
#include "af/core/log.h"
#include "af/core/strings.h"
#include "af/memory/knowledge.h"
#include "af/workspace/workspace.h"

namespace af {
namespace {

using json = nlohmann::json;

// About 2,000 tokens: enough for the core of a mid-sized repository (Aider
// gives its map 1,000 by default), small next to the rest of a context.
constexpr size_t kRepoMapChars = 8000;

// What a tool call was about, in a few words: "read_file src/a.py".
std::string CallLabel(const ToolCall& c) {
  std::string label = c.name;
  for (const char* k : {"path", "command", "query"}) {
    if (c.arguments.is_object() && c.arguments.contains(k) && c.arguments[k].is_string()) {
      std::string v = c.arguments[k].get<std::string>();
      if (v.size() > 80) v = v.substr(0, 77) + "...";
      label += " " + v;
      break;
    }
  }
  return label;
}

size_t Lines(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) +
         (text.empty() || text.back() == '\n' ? 0 : 1);
}

// The transcript of messages [from, to) for a summarisation request.
std::string Transcript(const std::vector<Message>& messages, size_t from, size_t to,
                       size_t max_chars) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    const Message& m = messages[i];
    if (m.role == Role::kAssistant) {
      if (!m.text.empty()) out += "ASSISTANT: " + HeadAndTail(m.text, 1500) + "\n";
      for (const auto& c : m.tool_calls)
        out += "CALL " + c.name + " " + HeadAndTail(c.arguments.dump(), 600) + "\n";
    } else if (m.role == Role::kTool) {
      out += std::string(m.is_error ? "TOOL ERROR: " : "TOOL RESULT: ") +
             HeadAndTail(m.text, 1500) + "\n";
    } else {
      out += "USER: " + HeadAndTail(m.text, 1500) + "\n";
    }
  }
  return HeadAndTail(out, max_chars);
}

constexpr char kSummarySystem[] =
    "You condense the working history of a coding agent so it can continue its task with less "
    "context. Summarise the transcript: what was learned about the code (files, functions, "
    "facts), what was changed and how it was checked, what failed and why, and what is still to "
    "do. Keep file paths, names, commands and error messages exact. Answer with the summary "
    "only, at most about 400 words.";

std::string Bullets(const json& list) {
  std::string out;
  if (list.is_array())
    for (const auto& x : list)
      if (x.is_string()) out += "- " + x.get<std::string>() + "\n";
  return out.empty() ? "(none given)\n" : out;
}

}  // namespace

std::string DiffWithoutBuildOutputs(const std::string& diff) {
  std::string out, section, left_out;
  int dropped = 0;
  bool drop = false;
  auto flush = [&] {
    if (!drop) out += section;
    section.clear();
  };
  size_t pos = 0;
  while (pos < diff.size()) {
    size_t nl = diff.find('\n', pos);
    size_t end = nl == std::string::npos ? diff.size() : nl + 1;
    std::string_view line(diff.data() + pos, end - pos);
    if (line.rfind("diff --git a/", 0) == 0) {
      flush();
      std::string_view rest = line.substr(13);
      std::string_view path = rest.substr(0, rest.find(" b/"));
      drop = IsBuildOutputOrCache(path);
      if (drop && ++dropped <= 5) left_out += (left_out.empty() ? "" : ", ") + std::string(path);
    }
    section.append(line);
    pos = end;
  }
  flush();
  if (dropped > 0) {
    out += "[" + std::to_string(dropped) +
           " build output or cache file(s) left out of this diff: " + left_out +
           (dropped > 5 ? ", ..." : "") + "]\n";
  }
  return out;
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
    out += "## Context\n" + HeadAndTail(r.value("context", ""), budget_chars / 8) + "\n\n";

  if (!in.task_title.empty()) {
    out += "# Your task: " + in.task_title + "\n" + in.task_description + "\n";
    if (!in.task_files.empty()) {
      out += "Files in scope:\n";
      for (const auto& f : in.task_files) out += "- " + f + "\n";
    }
    if (!in.sibling_files.empty()) {
      std::string owned;
      for (const auto& [title, files] : in.sibling_files) {
        if (files.empty()) continue;
        owned += "- " + title + ":";
        for (const auto& f : files) owned += " " + f;
        owned += "\n";
      }
      if (!owned.empty())
        out +=
            "Other tasks work in the same worktree, possibly at the same time; do not edit the "
            "files they own:\n" +
            HeadAndTail(owned, budget_chars / 20);
    }
    if (!in.changed_files.empty()) {
      out += "Files the feature changed so far:\n";
      std::string list;
      for (const auto& f : in.changed_files)
        if (!IsBuildOutputOrCache(f)) list += "- " + f + "\n";
      out += HeadAndTail(list, budget_chars / 20);
    }
    out += "\n";
  }

  std::string skills;
  for (const Skill* s : SkillsFor(r)) skills += s->text + "\n";
  if (!skills.empty()) out += "# Skills\n" + HeadAndTail(skills, budget_chars / 6) + "\n";

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
                  "] " + HeadAndTail(m.content, 600) + "\n";
          if (retrieved) retrieved->memories.push_back(m.id);
        }
        out += "# What was learned before (memory)\n" + HeadAndTail(part, budget_chars / 10) + "\n";
      }
      auto chunks = kb_->Search(q);
      if (!chunks.ok()) logger->warn("knowledge search failed: {}", chunks.status().ToString());
      if (chunks.ok() && !chunks->empty()) {
        std::string part;
        for (const auto& c : *chunks) {
          part += "## " + c.source + " (lines " + std::to_string(c.line_start) + "-" +
                  std::to_string(c.line_end) + ")\n```\n" + HeadAndTail(c.content, 1500) +
                  "\n```\n";
          if (retrieved) retrieved->knowledge.push_back(c.source + "#" + std::to_string(c.chunk));
        }
        out += "# Relevant knowledge (project code and documents)\n" +
               HeadAndTail(part, budget_chars / 8) + "\n";
      }
    }
  }

  if (tree) {
    auto files = tree->ListFiles("");
    if (files.ok()) {
      std::vector<std::string> kept;
      for (const auto& f : *files)
        if (!IsBuildOutputOrCache(f)) kept.push_back(f);
      // An existing repository gets a map of its definitions, most
      // referenced first; a new or definition-less one its file list.
      std::string map =
          BuildRepoMap(tree->root(), kept, std::min<size_t>(budget_chars / 10, kRepoMapChars));
      if (!map.empty()) {
        out += "# Repository map (definitions, most referenced first; read_file for more)\n" + map +
               "\n";
      } else {
        std::string list;
        for (const auto& f : kept) list += f + "\n";
        out += "# Workspace files\n" +
               (list.empty() ? "(empty)\n" : HeadAndTail(list, budget_chars / 10)) + "\n";
      }
    }
    std::string contents;
    for (const auto& f : in.task_files) {
      auto content = tree->ReadFile(f);
      if (content.ok()) contents += "## " + f + "\n```\n" + *content + "\n```\n";
    }
    if (!contents.empty())
      out += "# Current content of the files in scope\n" + HeadAndTail(contents, budget_chars / 4) +
             "\n";
  }

  if (!in.history.empty()) {
    std::string h;
    for (const auto& x : in.history) h += x + "\n\n";
    out += "# What happened so far\n" + HeadAndTail(h, budget_chars / 4) + "\n";
  }
  if (!in.diff.empty()) {
    const std::string base = tree ? tree->base_branch() : "main";
    out += (in.role == "reviewer"
                ? "# The change (diff against " + base + ")\n```diff\n"
                : "# The feature's change so far (diff against " + base + ")\n```diff\n") +
           HeadAndTail(DiffWithoutBuildOutputs(in.diff),
                       in.role == "reviewer" ? budget_chars / 3 : budget_chars / 8) +
           "\n```\n";
  }
  return HeadAndTail(out, budget_chars);
}

Status Optimizer::Fit(LlmRequest& request, const Summarizer& summarize, FitReport* report) const {
  FitReport local;
  FitReport& rep = report ? *report : local;
  const double window = static_cast<double>(budget_.window_tokens);
  auto& msgs = request.messages;
  rep.tokens_before = EstimateTokens(request);

  // 1. Old tool outputs become one-line stubs, whatever the size of the
  // request: the model saw them when they were new, and resending them every
  // turn is most of what a long conversation costs.
  std::map<std::string, const ToolCall*> calls;  // by id
  for (const auto& m : msgs)
    for (const auto& c : m.tool_calls) calls[c.id] = &c;
  int seen = 0;
  for (size_t i = msgs.size(); i-- > 1;) {
    Message& m = msgs[i];
    if (m.role == Role::kTool) {
      if (++seen <= kKeepToolOutputs || m.text.size() <= 200) continue;
      auto it = calls.find(m.tool_call_id);
      const std::string label = it == calls.end() ? "tool" : CallLabel(*it->second);
      m.text = "[" + label + ": " + std::to_string(Lines(m.text)) + " lines" +
               (m.is_error ? " of error" : "") + ", shown earlier]";
      ++rep.stubbed;
    } else if (m.role == Role::kAssistant && seen >= kKeepToolOutputs) {
      // File contents the model wrote before the last few tool results.
      for (auto& c : m.tool_calls) {
        for (const char* k : {"content", "new_text", "old_text"}) {
          if (!c.arguments.is_object() || !c.arguments.contains(k) || !c.arguments[k].is_string())
            continue;
          const std::string v = c.arguments[k].get<std::string>();
          if (v.size() <= 400) continue;
          c.arguments[k] = "[" + std::to_string(Lines(v)) + " lines, written earlier]";
          ++rep.stubbed;
        }
      }
    }
  }
  int64_t tokens = EstimateTokens(request);

  // 2. Above preserve_at: the older span is summarised. The span ends on a
  // multiple of 8 messages so the next turns reuse the same summary instead
  // of asking again every turn.
  if (tokens > window * budget_.preserve_at && msgs.size() > 6) {
    const size_t end = 1 + ((msgs.size() - 1 - 4) / 8) * 8;
    std::string summary;
    if (end > 1 && summarize) {
      LlmRequest ask;
      ask.model = request.model;
      ask.system = kSummarySystem;
      ask.max_tokens = 1024;
      ask.temperature = 0;
      ask.agent_role = kSummarizerRole;
      ask.feature_id = request.feature_id;
      ask.task_id = request.task_id;
      ask.cancelled = request.cancelled;
      ask.messages.push_back(Message::User(
          "# The task\n" + HeadAndTail(msgs[0].text, 4000) + "\n\n# Transcript to summarise\n" +
          Transcript(msgs, 1, end, static_cast<size_t>(window * 4 * 0.4))));
      const std::string key = RequestHash(ask);
      {
        std::lock_guard lock(summaries_mu_);
        if (auto it = summaries_.find(key); it != summaries_.end()) summary = it->second;
      }
      if (summary.empty()) {
        rep.summary_called = true;
        auto made = summarize(ask);
        if (made.ok() && !Trim(*made).empty()) {
          summary = *made;
          std::lock_guard lock(summaries_mu_);
          if (summaries_.size() > 1000) summaries_.clear();
          summaries_[key] = summary;
        } else {
          rep.fallback = made.ok() ? "the summary came back empty" : made.status().ToString();
        }
      }
    } else if (end > 1) {
      rep.fallback = "no summarizer";
    }
    if (!summary.empty()) {
      // The messages stay (the turn count and the pairing of tool calls and
      // results are unchanged); their content goes.
      for (size_t i = 1; i < end; ++i) {
        Message& m = msgs[i];
        if (m.role == Role::kAssistant) {
          m.text = m.tool_calls.empty() ? "[condensed]" : "";
          for (auto& c : m.tool_calls) {
            nlohmann::json kept = nlohmann::json::object();
            for (const char* k : {"path", "command", "query"})
              if (c.arguments.is_object() && c.arguments.contains(k)) kept[k] = c.arguments[k];
            c.arguments = kept;
          }
        } else {
          m.text = "[condensed: see the summary of earlier turns]";
        }
      }
      msgs[0].text +=
          "\n\n# Summary of earlier turns (condensed to fit the context budget)\n" + summary + "\n";
      rep.summarized = true;
    } else {
      // No summary: long texts of the older turns are cut instead.
      for (size_t i = 1; i + 4 < msgs.size(); ++i) {
        Message& m = msgs[i];
        if (m.text.size() > 400) {
          m.text = m.text.substr(0, 300) +
                   "\n... [condensed: " + std::to_string(m.text.size() - 300) +
                   " characters of an earlier turn left out] ...";
        }
      }
    }
    tokens = EstimateTokens(request);
  }
  rep.tokens_after = tokens;
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
           "afterwards, then a reviewer checks the change. End by calling submit_plan with the "
           "whole "
           "plan; a plan it refuses was not submitted: fix what it names and call it again.";
  }
  if (r == "coder") {
    return common +
           "You are a coder. Implement your task completely: write or edit the files, then run the "
           "relevant validation gates with run_command and fix what fails. Keep to your task's "
           "files where you can; other tasks may be running in parallel. When the work is done and "
           "checked, call finish with a summary of what changed and how you verified it. Change "
           "existing files with edit_file, and keep each write_file to a few hundred lines: a "
           "reply has an output limit, and a call cut off by it is not run.";
  }
  if (r == "reviewer") {
    return common +
           "You are the reviewer. Review the change (diff) against the acceptance criteria, using "
           "the gate results as evidence. Approve when every criterion is met and the gates pass; "
           "otherwise request changes with concrete, actionable comments. Cite evidence in your "
           "comments (gate names and results, files and lines of the diff). End by calling "
           "submit_review; a review it refuses was not submitted: fix what it names and call it "
           "again.";
  }
  return common;
}

}  // namespace af
