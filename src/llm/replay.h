#pragma once
// The replay provider's recordings: a JSONL file, one exchange per line,
//   {"match": {"role": R, "contains": S, "turn": N}, "response": {...}}
// Internal; exposed for unit tests.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "af/core/status.h"
#include "af/llm/types.h"

namespace af {
struct LlmOptions;
class LlmClient;
}  // namespace af

namespace af::llm {

struct ReplayEntry {
  std::optional<std::string> role;      // == request.agent_role
  std::optional<std::string> contains;  // in the system prompt or the first user message
  std::optional<int> turn;              // == assistant messages already in the conversation
  LlmResponse response;
  int line = 0;  // 1-based line in the file
};

// Parses recordings. Blank lines are skipped. Errors: kInvalidArgument naming
// `source_name:line` and what is wrong.
Result<std::vector<ReplayEntry>> ParseReplay(std::string_view text, const std::string& source_name);

// Reads and parses a file; kNotFound when it cannot be read.
Result<std::vector<ReplayEntry>> LoadReplayFile(const std::string& path);

// The number of assistant messages in the request's conversation.
int ReplayTurn(const LlmRequest& request);

// The first entry whose conditions all hold, or kNotFound with a hint naming
// how to configure a real provider.
Result<const ReplayEntry*> MatchReplay(const std::vector<ReplayEntry>& entries,
                                       const LlmRequest& request);

// The replay LlmClient over options.replay_file (loaded once, here).
Result<std::unique_ptr<LlmClient>> MakeReplayClient(const LlmOptions& options);

}  // namespace af::llm
