#pragma once
// Conformance suite for af::Bus backends. The tests (bus_conformance.cc) use
// only the public Bus interface; a backend passes by instantiating them:
//
//   INSTANTIATE_TEST_SUITE_P(InProc, BusConformanceTest,
//       ::testing::Values(af::testing::BusBackend{"inproc", &af::Bus::Open}),
//       af::testing::BusBackendName);
//
// The factory receives options with a fake clock (now_ms) that the tests
// advance to expire deliveries without sleeping, ack_timeout 1 s and
// max_attempts 3; other fields as the factory likes (a Redis backend sets url).
// Queue and topic names are prefixed per test, so a shared server is fine.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "af/bus/bus.h"

namespace af::testing {

struct BusBackend {
  std::string name;  // test name suffix, [A-Za-z0-9_]
  std::function<Result<std::unique_ptr<Bus>>(const BusOptions&)> open;
  // True when the backend measures ack_timeout on its own real-time clock
  // rather than options.now_ms (Redis: the server's idle times). Advance()
  // then also lets that much real time pass, and the one check that needs a
  // millisecond-exact expiry is made half-way instead.
  bool server_clock = false;
  // Why the backend cannot run on this machine (the tests are skipped with
  // it); empty or unset when it can.
  std::function<std::string()> skip_reason;
};

std::string BusBackendName(const ::testing::TestParamInfo<BusBackend>& info);
// Prints the backend name (keeps test listings readable).
void PrintTo(const BusBackend& backend, std::ostream* os);

class BusConformanceTest : public ::testing::TestWithParam<BusBackend> {
 protected:
  static constexpr int64_t kAckTimeoutMs = 1000;
  static constexpr int kMaxAttempts = 3;

  void SetUp() override;
  void TearDown() override;

  // Options as given to the factory: fake clock, kAckTimeoutMs, kMaxAttempts.
  BusOptions Options();
  // Opens another bus through the backend's factory (fails the test if it can't).
  std::unique_ptr<Bus> OpenBus(const BusOptions& options);
  // `name` made unique to this test, e.g. "BusConformanceTest.Fifo/inproc:role:coder".
  std::string Q(const std::string& name) const;
  // Moves the fake clock; on a server_clock backend also waits that long in
  // real time (at most one ack timeout: longer expires nothing more).
  void Advance(int64_t ms);
  int64_t now() const { return now_ms_.load(); }

  std::unique_ptr<Bus> bus_;

 private:
  std::atomic<int64_t> now_ms_{1'700'000'000'000};
  std::string prefix_;
};

}  // namespace af::testing
