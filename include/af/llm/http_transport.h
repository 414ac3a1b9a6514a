#pragma once
// Outgoing HTTP: the LLM providers and the CLI's server client send through an
// HttpTransport, so tests can substitute one and production uses libcurl.
// (Named Client* to stay apart from the server side's HttpRequest/HttpResponse.)

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "af/core/status.h"

namespace af {

struct ClientRequest {
  std::string method = "POST";  // GET, POST, DELETE, ...
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value
  std::string body;
  std::chrono::milliseconds timeout{120000};         // whole exchange; default 120 s
  std::chrono::milliseconds connect_timeout{10000};  // default 10 s
  // Asked about every 100 ms while the exchange runs (also while nothing
  // arrives); once it returns true the transfer is abandoned and Send returns
  // kCancelled. Empty = never. The libcurl transport asks it on its I/O
  // thread (see MakeCurlTransport), so it must be cheap and thread-safe.
  std::function<bool()> cancelled;
};

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;                            // empty when a 2xx body was delivered to on_chunk
};

class HttpTransport {
 public:
  using ChunkFn = std::function<bool(std::string_view chunk)>;
  using SendDone = std::function<void(Result<ClientResponse>)>;

  virtual ~HttpTransport() = default;

  // Sends `request`. When `on_chunk` is set and the status is 2xx, the body is
  // passed to it piece by piece as it arrives (and not kept in `body`); a
  // false return aborts the transfer (the result is then kCancelled). Other
  // statuses always have their body in `body`.
  // Errors: kUnavailable when the server cannot be reached or the connection
  // breaks (the message names the URL); kDeadlineExceeded when connect_timeout
  // or timeout passes; kCancelled when request.cancelled said so;
  // kFailedPrecondition when a proxy refused the request (HTTP 407 wants
  // credentials) or the server's TLS certificate does not verify, each named
  // as such with a hint (waiting does not fix these). Any other HTTP error
  // status is not an error here: it is in ClientResponse::status.
  // Thread safety: implementations must allow concurrent calls.
  virtual Result<ClientResponse> Send(
      const ClientRequest& request,
      const std::function<bool(std::string_view chunk)>& on_chunk) = 0;

  // Send without holding the calling thread: starts the exchange and returns;
  // `done` receives what Send would have returned, exactly once. Same
  // errors and on_chunk rules as Send. The libcurl transport runs on_chunk
  // and done on its I/O thread, where they must not block (hand slow work to
  // another thread). The default runs Send on the calling thread and calls
  // done before returning (test transports need nothing more).
  virtual void SendAsync(ClientRequest request, ChunkFn on_chunk, SendDone done) {
    done(Send(request, on_chunk));
  }
};

// The libcurl transport. Every exchange of the process runs on one shared
// I/O thread (started on first use, stopped when the last transport or
// client using it is gone) driving libcurl's multi interface: a thousand
// exchanges under way cost sockets and memory, not threads, and connections
// to the same host are reused across calls. Send is SendAsync plus a wait,
// so it may be called from any thread except that I/O thread (from on_chunk
// or a done callback it fails with kFailedPrecondition instead of
// deadlocking). Initialises libcurl once per process.
std::shared_ptr<HttpTransport> MakeCurlTransport();

}  // namespace af
