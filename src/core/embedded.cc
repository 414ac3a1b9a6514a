#include "af/core/embedded.h"

#include <string>

namespace af {

std::optional<std::string_view> FindEmbeddedFile(std::string_view name) {
  for (const EmbeddedFile& f : EmbeddedFiles())
    if (f.name == name) return f.content;
  return std::nullopt;
}

std::vector<EmbeddedFile> EmbeddedFilesUnder(std::string_view dir) {
  std::vector<EmbeddedFile> out;
  const std::string prefix = std::string(dir) + "/";
  for (const EmbeddedFile& f : EmbeddedFiles()) {
    if (f.name.substr(0, prefix.size()) != prefix) continue;
    if (f.name.find('/', prefix.size()) != std::string_view::npos) continue;  // not direct
    out.push_back(f);
  }
  return out;
}

}  // namespace af
