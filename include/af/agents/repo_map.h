#pragma once
// A repository map: the definitions (functions, classes, types, shell
// functions) of an existing repository's source files, ranked by how often
// their names are referenced across the repository, cut to a size budget.
// Given to the agents instead of a flat file list so a model sees the parts of
// a codebase everything else leans on first.
//
// Extraction is line-based and regex-driven (Python, C/C++, shell, JavaScript
// and TypeScript): approximate by design, cheap, and deterministic for the
// same files. Thread safety: a pure function.

#include <filesystem>
#include <string>
#include <vector>

namespace af {

struct RepoDefinition {
  std::string file;       // relative path
  int line = 0;           // 1-based
  std::string name;       // the defined identifier
  std::string signature;  // the definition's line, trimmed and capped
  int references = 0;     // occurrences of `name` elsewhere in the repository
};

// The definitions of `files` (paths relative to `root`), most referenced
// first (ties: path, then line). Unreadable, binary or very large files are
// skipped.
std::vector<RepoDefinition> ExtractDefinitions(const std::filesystem::path& root,
                                               const std::vector<std::string>& files);

// The map as text of at most `max_chars`: the top-ranked definitions grouped
// by file (files in path order, definitions in line order, each with its line
// number and reference count), then the other files by name as far as room
// allows. Empty when no file has a definition.
std::string BuildRepoMap(const std::filesystem::path& root, const std::vector<std::string>& files,
                         size_t max_chars);

}  // namespace af
