#include "workspace/mailbox.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace af::workspace_internal {

namespace {

int DecimalWidth(uint64_t n) {
  int w = 1;
  for (; n >= 10; n /= 10) ++w;
  return w;
}

// At least one column for any change: scaled as if one column narrower, plus one.
uint64_t ScaleLinear(uint64_t it, uint64_t width, uint64_t max_change) {
  return it == 0 ? 0 : 1 + it * (width - 1) / max_change;
}

std::string Octal6(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06o", mode);
  return buf;
}

std::string Padded(const std::string& s, size_t width, bool right) {
  if (s.size() >= width) return s;
  const std::string pad(width - s.size(), ' ');
  return right ? pad + s : s + pad;
}

}  // namespace

std::string GitDiffStat(const std::vector<StatFile>& files) {
  // git's widths: the mail's 72 columns, the graph no wider than 3/8 of them
  // when everything does not fit, the name taking the rest.
  int64_t width = 72;
  uint64_t max_change = 0;
  int64_t max_len = 0, number_width = 0, bin_width = 0;
  for (const auto& f : files) {
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(f.path.size()));
    if (f.binary) {
      bin_width =
          std::max<int64_t>(bin_width, 14 + DecimalWidth(f.added) + DecimalWidth(f.deleted));
      number_width = 3;  // the counts align with "Bin"
      continue;
    }
    max_change = std::max(max_change, f.added + f.deleted);
  }
  number_width = std::max<int64_t>(number_width, DecimalWidth(max_change));
  width = std::max<int64_t>(width, 16 + 6 + number_width);
  int64_t graph_width = static_cast<int64_t>(max_change) + 4 > bin_width
                            ? static_cast<int64_t>(max_change)
                            : bin_width - 4;
  int64_t name_width = max_len;
  if (name_width + number_width + 6 + graph_width > width) {
    if (graph_width > width * 3 / 8 - number_width - 6)
      graph_width = std::max<int64_t>(6, width * 3 / 8 - number_width - 6);
    if (name_width > width - number_width - 6 - graph_width)
      name_width = width - number_width - 6 - graph_width;
    else
      graph_width = width - number_width - 6 - name_width;
  }

  std::string out;
  uint64_t adds = 0, dels = 0;
  for (const auto& f : files) {
    std::string name = f.path, prefix;
    int64_t len = name_width;
    if (name_width < static_cast<int64_t>(name.size())) {
      // The tail that fits after "...", from its first slash if it has one.
      prefix = "...";
      len = std::max<int64_t>(0, len - 3);
      name = name.substr(name.size() - static_cast<size_t>(len));
      if (auto slash = name.find('/'); slash != std::string::npos) name = name.substr(slash);
    }
    out += " " + prefix + Padded(name, static_cast<size_t>(len), false) + " |";
    if (f.binary) {
      out += " " + Padded("Bin", static_cast<size_t>(number_width), true);
      if (f.added || f.deleted)
        out += " " + std::to_string(f.deleted) + " -> " + std::to_string(f.added) + " bytes";
      out += "\n";
      continue;
    }
    adds += f.added;
    dels += f.deleted;
    uint64_t add = f.added, del = f.deleted;
    const auto graph = static_cast<uint64_t>(graph_width);
    if (graph <= max_change) {
      uint64_t total = ScaleLinear(add + del, graph, max_change);
      if (total < 2 && add && del) total = 2;
      if (add < del) {
        add = ScaleLinear(add, graph, max_change);
        del = total - add;
      } else {
        del = ScaleLinear(del, graph, max_change);
        add = total - del;
      }
    }
    const uint64_t changed = f.added + f.deleted;
    out += " " + Padded(std::to_string(changed), static_cast<size_t>(number_width), true) +
           (changed ? " " : "") + std::string(add, '+') + std::string(del, '-') + "\n";
  }

  const size_t n = files.size();
  out += " " + std::to_string(n) + (n == 1 ? " file changed" : " files changed");
  if (adds || !dels)
    out += ", " + std::to_string(adds) + (adds == 1 ? " insertion(+)" : " insertions(+)");
  if (dels || !adds)
    out += ", " + std::to_string(dels) + (dels == 1 ? " deletion(-)" : " deletions(-)");
  out += "\n";
  for (const auto& f : files) {
    if (f.status == 'D') {
      out += " delete mode " + Octal6(f.old_mode) + " " + f.path + "\n";
    } else if (f.status == 'A') {
      out += " create mode " + Octal6(f.new_mode) + " " + f.path + "\n";
    } else if (f.old_mode && f.new_mode && f.old_mode != f.new_mode) {
      out +=
          " mode change " + Octal6(f.old_mode) + " => " + Octal6(f.new_mode) + " " + f.path + "\n";
    }
  }
  return out;
}

std::optional<std::string> FoldedSubject(std::string_view prefix, std::string_view summary) {
  constexpr size_t kWidth = 78;
  if (summary.empty() || summary.front() == ' ' || summary.back() == ' ' ||
      summary.find("  ") != std::string_view::npos) {
    return std::nullopt;
  }
  for (char c : summary)
    if (c < ' ' || c > '~') return std::nullopt;
  std::string out = "Subject: ";
  out += prefix;
  size_t col = out.size();
  size_t pos = 0;
  bool first = true;
  while (pos < summary.size()) {
    size_t end = summary.find(' ', pos);
    if (end == std::string_view::npos) end = summary.size();
    const std::string_view word = summary.substr(pos, end - pos);
    if (first) {
      // git would move a first word that overflows to the next line.
      if (col + word.size() > kWidth) return std::nullopt;
      out += word;
      col += word.size();
      first = false;
    } else if (col + 1 + word.size() <= kWidth) {
      out += ' ';
      out += word;
      col += 1 + word.size();
    } else {
      out += "\n ";
      out += word;
      col = 1 + word.size();
    }
    pos = end + 1;
  }
  return out;
}

std::string MailDate(int64_t seconds, int offset_minutes) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const time_t local = static_cast<time_t>(seconds + int64_t{offset_minutes} * 60);
  std::tm tm{};
  gmtime_r(&local, &tm);
  const int off = std::abs(offset_minutes);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %d %s %d %02d:%02d:%02d %c%02d%02d", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                offset_minutes < 0 ? '-' : '+', off / 60, off % 60);
  return buf;
}

bool PlainMailName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c < ' ' || c > '~') return false;
    if (std::string_view("()<>[]:;@,.\"\\").find(c) != std::string_view::npos) return false;
  }
  return true;
}

}  // namespace af::workspace_internal
