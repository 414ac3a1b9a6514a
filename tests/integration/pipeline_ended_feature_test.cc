// Nothing is sent to the provider for a feature that has ended. Seen before:
// a feature failed on its timeout while the provider answered 500 with
// retry-after, and the client's retry reached the provider seconds after the
// end. The model call now asks the feature's check before every attempt.

#include <gtest/gtest.h>

#include "af/agents/pipeline.h"
#include "af/store/store.h"
#include "support/pipeline_harness.h"

namespace af {
namespace {

using testing::FakeReply;
using testing::PipelineHarness;
using testing::RecordedRequest;
using testing::Wire;

class PipelineEndedFeature : public ::testing::TestWithParam<Wire> {
 protected:
  PipelineEndedFeature() : h_(GetParam()) {
    // The client would retry for a long time: 20 retries, each after the
    // 1 s the server asks for. No circuit: every attempt goes to the wire.
    h_.config().llm.max_retries = 20;
    h_.config().llm.circuit_failures = 0;
    h_.fake().SetResponder([](const RecordedRequest&) -> std::optional<FakeReply> {
      return FakeReply::Status(500, R"({"error":{"message":"overloaded"}})",
                               {{"retry-after", "1"}});
    });
  }

  // After the feature ended, the provider hears nothing more from it.
  void ExpectSilenceAfterTheEnd() {
    const size_t at_end = h_.fake().request_count();
    EXPECT_FALSE(testing::WaitFor([&] { return h_.fake().request_count() > at_end; },
                                  std::chrono::seconds(3)))
        << "a request reached the provider after the feature ended";
  }

  PipelineHarness h_;
};

TEST_P(PipelineEndedFeature, NoRequestAfterTheFeatureTimedOut) {
  h_.config().limits.feature_timeout = 2;
  ASSERT_TRUE(h_.Start().ok());
  auto submitted = h_.pipeline().Submit(PipelineHarness::Request("Times out"));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  auto f = h_.pipeline().WaitFor(submitted->id, std::chrono::seconds(30));
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->status, "failed");
  EXPECT_EQ(f->reason, "timeout");
  EXPECT_GE(h_.fake().request_count(), 1u);
  ExpectSilenceAfterTheEnd();
}

TEST_P(PipelineEndedFeature, NoRequestAfterTheFeatureWasCancelled) {
  ASSERT_TRUE(h_.Start().ok());
  auto submitted = h_.pipeline().Submit(PipelineHarness::Request("Cancelled"));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  ASSERT_TRUE(testing::WaitFor([&] { return h_.fake().request_count() >= 1; }));
  ASSERT_TRUE(h_.pipeline().Cancel(submitted->id).ok());
  ExpectSilenceAfterTheEnd();
  // The planner is free again at once, not after the client's retries.
  EXPECT_TRUE(testing::WaitFor([&] {
    auto a = h_.store().GetAgent("planner-1");
    return a.ok() && a->state == "idle";
  }));
}

INSTANTIATE_TEST_SUITE_P(Wires, PipelineEndedFeature,
                         ::testing::Values(Wire::kOpenAi, Wire::kAnthropic),
                         [](const ::testing::TestParamInfo<Wire>& p) {
                           return testing::WireName(p.param);
                         });

}  // namespace
}  // namespace af
