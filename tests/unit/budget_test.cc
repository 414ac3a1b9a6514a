// BudgetLedger: limits and budgets count the calls in flight.
#include "af/agents/budget.h"

#include <gtest/gtest.h>

#include "af/core/config.h"
#include "af/store/store.h"

namespace af {
namespace {

class BudgetLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.url = "sqlite::memory:";
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    auto f = store_->CreateFeature(Feature{.title = "t"});
    ASSERT_TRUE(f.ok());
    feature_ = f->id;
  }
  std::unique_ptr<Store> store_;
  Config config_;
  std::string feature_;
};

TEST_F(BudgetLedgerTest, FeatureUsdCountsInFlightCallsUntilReleased) {
  config_.budget.feature_usd = 1.0;
  BudgetLedger ledger(store_.get(), &config_);
  auto first = ledger.Reserve(feature_, {100, 0.6});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(ledger.InFlight(feature_), 1);
  auto second = ledger.Reserve(feature_, {100, 0.6});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(second.status().message().rfind("budget exceeded", 0), 0u) << second.status().message();
  EXPECT_NE(second.status().message().find("budget.feature_usd"), std::string::npos);
  EXPECT_EQ(ledger.InFlight(feature_), 1) << "a refused call must reserve nothing";

  { BudgetLedger::Reservation done = std::move(first).value(); }  // released here
  EXPECT_EQ(ledger.InFlight(feature_), 0);
  EXPECT_TRUE(ledger.Reserve(feature_, {100, 0.6}).ok());
}

TEST_F(BudgetLedgerTest, StepLimitAndTokensCountInFlightCalls) {
  config_.limits.max_steps = 2;
  config_.budget.feature_tokens = 1000;
  BudgetLedger ledger(store_.get(), &config_);
  auto a = ledger.Reserve(feature_, {400, 0});
  ASSERT_TRUE(a.ok());
  auto too_many_tokens = ledger.Reserve(feature_, {700, 0});
  ASSERT_FALSE(too_many_tokens.ok());
  EXPECT_NE(too_many_tokens.status().message().find("budget.feature_tokens"), std::string::npos);
  auto b = ledger.Reserve(feature_, {400, 0});
  ASSERT_TRUE(b.ok());
  auto third = ledger.Reserve(feature_, {1, 0});
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().message().rfind("step limit reached", 0), 0u)
      << third.status().message();
  EXPECT_NE(third.status().message().find("2 in flight"), std::string::npos);
}

TEST_F(BudgetLedgerTest, DailyBudgetSpansFeaturesAndWarnsAt80Percent) {
  config_.budget.daily_usd = 1.0;
  auto other = store_->CreateFeature(Feature{.title = "other"});
  ASSERT_TRUE(other.ok());
  BudgetLedger ledger(store_.get(), &config_);
  auto a = ledger.Reserve(feature_, {10, 0.5});
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->daily_warning());
  // The next call's worst case does not count towards the warning: what
  // is spent (in flight included) does.
  auto b = ledger.Reserve(other->id, {10, 0.35});
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->daily_warning());
  EXPECT_DOUBLE_EQ(b->spent_today_usd(), 0.5);
  auto warned = ledger.Reserve(other->id, {10, 0.01});
  ASSERT_TRUE(warned.ok());
  EXPECT_TRUE(warned->daily_warning());
  EXPECT_DOUBLE_EQ(warned->spent_today_usd(), 0.85);
  // Once per feature and day: not on every call after it.
  auto again = ledger.Reserve(other->id, {10, 0.01});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->daily_warning());
  EXPECT_TRUE(ledger.Reserve(feature_, {10, 0.01})->daily_warning());
  auto c = ledger.Reserve(other->id, {10, 0.2});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("budget.daily_usd"), std::string::npos);
  // The refusal names the next call's worst case, which is what did not fit.
  EXPECT_NE(c.status().message().find("$0.8700 spent today, in flight included, and the next "
                                      "call may cost up to $0.2000"),
            std::string::npos)
      << c.status().message();
  EXPECT_NE(c.status().hint().find("wait until tomorrow"), std::string::npos);
  // A call whose worst case alone is over the daily budget never fits:
  // waiting does not help, a smaller max_tokens does.
  auto never = ledger.Reserve(other->id, {10, 1.5});
  ASSERT_FALSE(never.ok());
  EXPECT_EQ(never.status().hint().find("wait until tomorrow"), std::string::npos);
  EXPECT_NE(never.status().hint().find("agents.<role>.max_tokens"), std::string::npos)
      << never.status().hint();
}

}  // namespace
}  // namespace af
