#pragma once
// The optimizer role: builds each agent's context within the context budget
// (context.preserve_at / context.critical_at) and keeps a running conversation inside it.
//
// Context = the feature request, the task, the files in scope, the workspace
// file list, skills (skills/*.md whose keywords match the feature), the
// memories and knowledge-base chunks most relevant to the task (hybrid search
// of the project's and global namespaces) and the results of earlier tasks. Assembly is
// deterministic for the same state, so a resumed step sends the same request and replays its
// recorded answer instead of paying again.
//
// Thread safety: all methods may be called concurrently.

#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "af/core/status.h"
#include "af/llm/types.h"

namespace af {

class FeatureTree;
class KnowledgeBase;

struct ContextBudget {
  int64_t window_tokens = 200'000;
  double preserve_at = 0.75;  // condense older turns above this share
  double critical_at = 0.90;  // never send a request above this share
};

// EstimateTokens (af/llm/types.h) is the token measure used throughout.

// A unified diff without the files IsBuildOutputOrCache (af/workspace/workspace.h) names, with one
// line saying which were left out.
std::string DiffWithoutBuildOutputs(const std::string& diff);

// A skill file: `# Title`, then `keywords: a, b, c`, then the text.
struct Skill {
  std::string name;  // file stem
  std::vector<std::string> keywords;
  std::string text;
};

// Reads skills/*.md (sorted by name). A missing directory gives none.
std::vector<Skill> LoadSkills(const std::filesystem::path& dir);

// The skills/ library built into the binary (af/core/embedded.h): the default
// when no skills directory is configured.
std::vector<Skill> BuiltinSkills();

struct ContextInput {
  std::string role;        // planner | coder | reviewer
  nlohmann::json request;  // the feature request (FeatureRequest::ToJson)
  std::string project;
  // For coder tasks:
  std::string task_title, task_description;
  std::vector<std::string> task_files;
  // Files other tasks of the plan own, which this task must not edit (they may
  // run at the same time in the same worktree): "task title" -> files.
  std::vector<std::pair<std::string, std::vector<std::string>>> sibling_files;
  // For fix tasks: the files the feature changed so far (with `diff`).
  std::vector<std::string> changed_files;
  // Results of completed tasks, gate output, review comments: "what happened so far".
  std::vector<std::string> history;
  // For the reviewer and fix tasks: the diff (build outputs are left out).
  std::string diff;
  // An existing repository: a map of its definitions (RepoMap) instead of a
  // flat file list; empty = the file list.
  std::string repo_map;
};

// What Fit did to a request, for the agent's `context.condensed` event.
struct FitReport {
  int stubbed = 0;              // older tool outputs replaced by one-line stubs
  bool summarized = false;      // an older span was replaced by a summary
  bool summary_called = false;  // ... made by a model call now (not reused)
  std::string fallback;         // why a summary could not be made (stubs only)
  int64_t tokens_before = 0, tokens_after = 0;
};

// Asks a model to summarise (the request's agent_role is kSummarizerRole);
// returns the summary text. Provided by the agent loop so the call is made,
// counted and recorded like any other (a resumed feature replays it).
using Summarizer = std::function<Result<std::string>(const LlmRequest& request)>;

// The agent_role of summarisation requests: no recording of the agents' roles
// matches it.
inline constexpr char kSummarizerRole[] = "summarizer";

// What a context was given from memory and the knowledge base, for the event
// that says so: memory ids and "source#chunk" of knowledge chunks.
struct Retrieved {
  std::vector<std::string> memories;
  std::vector<std::string> knowledge;
  bool empty() const { return memories.empty() && knowledge.empty(); }
};

class Optimizer {
 public:
  // `kb` may be null (no memory or knowledge in contexts). `max_results` is
  // memory.max_results: the memories and chunks each context may hold.
  Optimizer(ContextBudget budget, std::vector<Skill> skills, KnowledgeBase* kb,
            int max_results = 5);

  // The first user message for an agent. Never larger than preserve_at of the
  // window: long parts (diff, files, history, memories) are cut with a
  // visible marker. `retrieved` (optional) receives what memory and knowledge
  // were put in. A failing search leaves them out (logged), never the context.
  std::string BuildContext(const ContextInput& in, FeatureTree* tree,
                           Retrieved* retrieved = nullptr) const;

  // Called before every model call, on a copy of the conversation:
  //  - always: tool outputs older than the last kKeepToolOutputs become
  //    one-line stubs ("[read_file a.py: 120 lines, shown earlier]"), and so do
  //    file contents written by older write_file calls;
  //  - above preserve_at: the older span (all but the first message and the
  //    last turns) is summarised by `summarize` and its messages emptied; the
  //    summary goes into the first message. Summaries are reused for the same
  //    span. Without a summarizer, or when it fails, long texts are cut
  //    instead and `report->fallback` says why;
  //  - still above critical_at: ResourceExhausted ("context ... exceeds
  //    context.critical_at").
  // The number of messages and their roles never change (the turn count stays).
  Status Fit(LlmRequest& request, const Summarizer& summarize = {},
             FitReport* report = nullptr) const;

  static constexpr int kKeepToolOutputs = 6;

  // The skills that apply to a feature (keywords found in its title,
  // description or tech stack).
  std::vector<const Skill*> SkillsFor(const nlohmann::json& request) const;

  const ContextBudget& budget() const { return budget_; }

 private:
  ContextBudget budget_;
  std::vector<Skill> skills_;
  KnowledgeBase* kb_;  // not owned; may be null
  int max_results_;
  // Summaries made, by the hash of their summarisation request.
  mutable std::mutex summaries_mu_;
  mutable std::map<std::string, std::string> summaries_;
};

// The system prompt of a role.
std::string SystemPrompt(const std::string& role);

}  // namespace af
