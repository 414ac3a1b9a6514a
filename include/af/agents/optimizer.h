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

// Rough token estimate (4 characters a token, plus per-message overhead):
// good enough to stay inside a budget, which is all it is used for.
int64_t EstimateTokens(const LlmRequest& request);

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
  // Results of completed tasks, gate output, review comments: "what happened so far".
  std::vector<std::string> history;
  // For the reviewer: the diff and the gate results.
  std::string diff;
};

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

  // Called before every model call. When the request is above preserve_at,
  // condenses older tool results (keeping the first message and the last two
  // turns whole); returns ResourceExhausted ("context ... exceeds
  // context.critical_at") when it is still above critical_at.
  Status Fit(LlmRequest& request) const;

  // The skills that apply to a feature (keywords found in its title,
  // description or tech stack).
  std::vector<const Skill*> SkillsFor(const nlohmann::json& request) const;

  const ContextBudget& budget() const { return budget_; }

 private:
  ContextBudget budget_;
  std::vector<Skill> skills_;
  KnowledgeBase* kb_;  // not owned; may be null
  int max_results_;
};

// The system prompt of a role.
std::string SystemPrompt(const std::string& role);

}  // namespace af
