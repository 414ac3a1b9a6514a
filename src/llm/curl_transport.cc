#include <curl/curl.h>

#include <cctype>
#include <chrono>
#include <mutex>

#include "af/llm/http_transport.h"
#include "llm/transport_errors.h"
#include "af/core/strings.h"

namespace af {
namespace {

using llm::ProxyFor;
using llm::ProxyRefused;
using llm::TransferError;

struct Transfer {
  CURL* curl = nullptr;
  const std::function<bool(std::string_view)>* on_chunk = nullptr;
  ClientResponse response;
  bool aborted = false;
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
  if (t->on_chunk != nullptr && *t->on_chunk && status >= 200 && status < 300) {
    if (!(*t->on_chunk)(chunk)) {
      t->aborted = true;
      return 0;  // makes curl stop with CURLE_WRITE_ERROR
    }
    return chunk.size();
  }
  t->response.body.append(chunk);
  return chunk.size();
}

// Runs the transfer on a multi handle of its own, so `cancelled` can be asked
// while nothing arrives (curl_easy_perform would only return at the end or
// the timeout). The predicate is called about every 100 ms, not per chunk: it
// may read shared state.
CURLcode Perform(CURL* curl, const std::function<bool()>& cancelled, bool* was_cancelled) {
  *was_cancelled = false;
  if (!cancelled) return curl_easy_perform(curl);
  if (cancelled()) {
    *was_cancelled = true;
    return CURLE_ABORTED_BY_CALLBACK;
  }
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return CURLE_OUT_OF_MEMORY;
  curl_multi_add_handle(multi, curl);
  constexpr auto kCheckEvery = std::chrono::milliseconds(100);
  auto next_check = std::chrono::steady_clock::now() + kCheckEvery;
  CURLcode rc = CURLE_OK;
  for (;;) {
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) {
      rc = CURLE_SEND_ERROR;
      break;
    }
    if (running == 0) {
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
        if (msg->msg == CURLMSG_DONE) rc = msg->data.result;
      }
      break;
    }
    if (std::chrono::steady_clock::now() >= next_check) {
      if (cancelled()) {
        *was_cancelled = true;
        rc = CURLE_ABORTED_BY_CALLBACK;
        break;
      }
      next_check = std::chrono::steady_clock::now() + kCheckEvery;
    }
    if (curl_multi_poll(multi, nullptr, 0, static_cast<int>(kCheckEvery.count()), nullptr) !=
        CURLM_OK) {
      rc = CURLE_RECV_ERROR;
      break;
    }
  }
  curl_multi_remove_handle(multi, curl);
  curl_multi_cleanup(multi);
  return rc;
}

class CurlTransport final : public HttpTransport {
 public:
  CurlTransport() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  Result<ClientResponse> Send(const ClientRequest& request,
                              const std::function<bool(std::string_view)>& on_chunk) override {
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return Internal("curl_easy_init failed");
    Transfer t;
    t.curl = curl;
    t.on_chunk = &on_chunk;

    curl_slist* headers = nullptr;
    for (const auto& [name, value] : request.headers) {
      headers = curl_slist_append(headers, (name + ": " + value).c_str());
    }
    // curl would otherwise wait for "100 Continue" before sending large bodies.
    headers = curl_slist_append(headers, "Expect:");
    char error_buf[CURL_ERROR_SIZE] = {0};

    curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
    if (request.method == "POST") {
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    } else if (request.method != "GET") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      if (!request.body.empty()) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(request.body.size()));
      }
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(request.connect_timeout.count()));
    // Signals are process-wide; without this, timeouts are unsafe in threads.
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buf);
    curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");

    bool cancelled = false;
    CURLcode rc = Perform(curl, request.cancelled, &cancelled);
    long status = 0;
    long connect_status = 0;  // the proxy's answer to CONNECT, when tunnelling
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(curl, CURLINFO_HTTP_CONNECTCODE, &connect_status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);

    if (cancelled) {
      return Cancelled("the call to " + request.url + " was abandoned: its work was stopped",
                       "nothing to do: the work resumes or has ended");
    }
    if (t.aborted) return Cancelled("transfer from " + request.url + " stopped by the receiver");
    // A proxy that refuses the tunnel makes curl fail; one that refuses a
    // plain http request answers it. Either way no provider saw the request.
    if (connect_status >= 300)
      return ProxyRefused(static_cast<int>(connect_status), request.url, ProxyFor(request.url));
    if (rc != CURLE_OK) {
      return TransferError(rc, request.url, error_buf, request.timeout, ProxyFor(request.url));
    }
    if (status == 407) return ProxyRefused(407, request.url, ProxyFor(request.url));
    t.response.status = static_cast<int>(status);
    return std::move(t.response);
  }
};

}  // namespace

std::shared_ptr<HttpTransport> MakeCurlTransport() { return std::make_shared<CurlTransport>(); }

}  // namespace af
