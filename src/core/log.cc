#include "af/core/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <sys/stat.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "af/core/private_files.h"
#include "af/core/strings.h"

namespace af::log {
namespace {

struct Registry {
  std::mutex mu;  // guards everything below
  LevelSpec spec;
  std::vector<spdlog::sink_ptr> sinks;
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;
};

Registry& Reg() {
  static Registry* r = new Registry();  // never destroyed: loggers outlive statics
  return *r;
}

// Secrets are read on every line and written rarely.
std::shared_mutex secrets_mu;
std::vector<std::string>& Secrets() {
  static auto* v = new std::vector<std::string>();
  return *v;
}

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

// Replaces key-shaped tokens: a prefix followed by at least 16 token characters.
// Catches keys nobody registered (e.g. echoed back in a provider error).
void RedactShapes(std::string& s) {
  static const char* kPrefixes[] = {"sk-", "af_"};
  for (const char* prefix : kPrefixes) {
    size_t plen = std::strlen(prefix);
    size_t pos = 0;
    while ((pos = s.find(prefix, pos)) != std::string::npos) {
      if (pos > 0 && IsTokenChar(s[pos - 1])) {
        pos += plen;
        continue;
      }
      size_t end = pos + plen;
      while (end < s.size() && IsTokenChar(s[end])) ++end;
      if (end - pos - plen >= 16) {
        s.replace(pos, end - pos, "[REDACTED]");
        pos += 10;
      } else {
        pos = end;
      }
    }
  }
}

// Wraps a formatter so the payload is redacted before any sink sees it.
class RedactingFormatter final : public spdlog::formatter {
 public:
  explicit RedactingFormatter(std::unique_ptr<spdlog::formatter> inner)
      : inner_(std::move(inner)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string redacted = Redact(std::string_view(msg.payload.data(), msg.payload.size()));
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(redacted.data(), redacted.size());
    inner_->format(copy, dest);
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<RedactingFormatter>(inner_->clone());
  }

 private:
  std::unique_ptr<spdlog::formatter> inner_;
};

// One JSON object per line: {"ts","level","component","msg","thread"}.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto t = std::chrono::system_clock::to_time_t(msg.time);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()) % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[64];
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms.count()));
    auto lvl = spdlog::level::to_string_view(msg.level);
    nlohmann::json j = {
        {"ts", ts},
        {"level", std::string(lvl.data(), lvl.size())},
        {"component", std::string(msg.logger_name.data(), msg.logger_name.size())},
        {"msg", std::string(msg.payload.data(), msg.payload.size())},
        {"thread", msg.thread_id},
    };
    std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// Writes every sink's buffer out once a second, so a process killed with
// SIGKILL loses at most the last second of lines (warnings and errors are
// flushed at once by their logger). One thread per process, started with the
// first log file; it is stopped and joined at exit (before the statics it
// uses go), after a last flush.
class Flusher {
 public:
  static void Start() {
    static std::once_flag once;
    std::call_once(once, [] {
      static Flusher* const f = new Flusher();  // never destroyed: joined at exit
      f->thread_ = std::thread([] { f->Loop(); });
      std::atexit([] { f->Halt(); });
    });
  }

 private:
  static void FlushAll() {
    std::vector<spdlog::sink_ptr> sinks;
    {
      std::lock_guard lock(Reg().mu);
      sinks = Reg().sinks;
    }
    for (const auto& sink : sinks) {
      try {
        sink->flush();
      } catch (const std::exception&) {
        // A full disk must not end the process; the next flush tries again.
      }
    }
  }

  void Loop() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
      lock.unlock();
      FlushAll();
      lock.lock();
    }
  }

  void Halt() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    FlushAll();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

spdlog::level::level_enum LevelFor(const LevelSpec& spec, std::string_view component) {
  auto it = spec.components.find(std::string(component));
  return it == spec.components.end() ? spec.default_level : it->second;
}

}  // namespace

