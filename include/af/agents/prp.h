#pragma once
// Feature input: the PRP ("product requirement prompt") model, its
// JSON and Markdown parsers, and the work plan validation that runs before any
// agent does.
//
// All functions here are pure (no I/O except LoadPrpFile), thread-safe and
// never throw on bad input: bad input is an InvalidArgument whose message names
// the field or line and whose hint says how to fix it.

#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af {

// Largest PRP accepted (file or Markdown text): 1 MiB.
inline constexpr std::size_t kMaxPrpBytes = std::size_t{1} << 20;
// Longest feature title shown (FeatureRequest::DisplayTitle), in bytes.
inline constexpr std::size_t kMaxTitleBytes = 200;

// One feature request, whatever its source (JSON body, Markdown PRP file).
struct FeatureRequest {
  std::string title;
  std::string description;
  std::vector<std::string> requirements;
  std::vector<std::string> acceptance_criteria;  // JSON alias: success_criteria
  std::string tech_stack;                        // e.g. "python3 + unittest"
  std::vector<std::string> validation_gates;     // shell commands, run in order in the workspace
  std::string context;                           // free text, file references, URLs
  std::string priority = "medium";               // low|medium|high|critical
  std::string project = "default";               // workspace name: [A-Za-z0-9][A-Za-z0-9._-]{0,63}
  // Per-request override of config validation.challenge_vague_requirements.
  std::optional<bool> challenge_vague_requirements;

  // Every field under its canonical name (acceptance_criteria, not the alias);
  // challenge_vague_requirements only when set. FeatureRequestFromJson of the
  // result gives back an equal request.
  nlohmann::json ToJson() const;

  // The feature's one-line name in lists, logs and the terminal: the title
  // (or, without one, the description's start) with control characters and
  // line breaks as spaces, cut at kMaxTitleBytes on a UTF-8 boundary with
  // "...". The request keeps the whole text.
  std::string DisplayTitle() const;

  bool operator==(const FeatureRequest&) const = default;
};

// Builds a request from the JSON fields of a PRP.
//  - The value must be an object. A null field counts as absent.
//  - Strings: title, description, tech_stack, context, priority, project.
//    Arrays of strings: requirements, acceptance_criteria (alias
//    success_criteria; giving both is an error), validation_gates; their items
//    are trimmed and blank items dropped. Boolean: challenge_vague_requirements.
//  - Errors (InvalidArgument): a wrong type names the field and the expected
//    type ("requirements must be an array of strings (item 2 is a number)");
//    unknown fields are all listed, with a suggestion when one is close
//    ("unknown field 'titel' (did you mean 'title'?)"); priority not one of
//    low|medium|high|critical (case-insensitive, stored lower-case); project
//    not matching [A-Za-z0-9][A-Za-z0-9._-]{0,63} (it becomes a directory name).
Result<FeatureRequest> FeatureRequestFromJson(const nlohmann::json& j);

