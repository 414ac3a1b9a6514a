#include <gtest/gtest.h>

#include "af/core/sse.h"
#include "af/llm/pricing.h"
#include "llm/retry.h"

namespace af::llm {
namespace {

using std::chrono::milliseconds;

TEST(BackoffTest, CapGrowsExponentiallyAndIsBounded) {
  BackoffPolicy p{milliseconds(500), milliseconds(30000)};
  EXPECT_EQ(BackoffCap(p, 0), milliseconds(500));
  EXPECT_EQ(BackoffCap(p, 1), milliseconds(1000));
  EXPECT_EQ(BackoffCap(p, 2), milliseconds(2000));
  EXPECT_EQ(BackoffCap(p, 5), milliseconds(16000));
  EXPECT_EQ(BackoffCap(p, 6), milliseconds(30000));
  EXPECT_EQ(BackoffCap(p, 100), milliseconds(30000));  // no overflow
}

TEST(BackoffTest, DelayJitteredWithinBoundsAndGrows) {
  BackoffPolicy p{milliseconds(100), milliseconds(5000)};
  std::mt19937_64 rng(7);
  int64_t sum_first = 0, sum_late = 0;
  for (int i = 0; i < 200; ++i) {
    milliseconds d0 = BackoffDelay(p, 0, std::nullopt, rng);
    milliseconds d4 = BackoffDelay(p, 4, std::nullopt, rng);
    milliseconds d20 = BackoffDelay(p, 20, std::nullopt, rng);
    EXPECT_EQ(d0, milliseconds(100));  // cap == base: no room for jitter
    EXPECT_GE(d4, milliseconds(100));
    EXPECT_LE(d4, milliseconds(1600));
    EXPECT_GE(d20, milliseconds(100));
    EXPECT_LE(d20, milliseconds(5000));
    sum_first += d0.count();
    sum_late += d20.count();
  }
  EXPECT_GT(sum_late, sum_first * 10);
  // Jitter: not all the same.
  std::set<int64_t> distinct;
  for (int i = 0; i < 20; ++i) distinct.insert(BackoffDelay(p, 6, std::nullopt, rng).count());
  EXPECT_GT(distinct.size(), 5u);
}

TEST(BackoffTest, HonoursRetryAfter) {
  BackoffPolicy p{milliseconds(100), milliseconds(1000)};
  std::mt19937_64 rng(1);
  EXPECT_GE(BackoffDelay(p, 0, milliseconds(2000), rng), milliseconds(2000));  // above the cap
  EXPECT_LE(BackoffDelay(p, 3, milliseconds(1), rng), milliseconds(1000));
  EXPECT_GE(BackoffDelay(p, 3, milliseconds(1), rng), milliseconds(100));
}

TEST(BackoffTest, ParsesRetryAfterHeaders) {
  EXPECT_EQ(ParseRetryAfter({{"retry-after", "2"}}), milliseconds(2000));
  EXPECT_EQ(ParseRetryAfter({{"retry-after", "0.5"}}), milliseconds(500));
  EXPECT_EQ(ParseRetryAfter({{"retry-after-ms", "750"}}), milliseconds(750));
  EXPECT_EQ(ParseRetryAfter({{"retry-after-ms", "750"}, {"retry-after", "1"}}), milliseconds(750));
  EXPECT_EQ(ParseRetryAfter({{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}}), std::nullopt);
  EXPECT_EQ(ParseRetryAfter({{"retry-after", "-3"}}), std::nullopt);
  EXPECT_EQ(ParseRetryAfter({}), std::nullopt);
}

TEST(BackoffTest, RetryableStatuses) {
  for (int s : {429, 500, 502, 503, 504, 529}) EXPECT_TRUE(IsRetryableHttpStatus(s)) << s;
  for (int s : {200, 400, 401, 403, 404, 413, 422, 501})
    EXPECT_FALSE(IsRetryableHttpStatus(s)) << s;
}

TEST(PricingTest, KnownModelsByLongestPrefix) {
  auto p = LookupPrice("claude-sonnet-4-5-20250929");
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->input_per_mtok, 3.0);
  EXPECT_DOUBLE_EQ(p->output_per_mtok, 15.0);
  p = LookupPrice("gpt-4o-mini-2024-07-18");
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->input_per_mtok, 0.15);  // not gpt-4o's price
  p = LookupPrice("gpt-4o");
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->input_per_mtok, 2.5);
  p = LookupPrice("anthropic/claude-opus-4-1");
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->output_per_mtok, 75.0);
}

