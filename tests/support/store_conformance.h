#pragma once
// The conformance suite every Store backend must pass. A backend's test file
// instantiates it with one line:
//
//   AF_INSTANTIATE_STORE_CONFORMANCE(Sqlite, [] { return OpenFreshSqliteStore(); });
//
// The factory must return a fresh, empty, migrated store on every call (one
// call per test). The tests live in store_conformance.cc inside the
// af_test_support library; the macro also references an anchor symbol so the
// linker keeps that object (and its TEST_P registrations) in the test binary.

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "af/core/status.h"
#include "af/store/store.h"

namespace af::testing {

using StoreFactory = std::function<Result<std::unique_ptr<Store>>()>;

// The suite's parameter: a backend name (for test names) and its factory.
struct StoreBackend {
  std::string name;
  StoreFactory open;
  friend void PrintTo(const StoreBackend& b, std::ostream* os) { *os << b.name; }
};

class StoreConformanceTest : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override;
  std::unique_ptr<Store> store_;
};

// Forces the linker to keep store_conformance.o; returns 0.
int StoreConformanceAnchor();

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

}  // namespace af::testing

// Test helpers: fail the test with the Status text when not ok.
#define SC_ASSERT_OK(expr)                                             \
  do {                                                                 \
    const auto& sc_v_ = (expr);                                        \
    ASSERT_TRUE(::af::testing::StatusOf(sc_v_).ok())                   \
        << #expr << ": " << ::af::testing::StatusOf(sc_v_).ToString(); \
  } while (0)
#define SC_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  SC_ASSERT_OK_AND_ASSIGN_IMPL_(AF_CONCAT_(sc_result_, __LINE__), lhs, expr)
#define SC_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)                \
  auto tmp = (expr);                                                 \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().ToString(); \
  lhs = std::move(tmp).value()

// gtest pastes the suite name into identifiers, so the instantiation happens
// inside af::testing; `factory` may use names from af and the global namespace.
#define AF_INSTANTIATE_STORE_CONFORMANCE(backend_name, factory)                                   \
  namespace af::testing {                                                                         \
  [[maybe_unused]] static const int af_store_conformance_anchor_##backend_name =                  \
      StoreConformanceAnchor();                                                                   \
  INSTANTIATE_TEST_SUITE_P(backend_name, StoreConformanceTest,                                    \
                           ::testing::Values(StoreBackend{#backend_name, StoreFactory(factory)}), \
                           [](const auto& info) { return info.param.name; });                     \
  } /* namespace af::testing */                                                                   \
  static_assert(true, "require a semicolon")
