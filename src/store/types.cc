#include "af/store/types.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <iterator>

namespace af {
namespace {

template <size_t N>
bool OneOf(const std::string_view (&values)[N], std::string_view s) {
  return std::find(std::begin(values), std::end(values), s) != std::end(values);
}

nlohmann::json NullIfEmpty(const std::string& s) {
  return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
}

}  // namespace

bool IsFeatureStatus(std::string_view s) { return OneOf(kFeatureStatuses, s); }
bool IsTaskStatus(std::string_view s) { return OneOf(kTaskStatuses, s); }
bool IsAgentState(std::string_view s) { return OneOf(kAgentStates, s); }
bool IsPriority(std::string_view s) { return OneOf(kPriorities, s); }

std::string FormatUtcMillis(int64_t unix_ms) {
  // Floor division so times before 1970 still get a 0..999 millisecond part.
  int64_t secs = unix_ms / 1000;
  int64_t millis = unix_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    secs -= 1;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

nlohmann::json Event::ToJson() const {
  return nlohmann::json{{"seq", seq},
                        {"type", type},
                        {"feature_id", NullIfEmpty(feature_id)},
                        {"task_id", NullIfEmpty(task_id)},
                        {"agent", NullIfEmpty(agent)},
                        {"ts", FormatUtcMillis(ts_ms)},
                        {"data", data}};
}

const std::vector<std::string> kMemoryTypes = {"architecture_decision",
                                               "code_pattern",
                                               "bug_fix",
                                               "configuration",
                                               "constraint",
                                               "insight",
                                               "reference",
                                               "preference",
                                               "task",
                                               "feature_spec",
                                               "failure",
                                               "success"};

Status CheckMemoryType(const std::string& type) {
  if (std::find(kMemoryTypes.begin(), kMemoryTypes.end(), type) != kMemoryTypes.end())
    return Status::Ok();
  std::string all;
  for (const auto& t : kMemoryTypes) all += (all.empty() ? "" : ", ") + t;
  return InvalidArgument("unknown memory type '" + type + "'", "use one of " + all);
}

Status CheckProjectName(const std::string& project) {
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  bool ok = !project.empty() && project.size() <= 64 && alnum(project[0]) &&
            std::all_of(project.begin(), project.end(),
                        [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
  if (ok) return Status::Ok();
  std::string shown = project.size() > 40 ? project.substr(0, 40) + "..." : project;
  return InvalidArgument(
      "project must match [A-Za-z0-9][A-Za-z0-9._-]{0,63} (got '" + shown + "')",
      "the project names a workspace directory: use letters, digits, '.', '_' or '-', e.g. "
      "\"my-app\"");
}

}  // namespace af
