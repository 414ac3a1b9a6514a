#pragma once
// Pieces shared by the bus backends; not part of the public API.

#include <memory>
#include <string_view>

#include "af/bus/bus.h"
#include "af/core/status.h"

namespace af::bus_internal {

// Longest queue, consumer, topic or agent name accepted.
inline constexpr size_t kMaxNameLength = 200;

// OK if `name` is 1..kMaxNameLength printable ASCII characters without spaces;
// otherwise InvalidArgument naming `what` ("queue", "consumer", "topic", ...).
Status ValidateName(std::string_view what, std::string_view name);

// The in-process backend. `options` must already be validated by Bus::Open.
std::unique_ptr<Bus> NewInProcBus(const BusOptions& options);

// The Redis Streams backend for a redis:// URL (options validated by
// Bus::Open). Connects once before returning: Unavailable (naming host:port,
// never the password) when Redis cannot be reached, Unauthenticated when it
// refuses the credentials, InvalidArgument for a malformed URL.
Result<std::unique_ptr<Bus>> NewRedisBus(const BusOptions& options);

}  // namespace af::bus_internal
