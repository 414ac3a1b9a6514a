#pragma once
// The HTTP server: routes requests to plain handler functions (see
// http_types.h and router.h). The HTTP library (RESTinio over asio) is hidden
// behind a pimpl; only src/api/http_server.cc includes it.
//
// What every response gets, whatever the handler does:
//   - an X-Request-Id header: the request's own X-Request-Id when it is sane
//     (1-128 chars of [A-Za-z0-9._:-]), otherwise a generated "req_<hex>"; the
//     same id is HttpRequest::request_id and the "request_id" of error bodies;
//   - unknown path -> 404 NOT_FOUND, known path with another method -> 405
//     METHOD_NOT_ALLOWED (+ Allow), handler exception -> 500 INTERNAL, all
//     with the JSON error body of api/errors.h;
//   - requests refused before any handler runs, answered with the same JSON
//     body plus "Connection: close", then the connection is closed: a body
//     over max_body_bytes -> 413 PAYLOAD_TOO_LARGE (decided from
//     Content-Length, before the body is read; a chunked body once it grows
//     past the limit), a URL over 16 KiB -> 414 URI_TOO_LONG, more than 100
//     headers or one over 16 KiB (or 80 KiB of headers in all) -> 431
//     HEADERS_TOO_LARGE, malformed HTTP (e.g. Content-Length together with
//     Transfer-Encoding) -> 400 VALIDATION_ERROR. So one request never holds
//     more memory than these limits.
//
// Threading: `threads` I/O threads run the event loop and the handlers. A
// handler blocks one of them while it runs, so handlers must be quick (queue
// long work and return). Route() and the access log are set up before Start().
//
// Streaming (SSE): RouteStream() registers a handler that gets a
// ResponseStream instead of returning a body. The handler returns at once
// (keeping the stream, e.g. in an EventHub) and writers on any thread push
// chunks of a chunked response, sent straight from the writer's thread when
// the socket takes them, so an open stream holds no thread. See
// ResponseStream for back-pressure rules.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "af/api/http_types.h"
#include "af/core/status.h"

namespace af {

// One line of the access log, reported after the response is handed to the
// connection for writing.
struct AccessLogEntry {
  std::string method;
  std::string path;   // without the query
  std::string route;  // the matched route pattern ("/api/v1/features/:id"); empty when none
  int status = 0;
  int64_t duration_us = 0;  // from the full request being read to the response being queued
  std::string request_id;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";   // IPv4 or IPv6 literal, or "localhost"
  int port = 8080;                  // 0 picks a free port; see HttpServer::port()
  int threads = 2;                  // I/O + handler threads, >= 1
  size_t max_body_bytes = 1 << 20;  // default 1 MiB; larger bodies get 413
  // Idle keep-alive connections are closed after this long.
  std::chrono::seconds idle_timeout{60};  // default 60 s
  // Called on an I/O thread for every answered request; must be thread-safe
  // and quick. Exceptions it throws are swallowed. Empty: no access log.
  std::function<void(const AccessLogEntry&)> access_log;
};

// The body of a streamed response (see HttpServer::RouteStream). Created by
// the server and handed to the stream handler as a shared_ptr; whoever holds
// it may write from any thread.
//
// Back-pressure: Write() never blocks. A chunk is sent at once, by the
// writing thread, when nothing is queued before it; what the socket does not
// take is queued and sent by the server's event loop as the client reads.
// When the bytes queued would exceed StreamOptions::max_buffered_bytes (the
// client reads too slowly or not at all), the stream is closed instead, the
// queued data is dropped and the connection is closed; a client that takes
// nothing for 30 s while data waits for it is cut off the same way. A failed
// write (client gone), Close() and HttpServer::Stop() close it too. Once
// closed, Write() returns false forever: the writer should drop the stream.
//
// Thread safety: every method may be called from any thread. Destroying the
// last reference Close()s the stream.
class ResponseStream {
 public:
  ~ResponseStream();
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;

  // Sends `chunk` (queues it, see above); false when the stream is (now)
  // closed. Each call is one chunk of the response, so a writer with several
  // pieces ready should pass them in one call. Writes made before the handler
  // returned are sent right after the headers.
  bool Write(std::string_view chunk);
  // Ends the response after the queued data (the final chunk); idempotent.
  void Close();
  bool closed() const;
  // Bytes queued and not yet taken by the socket.
  size_t buffered_bytes() const;
  // Adds a response header (e.g. CORS). Only headers added before the
  // handler returns are sent: they go out with the status line.
  void AddHeader(std::string name, std::string value);

  class Impl;  // defined in http_server.cc

 private:
  friend class HttpServer;
  explicit ResponseStream(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

struct StreamOptions {
  std::string content_type = "text/event-stream";
  // Extra response headers. Cache-Control: no-cache and Connection: close are
  // always sent (a stream's connection is never reused).
  std::vector<std::pair<std::string, std::string>> headers;
  // A stream whose unsent bytes would exceed this is closed (see ResponseStream).
  size_t max_buffered_bytes = 1 << 20;  // default 1 MiB
  // TCP_NODELAY on the stream's connection: each Write() leaves at once
  // instead of waiting for the client to acknowledge the previous one
  // (Nagle's algorithm), which with delayed acknowledgements can hold an
  // event back for tens of milliseconds.
  bool tcp_no_delay = true;  // default true
};

// Runs on an I/O thread like a Handler (quick, thread-safe). Returns
// std::nullopt to stream: the server then sends 200 with the stream's headers
// and whatever is written to `stream` (before or after returning). Returns a
// response to answer normally instead (e.g. a 401 or 404 JSON error): the
// stream is then closed and never sent. Exceptions become a 500.
using StreamHandler = std::function<std::optional<HttpResponse>(
    const HttpRequest& request, const std::shared_ptr<ResponseStream>& stream)>;

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options = {});
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Adds a route (see router.h for patterns such as "/api/v1/features/:id").
  // Must be called before Start(). Throws std::invalid_argument for a malformed
  // or duplicate pattern and std::logic_error once started: programming errors.
  void Route(std::string method, std::string pattern, Handler handler);
  // Adds a streaming route; same pattern rules and errors as Route(). A HEAD
  // request on it gets the stream's headers and an empty body.
  void RouteStream(std::string method, std::string pattern, StreamHandler handler,
                   StreamOptions options = {});

  // Binds, listens and starts the I/O threads; returns once connections are
  // accepted. Errors (nothing is left running):
  //   InvalidArgument    - bad options (host not an IP address, port out of
  //                        range, threads < 1, max_body_bytes == 0);
  //   FailedPrecondition - the port is in use ("port 8080 on 127.0.0.1 is
  //                        already in use"), already started, or another bind
  //                        failure (permission, address not on this host),
  //                        each with a hint saying what to do.
  Status Start();

  // Stops accepting, closes open connections (open streams included: they
  // report closed() and their clients see the connection end) and joins the
  // I/O threads; a handler still running is waited for. Idempotent; must not be called from a
  // handler (it would wait for itself). The server cannot be started again.
  void Stop();

  // The bound port once Start() succeeded (the real one when options.port was
  // 0); options.port before.
  int port() const;
  // The options as given.
  const HttpServerOptions& options() const;
  bool running() const;
  // Streams currently open (opened and not yet closed).
  size_t open_streams() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// True when `id` may be echoed as a request id: 1-128 chars of [A-Za-z0-9._:-].
bool IsSaneRequestId(std::string_view id);
// A fresh random request id, "req_" + 24 hex digits.
std::string NewRequestId();

}  // namespace af
