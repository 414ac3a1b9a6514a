#include "af/api/web_assets.h"

#include "af/core/embedded.h"

namespace af {
namespace {

constexpr std::string_view kWebDir = "web/";

std::string_view ContentType(std::string_view path) {
  auto ends = [&](std::string_view ext) {
    return path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".json")) return "application/json";
  return "application/octet-stream";
}

}  // namespace

const std::vector<WebAsset>& WebAssets() {
  static const std::vector<WebAsset> kAssets = [] {
    std::vector<WebAsset> out;
    for (const EmbeddedFile& f : EmbeddedFiles()) {
      if (f.name.substr(0, kWebDir.size()) != kWebDir) continue;
      // "web/index.html" is served at "/index.html".
      const std::string_view path = f.name.substr(kWebDir.size() - 1);
      out.push_back({path, f.content, ContentType(path)});
    }
    return out;
  }();
  return kAssets;
}

}  // namespace af
