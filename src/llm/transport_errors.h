#pragma once
// How the libcurl transport names its failures. Internal to the LLM layer;
// separate from curl_transport.cc so the mapping can be tested without a
// network.
//
// The rule: a failure that waiting can fix (a refused or broken connection,
// a timeout) is kUnavailable / kDeadlineExceeded, which the retry loop
// retries; a failure that only a change of configuration fixes (a proxy that
// wants credentials, a certificate that does not verify, a bad URL) is
// kFailedPrecondition / kInvalidArgument, named as what it is, and not
// retried.

#include <curl/curl.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "af/core/status.h"

namespace af::llm {

// The proxy libcurl uses for a URL, as it reads it from the environment:
// http_proxy (lower case only) for http://, https_proxy or HTTPS_PROXY for
// https://, then all_proxy / ALL_PROXY. `url` has any user:password removed.
struct ProxySetting {
  std::string variable;  // e.g. "HTTPS_PROXY"
  std::string url;       // e.g. "http://proxy.corp:3128"
};

// nullopt when no proxy variable applies to `url`. NO_PROXY is not
// consulted: callers use this only to name a proxy libcurl already reported.
// `env` defaults to ::getenv (a seam for tests).
std::optional<ProxySetting> ProxyFor(std::string_view url,
                                     const std::function<const char*(const char*)>& env = nullptr);

// What a failed transfer to `url` means. `curl_code` is the transfer's
// result, `detail` libcurl's error buffer (may be empty), `timeout` the
// exchange's limit (for the message), `proxy` the proxy in use if any.
//   kDeadlineExceeded:   timed out (retried);
//   kUnavailable:        cannot connect, broken connection (retried);
//   kFailedPrecondition: the proxy refused the tunnel (see ProxyRefused), or
//                        "TLS certificate verification failed for <host>"
//                        with a hint on CA bundles (not retried);
//   kInvalidArgument:    a malformed URL or an unsupported scheme.
Status TransferError(CURLcode curl_code, std::string_view url, std::string_view detail,
                     std::chrono::milliseconds timeout, const std::optional<ProxySetting>& proxy);

// A proxy answered `status` (407: it wants credentials; others: it refused to
// open the tunnel) instead of forwarding the request to `url`.
// kFailedPrecondition naming the proxy and the variable it comes from, with a
// hint: proxy credentials in that variable, or the provider's host in
// NO_PROXY.
Status ProxyRefused(int status, std::string_view url, const std::optional<ProxySetting>& proxy);

// "api.anthropic.com" from "https://api.anthropic.com/v1/messages".
std::string HostOf(std::string_view url);

}  // namespace af::llm
