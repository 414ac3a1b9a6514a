// Runs the Bus conformance suite against the in-process backend.

#include <gtest/gtest.h>

#include "af/bus/bus.h"
#include "support/bus_conformance.h"

namespace af::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(InProc, BusConformanceTest,
                         ::testing::Values(BusBackend{"inproc", &Bus::Open}), BusBackendName);

}  // namespace
}  // namespace af::testing
