// The pieces both bus backends share (src/bus/bus_internal.h): the words of
// their refusals, and how a dispatcher thread ends and calls handlers.

#include "bus/bus_internal.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

namespace af::bus_internal {
namespace {

TEST(BusInternalTest, RefusalsKeepTheirWords) {
  Status closed = ClosedError();
  EXPECT_EQ(closed.code(), Code::kCancelled);
  EXPECT_EQ(closed.message(), "bus is closed");
  EXPECT_EQ(closed.hint(), "the process is shutting down; retry after restart");

  BusMessage m;
  EXPECT_EQ(ValidateType(m).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateType(m).message(), "bus message type is empty");
  m.type = "task.assign";
  EXPECT_TRUE(ValidateType(m).ok());

  Status nd = NotDelivered("role:coder", std::string(500, 'x'));
  EXPECT_EQ(nd.code(), Code::kNotFound);
  EXPECT_EQ(nd.message(), "no delivered, unacknowledged message \"" +
                              std::string(kMaxNameLength, 'x') + "\" on queue \"role:coder\"");
}

TEST(BusInternalTest, AThrowingHandlerIsContained) {
  int calls = 0;
  Handler throws = [&](const BusMessage&) {
    ++calls;
    throw std::runtime_error("boom");
  };
  EXPECT_NO_THROW(CallHandler(throws, BusMessage{}));
  EXPECT_EQ(calls, 1);
}

TEST(BusInternalTest, StopJoinsAnotherThreadAndDetachesItself) {
  std::thread other([] {});
  JoinUnlessSelf(other, other.get_id());  // not this thread: joined
  EXPECT_FALSE(other.joinable());

  // A dispatcher ending itself (a handler closed the bus) must not join:
  // that would throw resource_deadlock_would_occur.
  auto self = std::make_shared<std::thread>();
  std::atomic<bool> done{false}, ok{false};
  std::atomic<bool> go{false};
  *self = std::thread([&, self] {
    while (!go) std::this_thread::yield();
    try {
      JoinUnlessSelf(*self, std::this_thread::get_id());
      ok = !self->joinable();
    } catch (...) {
    }
    done = true;
  });
  go = true;
  while (!done) std::this_thread::yield();
  EXPECT_TRUE(ok);
}

}  // namespace
}  // namespace af::bus_internal
