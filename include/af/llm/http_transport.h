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
  // kCancelled. Empty = never. Called on the thread that called Send.
  std::function<bool()> cancelled;
};

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;                            // empty when a 2xx body was delivered to on_chunk
};

class HttpTransport {
 public:
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
};

// The libcurl transport: one easy handle per call, no shared state, so it is
// safe to call from many threads. Initialises libcurl once per process.
std::shared_ptr<HttpTransport> MakeCurlTransport();

}  // namespace af
