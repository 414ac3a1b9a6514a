#pragma once
// A tiny blocking HTTP/1.1 client over plain sockets, for black-box tests of
// our servers on 127.0.0.1. One request per connection ("Connection: close");
// reads the whole response (Content-Length, chunked, or until EOF).
// Thread-safe: calls share nothing.

#include <chrono>
#include <map>
#include <string>

#include "af/core/status.h"

namespace af::testing {

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-case; repeats joined by ", "
  std::string body;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpCallOptions {
  std::string host = "127.0.0.1";
  std::map<std::string, std::string> headers;  // sent as given (plus Host, Content-Length)
  std::string body;                            // sent with Content-Length when not empty
  std::chrono::milliseconds timeout{10000};    // per connect/send/receive; default 10 s
};

// Sends `method path` to host:port. Errors: Unavailable when the connection
// cannot be made, fails midway or times out; Internal for an unparseable
// response.
Result<HttpReply> HttpCall(int port, const std::string& method, const std::string& path,
                           const HttpCallOptions& options = {});

// Splits a raw HTTP/1.x response (status line, headers, body) into a reply;
// de-chunks a chunked body. `no_body`: the answer to a HEAD request (its
// Content-Length describes a body that is not sent). Exposed for tests.
Result<HttpReply> ParseHttpResponse(const std::string& raw, bool no_body = false);

}  // namespace af::testing
