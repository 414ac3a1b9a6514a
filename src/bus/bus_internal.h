#pragma once
// Pieces shared by the bus backends; not part of the public API.

#include <functional>
#include <memory>
#include <string_view>
#include <thread>

#include "af/bus/bus.h"
#include "af/core/status.h"

namespace af::bus_internal {

// Longest queue, consumer, topic or agent name accepted.
inline constexpr size_t kMaxNameLength = 200;

// OK if `name` is 1..kMaxNameLength printable ASCII characters without spaces;
// otherwise InvalidArgument naming `what` ("queue", "consumer", "topic", ...).
Status ValidateName(std::string_view what, std::string_view name);

// A subscription's handler, as both backends keep it.
using Handler = std::function<void(const BusMessage&)>;

// Calls `handler` with `message`; an exception it throws is swallowed, so a
// throwing handler does not stop delivery to everyone else.
void CallHandler(const Handler& handler, const BusMessage& message);

// Ends a dispatcher thread at Stop: joins it, or detaches it when Stop runs
// on that very thread (`dispatcher`, e.g. a handler closing the bus), where a
// join would deadlock. Detaching is memory-safe only because the thread owns
// a reference to the object it runs.
void JoinUnlessSelf(std::thread& thread, std::thread::id dispatcher);

// What every call on a closed bus returns.
Status ClosedError();

// OK if the message has a type; otherwise InvalidArgument.
Status ValidateType(const BusMessage& m);

// NotFound for Ack/Nack of `id` on `queue` when no such delivery is
// outstanding (the id is cut to kMaxNameLength in the message).
Status NotDelivered(std::string_view queue, std::string_view id);

// The in-process backend. `options` must already be validated by Bus::Open.
std::unique_ptr<Bus> NewInProcBus(const BusOptions& options);

// The Redis Streams backend for a redis:// URL (options validated by
// Bus::Open). Connects once before returning: Unavailable (naming host:port,
// never the password) when Redis cannot be reached, Unauthenticated when it
// refuses the credentials, InvalidArgument for a malformed URL.
Result<std::unique_ptr<Bus>> NewRedisBus(const BusOptions& options);

}  // namespace af::bus_internal
