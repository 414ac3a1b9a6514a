#pragma once
// `agent-factory doctor`: one check per failure mode an installation can meet
// (configuration, data directory, schema, git, the sandbox, the port, the
// model provider, proxies, the knowledge index, secrets files, ...). Each
// check says what it found and, when something is wrong, what to run or
// change. Some have a safe fix that `--fix` applies (permissions, pending
// migrations, the knowledge index, a missing data directory).
//
// The pure rules (free space, clock skew, proxies, file modes) are plain
// functions here so they are unit tested; RunDoctor runs every check against
// the real machine (used by `doctor` and by `logs collect`).

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"
#include "cli/commands.h"

namespace af::cli {

// DoctorCheck::fixed begins with this when --fix tried and failed.
inline constexpr std::string_view kCouldNotFix = "could not fix: ";

struct DoctorCheck {
  std::string name;  // "config", "data_dir", ...
  bool ok = true;
  std::string found;  // what was found, one line
  std::string fix;    // what to run or change; empty when ok
  std::string
      fixed;  // what --fix did for it (kCouldNotFix + why when it failed); empty when nothing
  // The safe fix --fix may apply (empty when there is none): returns what it
  // did, e.g. "chmod 700 /srv/af/data".
  std::function<Result<std::string>()> apply;
};

struct DoctorReport {
  std::vector<DoctorCheck> checks;
  bool ok() const;
  // {"ok":bool,"checks":[{"name","ok","found","fix","fixed"?}]}
  nlohmann::json ToJson() const;
  // "✔ name: found" or "✘ name: found" + "    fix: ..." (+ "    fixed: ...").
  std::string ToText() const;
};

// Runs every check. With `fix`, applies the safe fixes of the failed checks
// (in check order), then checks again and reports the second run, each fixed
// check carrying what was done.
DoctorReport RunDoctor(const GlobalOptions& g, bool fix);

// --- Pure rules (unit tested) ----------------------------------------------

struct Finding {
  bool ok = true;
  std::string found;
  std::string fix;
};

// Free space on the data directory's file system: a problem under 1 GiB or
// under 5% of the file system.
Finding FreeSpaceFinding(const std::string& dir, uint64_t available_bytes, uint64_t total_bytes);

// An HTTP Date header ("Sun, 06 Nov 1994 08:49:37 GMT") as unix seconds.
std::optional<int64_t> ParseHttpDate(const std::string& value);

// The local clock against the provider's Date: a problem beyond 60 s either way.
Finding ClockSkewFinding(const std::string& host, int64_t local_unix_s, int64_t server_unix_s);

// Which proxy the provider's requests take, given the environment (as libcurl
// reads it: http_proxy in lower case only for http://, HTTPS_PROXY or
// https_proxy for https://, then ALL_PROXY; NO_PROXY/no_proxy exempts hosts).
// A problem when a proxy applies to a loopback base URL (a local model
// server behind a proxy that cannot reach it). Proxy passwords are masked.
Finding ProxyFinding(const std::map<std::string, std::string>& env, const std::string& url);

// "user:pass@host" in a URL becomes "user:***@host".
std::string MaskUrlPassword(const std::string& url);

// A file holding secrets must not be readable or writable by anyone else:
// a problem when `mode` has any group or other bit.
Finding PrivateModeFinding(const std::string& path, unsigned mode, bool is_directory);

}  // namespace af::cli
