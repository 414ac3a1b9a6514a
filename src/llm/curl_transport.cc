#include <curl/curl.h>

#include <cctype>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>

#include "af/core/strings.h"
#include "af/llm/http_transport.h"
#include "llm/io_loop.h"
#include "llm/transport_errors.h"

namespace af {
namespace {

using llm::ProxyFor;
using llm::ProxyRefused;
using llm::TransferError;

// One exchange under way. Owned by the I/O loop's done callback; everything
// libcurl points at (URL, body, headers, error buffer) lives here until then.
struct Transfer {
  ClientRequest request;
  HttpTransport::ChunkFn on_chunk;
  HttpTransport::SendDone done;
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  char error_buf[CURL_ERROR_SIZE] = {0};
  ClientResponse response;
  bool aborted = false;

  ~Transfer() {
    if (headers != nullptr) curl_slist_free_all(headers);
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  // A new status line (after a 100 Continue or a redirect) starts a fresh set.
  if (line.substr(0, 5) == "HTTP/") {
    t->response.headers.clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    t->response.headers[Lower(Trim(line.substr(0, colon)))] =
        std::string(Trim(line.substr(colon + 1)));
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view chunk(data, size * n);
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->on_chunk && status >= 200 && status < 300) {
    if (!t->on_chunk(chunk)) {
      t->aborted = true;
      return 0;  // makes curl stop with CURLE_WRITE_ERROR
    }
    return chunk.size();
  }
  t->response.body.append(chunk);
  return chunk.size();
}

// What the finished transfer `t` amounts to.
Result<ClientResponse> Outcome(Transfer& t, CURLcode rc, bool cancelled) {
  const ClientRequest& request = t.request;
  long status = 0;
  long connect_status = 0;  // the proxy's answer to CONNECT, when tunnelling
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(t.curl, CURLINFO_HTTP_CONNECTCODE, &connect_status);
  if (cancelled) {
    return Cancelled(
        "the call to " + MaskUrlPasswords(request.url) + " was abandoned: its work was stopped",
        "nothing to do: the work resumes or has ended");
  }
  if (t.aborted)
    return Cancelled("transfer from " + MaskUrlPasswords(request.url) + " stopped by the receiver");
  // A proxy that refuses the tunnel makes curl fail; one that refuses a
  // plain http request answers it. Either way no provider saw the request.
  if (connect_status >= 300)
    return ProxyRefused(static_cast<int>(connect_status), request.url, ProxyFor(request.url));
  if (rc != CURLE_OK) {
    return TransferError(rc, request.url, t.error_buf, request.timeout, ProxyFor(request.url));
  }
  if (status == 407) return ProxyRefused(407, request.url, ProxyFor(request.url));
  t.response.status = static_cast<int>(status);
  return std::move(t.response);
}

class CurlTransport final : public HttpTransport {
 public:
  CurlTransport() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  // The one implementation of an exchange: Send waits for it.
  void SendAsync(ClientRequest request, ChunkFn on_chunk, SendDone done) override {
    CURL* curl = curl_easy_init();
    if (curl == nullptr) {
      done(Internal("curl_easy_init failed"));
      return;
    }
    auto t = std::make_unique<Transfer>();
    t->request = std::move(request);
    t->on_chunk = std::move(on_chunk);
    t->done = std::move(done);
    t->curl = curl;
    const ClientRequest& r = t->request;

    for (const auto& [name, value] : r.headers) {
      t->headers = curl_slist_append(t->headers, (name + ": " + value).c_str());
    }
    // curl would otherwise wait for "100 Continue" before sending large bodies.
    t->headers = curl_slist_append(t->headers, "Expect:");

    curl_easy_setopt(curl, CURLOPT_URL, r.url.c_str());
    if (r.method == "POST") {
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    } else if (r.method != "GET") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r.method.c_str());
      if (!r.body.empty()) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, r.body.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      }
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(r.connect_timeout.count()));
    // Signals are process-wide; without this, timeouts are unsafe in threads.
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, t->error_buf);
    curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");

    std::function<bool()> cancelled = r.cancelled;
    Transfer* raw = t.release();  // owned by the callback below from here on
    Loop()->Add(curl, std::move(cancelled), [raw](CURLcode rc, bool was_cancelled) {
      std::unique_ptr<Transfer> owned(raw);
      Result<ClientResponse> result = Outcome(*owned, rc, was_cancelled);
      SendDone finish = std::move(owned->done);
      owned.reset();  // the easy handle goes before the caller hears of the end
      finish(std::move(result));
    });
  }

  Result<ClientResponse> Send(const ClientRequest& request, const ChunkFn& on_chunk) override {
    if (llm::IoLoop::OnLoopThread()) {
      return FailedPrecondition(
          "a blocking HTTP call to " + MaskUrlPasswords(request.url) +
              " was made on the LLM I/O thread",
          "callbacks on the I/O thread must not block: use SendAsync, or hand the work to "
          "another thread");
    }
    // Shared with the callback, so the promise outlives set_value whichever
    // thread finishes first.
    auto promise = std::make_shared<std::promise<Result<ClientResponse>>>();
    std::future<Result<ClientResponse>> future = promise->get_future();
    ChunkFn chunk;
    if (on_chunk) chunk = [&on_chunk](std::string_view c) { return on_chunk(c); };
    SendAsync(request, std::move(chunk),
              [promise](Result<ClientResponse> r) { promise->set_value(std::move(r)); });
    return future.get();
  }

 private:
  // The process's I/O loop, taken on the first exchange (a transport that
  // never sends starts no thread).
  llm::IoLoop* Loop() {
    std::call_once(loop_once_, [this] { loop_ = llm::IoLoop::Get(); });
    return loop_.get();
  }

  std::once_flag loop_once_;
  std::shared_ptr<llm::IoLoop> loop_;
};

}  // namespace

std::shared_ptr<HttpTransport> MakeCurlTransport() { return std::make_shared<CurlTransport>(); }

}  // namespace af
