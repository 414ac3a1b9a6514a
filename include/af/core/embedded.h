#pragma once
// Data files built into the binary (cmake/embed_files.cmake): the dashboard
// (web/), the skills/ library and the replay recordings of the examples. The
// last two are the defaults when no path is configured, so an installed or
// copied binary needs nothing from the source tree at run time.

#include <optional>
#include <string_view>
#include <vector>

namespace af {

struct EmbeddedFile {
  std::string_view name;     // path relative to the source tree: "skills/cpp.md"
  std::string_view content;  // the bytes
};

// Every embedded file, sorted by name. Lives for the whole program.
const std::vector<EmbeddedFile>& EmbeddedFiles();

// The file called `name` ("examples/replay/examples.jsonl"), or nullopt.
std::optional<std::string_view> FindEmbeddedFile(std::string_view name);

// The files directly under the directory `dir` ("skills"), sorted by name.
std::vector<EmbeddedFile> EmbeddedFilesUnder(std::string_view dir);

}  // namespace af
