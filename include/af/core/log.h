#pragma once
// Logging on spdlog. Human lines go to the terminal (stderr), JSON lines to
// `<data_dir>/logs/agent-factory.log` with size rotation. Each component
// (`llm`, `store`, `api`, ...) has its own logger whose level comes from a spec
// like `info,llm=debug` (AF_LOG). Every line passes a redaction filter that
// replaces registered secret values and anything shaped like an API key
// before it is written, on every sink.
//
// Thread safety: all functions may be called from any thread. Init may be
// called again (e.g. after the data directory is known); loggers obtained
// earlier keep working and pick up the new sinks and levels.

#include <spdlog/spdlog.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "af/core/status.h"

namespace af::log {

struct LevelSpec {
  spdlog::level::level_enum default_level = spdlog::level::info;
  std::map<std::string, spdlog::level::level_enum> components;
};

// "info,llm=debug,store=warn" -> LevelSpec. Levels: trace, debug, info, warn,
// error, critical, off. InvalidArgument names the bad part.
Result<LevelSpec> ParseLevelSpec(std::string_view spec);

struct LogOptions {
  std::string level = "info";        // a level spec, see ParseLevelSpec
  std::string file;                  // JSON log file; empty = none
  size_t max_file_bytes = 10 << 20;  // rotate at 10 MiB
  size_t max_files = 5;              // rotated files kept
  bool console = true;               // human lines on stderr
  // A level ("error") below which the terminal shows nothing, whatever
  // `level` lets through to the file; empty = no extra filter. For commands
  // that report on the terminal themselves (`run`).
  std::string console_level;
};

// Installs the sinks and levels. Fails (and changes nothing) on a bad level
// spec or a log file that cannot be created, naming the path. Warnings and
// errors reach the file at once, other lines within about a second (a
// background flush), so a process killed with SIGKILL keeps its log.
Status Init(const LogOptions& options);

// The logger of a component, created on first use with the level the spec
// gives it. Never null.
std::shared_ptr<spdlog::logger> Get(std::string_view component);

// Registers a secret value: from now on it is replaced by "[REDACTED]" in every
// line. Values shorter than 6 characters are ignored (they would mangle text).
void AddSecret(std::string_view value);

// What the filter does to a line: registered secrets and API-key-shaped tokens
// (sk-..., sk-ant-..., af_...) become "[REDACTED]".
std::string Redact(std::string_view text);

// Drops every registered secret (tests).
void ClearSecretsForTest();

}  // namespace af::log