// Parses a Markdown PRP. `source_name` (e.g. the file name) prefixes error
// messages only.
//
// Structure: the title is the first `# ` heading outside code fences; with no
// such heading, the first non-empty line of a `## Title` section, else of the
// `## Goal` section. Sections are `## ` headings, matched case-insensitively
// (trailing `:` and `#` ignored); `###` and deeper headings are content of the
// enclosing section. Fences (``` or ~~~) are honoured everywhere: nothing
// inside a fence is a heading, a bullet or a metadata line.
//
// Mapping of sections to fields:
//  - Goal, Why, What, Requirements -> description, in this order: the Goal
//    text, then "Why:\n<text>", then the prose of What and Requirements (their
//    non-bullet lines), then any text between the title and the first section.
//  - What, Requirements, Implementation Blueprint: bullet items ->
//    requirements, in document order. A bullet is `-`, `*` or `+` followed by
//    a space, or `N.`/`N)` followed by a space, at any indentation; a checkbox
//    `[ ]`/`[x]` after the marker is dropped; indented non-bullet lines
//    directly after an item continue it. The prose and code of Implementation
//    Blueprint go to context under a "## Implementation Blueprint" heading.
//  - Success Criteria, Acceptance Criteria: bullet items -> acceptance_criteria
//    (when the section has no bullets, each paragraph is one criterion).
//  - Validation Loop (alias Validation Gates, Validation): every fenced block
//    whose info string is bash, sh, shell or console -> validation_gates, one
//    gate per non-empty line that is not a `#` comment; a leading `$ ` prompt
//    is dropped and a line ending in `\` continues on the next. Other fences
//    and prose there are ignored.
//  - All Needed Context, Context -> context (verbatim).
//  - Tech Stack -> tech_stack: the non-empty lines (bullet markers dropped)
//    joined with "; " when that is at most 200 characters, else the first one.
//  - Priority, Project sections -> their first non-empty line.
//  - Title -> title (see above); otherwise dropped.
//  - Any other section -> context, under its original `## ` heading.
// Metadata lines: outside fences, a line `Priority: VALUE` or `Project: VALUE`
// (case-insensitive key, optional `**` bold, VALUE a single word) sets that
// field and is not kept as text.
//
// Never crashes; time and memory are linear in the input size. Errors
// (InvalidArgument): text over kMaxPrpBytes, text that is not valid UTF-8, an
// invalid priority or project (same rules as the JSON). Empty input, or input
// with no title and no description, parses fine: ValidateWorkPlan reports it.
Result<FeatureRequest> ParseMarkdownPrp(std::string_view text, std::string_view source_name);

// The work plan validation (run before any agent). Returns the issues, empty when the plan
// is accepted. `challenge_vague_requirements` is the config flag
// (validation.challenge_vague_requirements); the request's own
// challenge_vague_requirements, when set, overrides it. When the check is off
// no issue is reported at all: the request is accepted as is.
//
// Issues, in this order, worded exactly:
//  - "Missing prompt/requirements": title and description both blank.
//  - "Tech stack not specified": tech_stack blank.
//  - "Success criteria not provided": no acceptance criteria.
//  - "Prompt lacks detail": the prompt text (title, description, requirements,
//    acceptance criteria) has fewer than 10 words, or fewer than 3 of these 5
//    aspects are covered:
//      what:        description not blank, or at least one requirement;
//      why:         the prompt text or context has a "Why:" line or the
//                   whole word "why"/"because", or "so that"/"in order to";
//      how:         tech_stack not blank, or at least one validation gate;
//      constraints: at least one acceptance criterion, or the prompt text has
//                   a whole word must/should/only/never/limit/limits/
//                   constraint/constraints;
//      scope:       at least one requirement, or context not blank.
//  - "Vague requirement: 'WORD'" for each of simple, quick, quickly, just,
//    easy, whatever, somehow found in the prompt text as a whole word
//    (case-insensitive; a word is a run of ASCII letters, digits, `_` and
//    non-ASCII bytes), once per word, in this list's order, WORD lower-case.
std::vector<std::string> ValidateWorkPlan(const FeatureRequest& request,
                                          bool challenge_vague_requirements);

// The refusal of a challenged work plan, the one form every caller uses
// (Pipeline::Submit returns it, the API maps it to 422 with the issues):
// InvalidArgument "Work plan challenged:" then a "\n  - ISSUE" line each,
// with a hint on how to fix or bypass the check.
Status WorkPlanChallenged(const std::vector<std::string>& issues);
// The issues of a WorkPlanChallenged status (possibly with context added
// after them); nullopt for any other status.
std::optional<std::vector<std::string>> ChallengedIssues(const Status& status);

// The report `agent-factory validate` prints: a summary (title, project,
// priority, tech stack, counts of requirements, criteria and gates), then
// "Work plan OK", or "Work plan challenged:" with one "  - ISSUE" line each and
// a hint on how to fix or bypass the check. Ends with a newline.
std::string FormatValidationReport(const FeatureRequest& request,
                                   const std::vector<std::string>& issues);

// Reads a PRP file: `.json` (case-insensitive) -> FeatureRequestFromJson,
// anything else -> ParseMarkdownPrp. Errors: NotFound naming the path when it
// does not exist; InvalidArgument when it is not a regular file, is over
// kMaxPrpBytes, is malformed JSON (with line and column) or fails to parse;
// messages start with the path.
Result<FeatureRequest> LoadPrpFile(const std::filesystem::path& path);

}  // namespace af
