// The pure rules of `agent-factory doctor` and the report's two formats.
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "cli/doctor.h"

namespace af::cli {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string HumanBytes(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  } else {
    std::snprintf(buf, sizeof buf, "%.0f MiB", static_cast<double>(bytes) / (1ull << 20));
  }
  return buf;
}

// scheme://[user[:pass]@]host[:port][/...] -> host (lower case, no brackets).
std::string UrlHost(const std::string& url) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority =
      url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (size_t at = authority.rfind('@'); at != std::string::npos)
    authority = authority.substr(at + 1);
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    return Lower(authority.substr(1, close == std::string::npos ? std::string::npos : close - 1));
  }
  if (size_t colon = authority.find(':'); colon != std::string::npos) authority.resize(colon);
  return Lower(authority);
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0 ||
         (host.size() > 10 && host.compare(host.size() - 10, 10, ".localhost") == 0);
}

// NO_PROXY as libcurl reads it: "*" for every host, else comma-separated
// names, each matching the host itself or any subdomain (a leading dot is
// optional).
bool NoProxyCovers(const std::string& no_proxy, const std::string& host) {
  size_t start = 0;
  while (start <= no_proxy.size()) {
    size_t end = no_proxy.find(',', start);
    if (end == std::string::npos) end = no_proxy.size();
    std::string entry = no_proxy.substr(start, end - start);
    while (!entry.empty() && entry.front() == ' ') entry.erase(0, 1);
    while (!entry.empty() && entry.back() == ' ') entry.pop_back();
    entry = Lower(entry);
    if (entry == "*") return true;
    if (!entry.empty() && entry[0] == '.') entry.erase(0, 1);
    if (!entry.empty()) {
      if (host == entry) return true;
      if (host.size() > entry.size() &&
          host.compare(host.size() - entry.size(), entry.size(), entry) == 0 &&
          host[host.size() - entry.size() - 1] == '.')
        return true;
    }
    start = end + 1;
  }
  return false;
}

}  // namespace

std::string MaskUrlPassword(const std::string& url) {
  size_t scheme = url.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  size_t at = url.find('@', start);
  if (at == std::string::npos) return url;
  size_t colon = url.find(':', start);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

Finding FreeSpaceFinding(const std::string& dir, uint64_t available, uint64_t total) {
  const double share = total > 0 ? 100.0 * static_cast<double>(available) / total : 0.0;
  char pct[16];
  std::snprintf(pct, sizeof pct, "%.0f%%", share);
  std::string found = HumanBytes(available) + " free (" + pct + ") on the file system of " + dir;
  if (available < (1ull << 30) || share < 5.0) {
    return {false, "only " + found,
            "free space there (old logs under logs/, old backups), or move the data directory "
            "to a larger disk (AF_DATA_DIR)"};
  }
  return {true, found, ""};
}

std::optional<int64_t> ParseHttpDate(const std::string& value) {
  std::tm tm{};
  const char* end = strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (end == nullptr) return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
}

Finding ClockSkewFinding(const std::string& host, int64_t local_s, int64_t server_s) {
  const int64_t skew = local_s - server_s;
  const int64_t abs_skew = skew < 0 ? -skew : skew;
  if (abs_skew > 60) {
    return {false,
            "this machine's clock is " + std::to_string(abs_skew) + " s " +
                (skew > 0 ? "ahead of " : "behind ") + host + "'s (its Date header)",
            "set the clock right and keep it so: `timedatectl set-ntp true` (or run chrony/ntpd); "
            "signed requests, TLS and timestamps go wrong with a skewed clock"};
  }
  return {true, "within " + std::to_string(abs_skew) + " s of " + host + "'s clock", ""};
}

Finding ProxyFinding(const std::map<std::string, std::string>& env, const std::string& url) {
  auto get = [&](const char* name) {
    auto it = env.find(name);
    return it == env.end() ? std::string() : it->second;
  };
  const bool https = Lower(url).rfind("https://", 0) == 0;
  std::string var, proxy;
  // libcurl ignores an upper-case HTTP_PROXY (it may come from a CGI header).
  const std::vector<const char*> names =
      https ? std::vector<const char*>{"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}
            : std::vector<const char*>{"http_proxy", "all_proxy", "ALL_PROXY"};
  for (const char* name : names) {
    if (!get(name).empty()) {
      var = name;
      proxy = get(name);
      break;
    }
  }
  const std::string host = UrlHost(url);
  if (proxy.empty()) return {true, "no proxy applies to " + host, ""};
  std::string no_proxy = get("no_proxy");
  if (no_proxy.empty()) no_proxy = get("NO_PROXY");
  const std::string shown = var + "=" + MaskUrlPassword(proxy);
  if (NoProxyCovers(no_proxy, host)) {
    return {true, shown + " is set, but NO_PROXY exempts " + host, ""};
  }
  if (IsLoopbackHost(host)) {
    return {false,
            shown + " applies to " + url +
                ", a loopback address not in NO_PROXY: requests to "
                "the local model server go to the proxy instead",
            "export NO_PROXY=127.0.0.1,localhost,::1 (or unset " + var + ")"};
  }
  return {true, "requests to " + host + " go through " + shown, ""};
}

Finding PrivateModeFinding(const std::string& path, unsigned mode, bool is_directory) {
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", mode & 07777);
  if ((mode & 077) != 0) {
    return {false,
            path + " is mode " + octal + ": other users may read it" +
                (is_directory ? " (it holds the history, logs and key hashes)" : ""),
            std::string("chmod ") + (is_directory ? "700 " : "600 ") + path};
  }
  return {true, path + " is mode " + octal, ""};
}

bool DoctorReport::ok() const {
  for (const auto& c : checks)
    if (!c.ok) return false;
  return true;
}

nlohmann::json DoctorReport::ToJson() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : checks) {
    nlohmann::json j = {{"name", c.name}, {"ok", c.ok}, {"found", c.found}, {"fix", c.fix}};
    if (!c.fixed.empty()) j["fixed"] = c.fixed;
    list.push_back(std::move(j));
  }
  return {{"ok", ok()}, {"checks", list}};
}

std::string DoctorReport::ToText() const {
  std::string out;
  int bad = 0;
  for (const auto& c : checks) {
    out += std::string(c.ok ? "✔ " : "✘ ") + c.name + ": " + c.found + "\n";
    if (!c.ok) {
      ++bad;
      out += "    fix: " + c.fix + "\n";
    }
    if (!c.fixed.empty()) {
      const bool failed = c.fixed.rfind(kCouldNotFix, 0) == 0;
      out += failed ? "    not fixed: " + c.fixed.substr(kCouldNotFix.size()) + "\n"
                    : "    fixed: " + c.fixed + "\n";
    }
  }
  out += bad == 0 ? "all " + std::to_string(checks.size()) + " checks passed\n"
                  : std::to_string(bad) + " of " + std::to_string(checks.size()) +
                        " checks found a problem\n";
  return out;
}

}  // namespace af::cli
