#include "af/bus/bus.h"

#include <string>

#include "bus/bus_internal.h"

namespace af {
namespace bus_internal {

Status ValidateName(std::string_view what, std::string_view name) {
  if (name.empty()) {
    return InvalidArgument(std::string(what) + " name is empty",
                           "pass a name such as \"role:coder\" or \"agent:coder-1\"");
  }
  if (name.size() > kMaxNameLength) {
    return InvalidArgument(std::string(what) + " name is " + std::to_string(name.size()) +
                               " characters long (at most " + std::to_string(kMaxNameLength) + ")",
                           "use a shorter name");
  }
  for (char c : name) {
    if (c < 0x21 || c > 0x7e) {
      return InvalidArgument(std::string(what) + " name \"" + std::string(name.substr(0, 40)) +
                                 "\" contains a space or a non-printable character",
                             "use printable ASCII without spaces, e.g. \"role:coder\"");
    }
  }
  return Status::Ok();
}

void CallHandler(const Handler& handler, const BusMessage& message) {
  try {
    handler(message);
  } catch (...) {
    // A throwing handler must not stop delivery for everyone else.
  }
}

void JoinUnlessSelf(std::thread& thread, std::thread::id dispatcher) {
  if (std::this_thread::get_id() == dispatcher) {
    thread.detach();
  } else {
    thread.join();
  }
}

Status ClosedError() {
  return Cancelled("bus is closed", "the process is shutting down; retry after restart");
}

Status ValidateType(const BusMessage& m) {
  if (m.type.empty()) {
    return InvalidArgument("bus message type is empty",
                           "set BusMessage.type, e.g. \"task.assign\"");
  }
  return Status::Ok();
}

Status NotDelivered(std::string_view queue, std::string_view id) {
  return NotFound("no delivered, unacknowledged message \"" +
                      std::string(id.substr(0, kMaxNameLength)) + "\" on queue \"" +
                      std::string(queue) + "\"",
                  "it was already acknowledged, dead-lettered or never delivered; "
                  "use the id of a Delivery from Receive");
}

}  // namespace bus_internal

Result<std::unique_ptr<Bus>> Bus::Open(const BusOptions& options) {
  if (options.ack_timeout.count() <= 0) {
    return InvalidArgument(
        "bus ack_timeout must be positive, got " + std::to_string(options.ack_timeout.count()) +
            " ms",
        "set the ack timeout to the longest a consumer may work on one message (default 5 min)");
  }
  if (options.max_attempts < 1) {
    return InvalidArgument(
        "bus max_attempts must be at least 1, got " + std::to_string(options.max_attempts),
        "set it to how many deliveries a message gets before it is dead-lettered (default 5)");
  }
  if (options.url.empty()) return bus_internal::NewInProcBus(options);

  // Only the scheme is echoed: the rest of a URL may carry a password.
  const size_t sep = options.url.find("://");
  const std::string scheme = sep == std::string::npos ? "" : options.url.substr(0, sep);
  if (scheme == "redis") return bus_internal::NewRedisBus(options);
  if (scheme == "rediss") {
    // The hiredis in Debian 12 (0.14) has no TLS support.
    return InvalidArgument("rediss:// (Redis over TLS) is not supported",
                           "use redis:// on a trusted network, or a TLS tunnel (e.g. stunnel) "
                           "to the server and redis:// to the tunnel's local end");
  }
  return InvalidArgument(
      scheme.empty() ? "bus URL has no scheme" : "unsupported bus URL scheme \"" + scheme + "\"",
      "leave REDIS_URL unset for the in-process bus, or set it to redis://host:port");
}

}  // namespace af
