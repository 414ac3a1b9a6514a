#pragma once
// Incremental parser for text/event-stream bodies: the SSE framing both LLM
// providers stream in, and the server's event streams that `feature events`
// reads.

#include <functional>
#include <string>
#include <string_view>

#include "af/core/status.h"

namespace af {

class SseParser {
 public:
  // Called once per complete event with its `event:` name (empty when none)
  // and its `data:` lines joined by '\n'. A non-ok Status stops parsing and is
  // returned from Feed.
  using EventFn = std::function<Status(std::string_view event, std::string_view data)>;

  explicit SseParser(EventFn on_event) : on_event_(std::move(on_event)) {}

  // Feeds the next piece of the body (any split, even mid-line).
  Status Feed(std::string_view chunk);

 private:
  Status Line(std::string_view line);

  EventFn on_event_;
  std::string pending_;  // an incomplete line
  std::string event_;
  std::string data_;
  bool has_data_ = false;
};

}  // namespace af
