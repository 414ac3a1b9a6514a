#include "af/core/sse.h"

namespace af {

Status SseParser::Feed(std::string_view chunk) {
  pending_.append(chunk);
  size_t start = 0;
  while (true) {
    size_t nl = pending_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(pending_.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    Status s = Line(line);
    start = nl + 1;
    if (!s.ok()) {
      pending_.erase(0, start);
      return s;
    }
  }
  pending_.erase(0, start);
  return Status::Ok();
}

Status SseParser::Line(std::string_view line) {
  if (line.empty()) {
    // A blank line dispatches the event; events without data are keep-alives.
    Status s = Status::Ok();
    if (has_data_) s = on_event_(event_, data_);
    event_.clear();
    data_.clear();
    has_data_ = false;
    return s;
  }
  if (line.front() == ':') return Status::Ok();  // comment
  std::string_view field = line;
  std::string_view value;
  if (auto colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "event") {
    event_ = std::string(value);
  } else if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  }
  return Status::Ok();
}

}  // namespace af