Result<LevelSpec> ParseLevelSpec(std::string_view spec) {
  LevelSpec out;
  auto parse_level = [](std::string_view name, spdlog::level::level_enum* lvl) {
    static const std::pair<const char*, spdlog::level::level_enum> kLevels[] = {
        {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
        {"info", spdlog::level::info},         {"warn", spdlog::level::warn},
        {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
        {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
    for (const auto& [n, l] : kLevels) {
      if (name == n) {
        *lvl = l;
        return true;
      }
    }
    return false;
  };
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    std::string_view part = spec.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (!part.empty()) {
      auto eq = part.find('=');
      std::string_view name = eq == std::string_view::npos ? part : part.substr(eq + 1);
      spdlog::level::level_enum lvl;
      if (!parse_level(name, &lvl)) {
        return InvalidArgument(
            "bad log level '" + std::string(name) + "' in '" + std::string(spec) + "'",
            "use a spec like 'info,llm=debug' with levels trace, debug, info, "
            "warn, error, critical, off");
      }
      if (eq == std::string_view::npos)
        out.default_level = lvl;
      else
        out.components[std::string(part.substr(0, eq))] = lvl;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

Status Init(const LogOptions& options) {
  AF_ASSIGN_OR_RETURN(LevelSpec spec, ParseLevelSpec(options.level));
  LevelSpec console_spec;
  console_spec.default_level = spdlog::level::trace;
  if (!options.console_level.empty()) {
    AF_ASSIGN_OR_RETURN(console_spec, ParseLevelSpec(options.console_level));
  }
  std::vector<spdlog::sink_ptr> sinks;
  if (options.console) {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_formatter(std::make_unique<RedactingFormatter>(
        std::make_unique<spdlog::pattern_formatter>("%H:%M:%S.%e %^%-5l%$ [%n] %v")));
    console->set_level(console_spec.default_level);
    sinks.push_back(console);
  }
  if (!options.file.empty()) {
    // Private (0700 directory, 0600 files): the log names features, paths and
    // requests. Rotation creates new files, so the mode is set on every open.
    const std::filesystem::path dir = std::filesystem::path(options.file).parent_path();
    if (std::error_code ec = CreatePrivateDirectories(dir); ec) {
      // The cause (permission denied, a file where a directory should be),
      // not the ENOENT that opening the file would report next.
      return FailedPrecondition(
          "cannot create the log directory " + dir.string() + ": " + ec.message(),
          "make the data directory writable by this user (or a directory, if a file is in the "
          "way), or set AF_DATA_DIR to one that is");
    }
    spdlog::file_event_handlers private_files;
    private_files.after_open = [](const spdlog::filename_t&, std::FILE* f) {
      if (f) ::fchmod(::fileno(f), 0600);
    };
    try {
      auto file = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
          options.file, options.max_file_bytes, options.max_files, false, private_files);
      file->set_formatter(std::make_unique<RedactingFormatter>(std::make_unique<JsonFormatter>()));
      sinks.push_back(file);
    } catch (const spdlog::spdlog_ex& e) {
      return FailedPrecondition("cannot open log file " + options.file + ": " + e.what(),
                                "check that the data directory is writable, or set AF_DATA_DIR");
    }
  }
  Registry& r = Reg();
  std::lock_guard lock(r.mu);
  r.spec = spec;
  r.sinks = sinks;
  for (auto& [name, logger] : r.loggers) {
    logger->sinks() = sinks;
    logger->set_level(LevelFor(spec, name));
  }
  if (!options.file.empty()) Flusher::Start();
  return Status::Ok();
}

std::shared_ptr<spdlog::logger> Get(std::string_view component) {
  Registry& r = Reg();
  std::lock_guard lock(r.mu);
  auto it = r.loggers.find(component);
  if (it != r.loggers.end()) return it->second;
  if (r.sinks.empty()) {
    // Before Init: a plain console sink so early messages are not lost.
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_formatter(std::make_unique<RedactingFormatter>(
        std::make_unique<spdlog::pattern_formatter>("%H:%M:%S.%e %^%-5l%$ [%n] %v")));
    r.sinks.push_back(console);
  }
  auto logger =
      std::make_shared<spdlog::logger>(std::string(component), r.sinks.begin(), r.sinks.end());
  logger->set_level(LevelFor(r.spec, component));
  logger->flush_on(spdlog::level::warn);
  r.loggers.emplace(std::string(component), logger);
  return logger;
}

void AddSecret(std::string_view value) {
  if (value.size() < 6) return;
  std::unique_lock lock(secrets_mu);
  for (const auto& s : Secrets())
    if (s == value) return;
  Secrets().emplace_back(value);
}

std::string Redact(std::string_view text) {
  std::string s(text);
  {
    std::shared_lock lock(secrets_mu);
    for (const auto& secret : Secrets()) {
      size_t pos = 0;
      while ((pos = s.find(secret, pos)) != std::string::npos) {
        s.replace(pos, secret.size(), "[REDACTED]");
        pos += 10;
      }
    }
  }
  RedactShapes(s);
  return MaskUrlPasswords(s);
}

void ClearSecretsForTest() {
  std::unique_lock lock(secrets_mu);
  Secrets().clear();
}

}  // namespace af::log