TEST(PricingTest, CostAndZeroCases) {
  EXPECT_DOUBLE_EQ(CostUsd("anthropic", "claude-sonnet-4-5", {1000000, 1000000}), 18.0);
  EXPECT_DOUBLE_EQ(CostUsd("openai", "gpt-4o", {2000, 1000}), (2000 * 2.5 + 1000 * 10.0) / 1e6);
  EXPECT_EQ(CostUsd("openai", "llama3:8b", {5000, 5000}), 0);
  EXPECT_EQ(CostUsd("replay", "claude-sonnet-4-5", {5000, 5000}), 0);
  EXPECT_FALSE(LookupPrice("qwen2.5-coder"));
  EXPECT_EQ(CostUsd("anthropic", "claude-sonnet-4-5", {0, 0}), 0);
}

TEST(PricingTest, ConfiguredPricesWinByLongestPrefix) {
  const PriceTable configured = {{"claude-sonnet-4-5", {2.0, 10.0}},  // a negotiated price
                                 {"my-llama", {0.1, 0.2}},
                                 {"ollama/qwen", {0.3, 0.4}}};
  EXPECT_DOUBLE_EQ(LookupPrice("claude-sonnet-4-5-20250929", configured)->input_per_mtok, 2.0);
  // Models the configuration does not name keep the built-in price.
  EXPECT_DOUBLE_EQ(LookupPrice("claude-sonnet-4-0", configured)->input_per_mtok, 3.0);
  EXPECT_DOUBLE_EQ(LookupPrice("vendor/my-llama-3b", configured)->output_per_mtok, 0.2);
  EXPECT_DOUBLE_EQ(LookupPrice("ollama/qwen2.5", configured)->input_per_mtok, 0.3);
  EXPECT_FALSE(LookupPrice("qwen2.5", configured));
  EXPECT_DOUBLE_EQ(CostUsd("openai", "my-llama", {1'000'000, 1'000'000}, configured), 0.3);
  EXPECT_EQ(CostUsd("replay", "my-llama", {1'000'000, 1'000'000}, configured), 0);
}

TEST(SseParserTest, EventsSplitAnywhere) {
  const std::string body =
      ": comment\r\nevent: a\r\ndata: {\"x\":1}\r\n\r\ndata: line1\ndata: line2\n\n"
      "event: ping\n\ndata: [DONE]\n\n";
  for (size_t split = 1; split <= 7; ++split) {
    std::vector<std::pair<std::string, std::string>> got;
    SseParser p([&](std::string_view e, std::string_view d) {
      got.emplace_back(e, d);
      return Status::Ok();
    });
    for (size_t i = 0; i < body.size(); i += split) {
      ASSERT_TRUE(p.Feed(std::string_view(body).substr(i, split)).ok());
    }
    ASSERT_EQ(got.size(), 3u) << "split " << split;
    EXPECT_EQ(got[0], (std::pair<std::string, std::string>{"a", "{\"x\":1}"}));
    EXPECT_EQ(got[1], (std::pair<std::string, std::string>{"", "line1\nline2"}));
    EXPECT_EQ(got[2], (std::pair<std::string, std::string>{"", "[DONE]"}));
  }
}

TEST(SseParserTest, HandlerErrorStops) {
  SseParser p([](std::string_view, std::string_view d) {
    return d == "bad" ? Internal("bad event") : Status::Ok();
  });
  EXPECT_TRUE(p.Feed("data: ok\n\n").ok());
  Status s = p.Feed("data: bad\n\n");
  EXPECT_EQ(s.code(), Code::kInternal);
}

}  // namespace
}  // namespace af::llm
