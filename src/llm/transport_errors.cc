#include "llm/transport_errors.h"

#include <cctype>
#include <cstdlib>
#include <vector>

#include "af/core/strings.h"

namespace af::llm {
namespace {

std::string_view SchemeOf(std::string_view url) {
  auto colon = url.find("://");
  return colon == std::string_view::npos ? std::string_view() : url.substr(0, colon);
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// Proxy URLs may carry credentials; they never go into a message.
std::string WithoutCredentials(std::string_view url) {
  auto start = url.find("://");
  start = start == std::string_view::npos ? 0 : start + 3;
  auto end = url.find('/', start);
  auto at = url.rfind('@', end == std::string_view::npos ? url.size() : end);
  if (at == std::string_view::npos || at < start) return std::string(url);
  return std::string(url.substr(0, start)) + std::string(url.substr(at + 1));
}

std::string ProxyText(const std::optional<ProxySetting>& proxy) {
  if (!proxy) return "the proxy";
  return "the proxy " + proxy->url + " (from " + proxy->variable + ")";
}

}  // namespace

std::string HostOf(std::string_view url) {
  auto start = url.find("://");
  start = start == std::string_view::npos ? 0 : start + 3;
  auto end = url.find_first_of("/?#", start);
  std::string_view authority =
      url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  if (!authority.empty() && authority.front() == '[') {  // [::1]:8080
    auto close = authority.find(']');
    return std::string(
        authority.substr(0, close == std::string_view::npos ? authority.size() : close + 1));
  }
  return std::string(authority.substr(0, authority.find(':')));
}

std::optional<ProxySetting> ProxyFor(std::string_view url,
                                     const std::function<const char*(const char*)>& env) {
  auto get = [&](const char* name) -> const char* {
    const char* v = env ? env(name) : std::getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
  };
  const std::string_view scheme = SchemeOf(url);
  std::vector<const char*> names;
  // libcurl reads http_proxy in lower case only (HTTP_PROXY can be set by a
  // CGI request header), the others in either case.
  if (IEquals(scheme, "http")) names = {"http_proxy"};
  if (IEquals(scheme, "https")) names = {"https_proxy", "HTTPS_PROXY"};
  names.insert(names.end(), {"all_proxy", "ALL_PROXY"});
  for (const char* name : names) {
    if (const char* v = get(name)) return ProxySetting{name, WithoutCredentials(v)};
  }
  return std::nullopt;
}

Status TransferError(CURLcode curl_code, std::string_view url_view, std::string_view detail,
                     std::chrono::milliseconds timeout, const std::optional<ProxySetting>& proxy) {
  const std::string url = MaskUrlPasswords(url_view);
  const std::string what = std::string(curl_easy_strerror(curl_code)) +
                           (detail.empty() ? std::string() : " (" + std::string(detail) + ")");
  const std::string base_url_hint = "check the base URL (ANTHROPIC_BASE_URL / OPENAI_BASE_URL)";
  switch (curl_code) {
    case CURLE_OPERATION_TIMEDOUT:
      return DeadlineExceeded("no complete response from " + url + " within " +
                                  std::to_string(timeout.count()) + " ms: " + what,
                              "the server is slow or stuck; raise the LLM timeout or try again");
    case CURLE_COULDNT_RESOLVE_PROXY:
      return Unavailable("cannot reach " + ProxyText(proxy) + " to connect to " + url + ": " + what,
                         "check the proxy's address in " +
                             (proxy ? proxy->variable : std::string("HTTPS_PROXY")) +
                             ", or add the provider's host to NO_PROXY to go without it");
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
      if (proxy) {
        return Unavailable(
            "cannot connect to " + url + " through " + ProxyText(proxy) + ": " + what,
            "check that the proxy runs and lets the provider through, or add the provider's "
            "host to NO_PROXY to go without it");
      }
      return Unavailable("cannot connect to " + url + ": " + what,
                         base_url_hint + " and that the server is running");
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return InvalidArgument("bad URL " + url + ": " + what, base_url_hint);
    case CURLE_PROXY:
      return FailedPrecondition(
          "the proxy handshake with " + ProxyText(proxy) + " failed for " + url + ": " + what,
          "check the proxy settings (HTTPS_PROXY / ALL_PROXY), or add the provider's host to "
          "NO_PROXY to go without it");
    case CURLE_PEER_FAILED_VERIFICATION:  // also CURLE_SSL_CACERT
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return FailedPrecondition(
          "TLS certificate verification failed for " + HostOf(url) + ": " + what,
          "the server's certificate is not trusted here: install the CA certificates "
          "(apt-get install ca-certificates), or point SSL_CERT_FILE at a CA bundle that "
          "holds your proxy's or server's CA; for a local server, use an http:// base URL");
    default:
      return Unavailable("request to " + url + " failed: " + what,
                         "the connection broke; it is retried automatically");
  }
}

Status ProxyRefused(int status, std::string_view url_view,
                    const std::optional<ProxySetting>& proxy) {
  const std::string url = MaskUrlPasswords(url_view);
  const std::string var = proxy ? proxy->variable : std::string("HTTPS_PROXY");
  if (status == 407) {
    return FailedPrecondition(
        ProxyText(proxy) +
            " requires authentication (HTTP 407 Proxy Authentication Required) "
            "for " +
            url,
        "put the proxy's credentials in " + var + " (http://user:password@host:port), or add " +
            HostOf(url) + " to NO_PROXY if the provider is reachable without the proxy");
  }
  return FailedPrecondition(
      ProxyText(proxy) + " refused to connect to " + url + " (HTTP " + std::to_string(status) + ")",
      "ask for the provider's host to be allowed through the proxy, fix " + var + ", or add " +
          HostOf(url) + " to NO_PROXY if the provider is reachable without the proxy");
}

}  // namespace af::llm
