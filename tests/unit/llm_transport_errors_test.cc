// How the libcurl transport names its failures: proxies and TLS are named as
// such, with what to change, and are not passed off as outages that are
// "retried automatically".
#include <gtest/gtest.h>

#include <map>

#include "af/llm/llm_client.h"
#include "llm/transport_errors.h"

namespace af::llm {
namespace {

using std::chrono::milliseconds;

std::function<const char*(const char*)> Env(std::map<std::string, std::string> vars) {
  auto held = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [held](const char* name) -> const char* {
    auto it = held->find(name);
    return it == held->end() ? nullptr : it->second.c_str();
  };
}

TEST(TransportErrorsTest, ProxyIsReadAsLibcurlReadsItWithoutCredentials) {
  auto p = ProxyFor("https://api.anthropic.com/v1/messages",
                    Env({{"HTTPS_PROXY", "http://alice:s3cret@proxy.corp:3128"}}));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->variable, "HTTPS_PROXY");
  EXPECT_EQ(p->url, "http://proxy.corp:3128");
  // http:// URLs use the lower-case http_proxy only.
  EXPECT_FALSE(ProxyFor("http://127.0.0.1:8080/v1", Env({{"HTTP_PROXY", "http://p:1"}})));
  auto lower = ProxyFor("http://127.0.0.1:8080/v1", Env({{"http_proxy", "http://p:1"}}));
  ASSERT_TRUE(lower.has_value());
  EXPECT_EQ(lower->variable, "http_proxy");
  auto all = ProxyFor("https://x/", Env({{"ALL_PROXY", "socks5://p:1080"}}));
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->variable, "ALL_PROXY");
  EXPECT_FALSE(ProxyFor("https://x/", Env({})));
}

TEST(TransportErrorsTest, ProxyAuthenticationIsNamedWithTheVariableAndNotAnOutage) {
  ProxySetting proxy{"HTTPS_PROXY", "http://proxy.corp:3128"};
  Status s = ProxyRefused(407, "https://api.anthropic.com/v1/messages", proxy);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_FALSE(IsProviderOutage(s));  // not retried, not counted by the circuit
  EXPECT_NE(s.message().find("proxy http://proxy.corp:3128 (from HTTPS_PROXY)"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("407"), std::string::npos);
  EXPECT_NE(s.hint().find("HTTPS_PROXY"), std::string::npos) << s.hint();
  EXPECT_NE(s.hint().find("NO_PROXY"), std::string::npos);
  EXPECT_NE(s.hint().find("api.anthropic.com"), std::string::npos);
  EXPECT_EQ(s.hint().find("retried"), std::string::npos);
  // A proxy that refuses the tunnel for another reason is named too.
  Status forbidden = ProxyRefused(403, "https://api.openai.com/v1/chat/completions", proxy);
  EXPECT_EQ(forbidden.code(), Code::kFailedPrecondition);
  EXPECT_NE(forbidden.message().find("refused"), std::string::npos);
}

TEST(TransportErrorsTest, CertificateFailuresNameTheHostAndTheCaBundle) {
  for (CURLcode code :
       {CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR}) {
    Status s = TransferError(code, "https://llm.internal:8443/v1/chat/completions",
                             "self-signed certificate", milliseconds(1000), std::nullopt);
    EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
    EXPECT_FALSE(IsProviderOutage(s));
    EXPECT_EQ(s.message().rfind("TLS certificate verification failed for llm.internal:", 0), 0u)
        << s.message();
    EXPECT_NE(s.hint().find("SSL_CERT_FILE"), std::string::npos) << s.hint();
    EXPECT_NE(s.hint().find("http://"), std::string::npos);
    EXPECT_EQ(s.hint().find("retried"), std::string::npos);
  }
}

// The URL in a message keeps its user and loses its password: these messages
// become feature errors, events and doctor output.
TEST(TransportErrorsTest, UrlPasswordsAreMaskedInTheMessages) {
  Status s = TransferError(CURLE_COULDNT_CONNECT, "http://bob:Secret-9@127.0.0.1:9/v1", "",
                           milliseconds(1000), std::nullopt);
  EXPECT_NE(s.message().find("http://bob:***@127.0.0.1:9/v1"), std::string::npos) << s.message();
  EXPECT_EQ(s.ToString().find("Secret-9"), std::string::npos) << s.ToString();
}

TEST(TransportErrorsTest, OutagesStayRetryableAndNameTheProxyWhenOneIsUsed) {
  Status refused = TransferError(CURLE_COULDNT_CONNECT, "http://127.0.0.1:9/v1", "",
                                 milliseconds(1000), std::nullopt);
  EXPECT_EQ(refused.code(), Code::kUnavailable);
  EXPECT_NE(refused.hint().find("base URL"), std::string::npos);
  Status via = TransferError(CURLE_COULDNT_CONNECT, "https://api.openai.com/v1", "",
                             milliseconds(1000), ProxySetting{"https_proxy", "http://p:3128"});
  EXPECT_EQ(via.code(), Code::kUnavailable);
  EXPECT_NE(via.message().find("through the proxy http://p:3128 (from https_proxy)"),
            std::string::npos)
      << via.message();
  EXPECT_EQ(TransferError(CURLE_OPERATION_TIMEDOUT, "https://x/", "", milliseconds(5), std::nullopt)
                .code(),
            Code::kDeadlineExceeded);
  EXPECT_EQ(TransferError(CURLE_COULDNT_RESOLVE_PROXY, "https://x/", "", milliseconds(5),
                          ProxySetting{"HTTPS_PROXY", "http://nope:1"})
                .code(),
            Code::kUnavailable);
}

TEST(TransportErrorsTest, HostOfHandlesPortsCredentialsAndIpv6) {
  EXPECT_EQ(HostOf("https://api.anthropic.com/v1/messages"), "api.anthropic.com");
  EXPECT_EQ(HostOf("http://u:p@127.0.0.1:8080/v1"), "127.0.0.1");
  EXPECT_EQ(HostOf("http://[::1]:8080/v1"), "[::1]");
}

}  // namespace
}  // namespace af::llm
