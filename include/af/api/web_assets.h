#pragma once
// Static files of web/, built into the binary (af/core/embedded.h) and served
// by the dashboard routes.

#include <string_view>
#include <vector>

namespace af {

struct WebAsset {
  std::string_view path;          // "/index.html"
  std::string_view content;       // the bytes
  std::string_view content_type;  // "text/html; charset=utf-8"
};

// Every embedded file, sorted by path. Lives for the whole program.
const std::vector<WebAsset>& WebAssets();

}  // namespace af
