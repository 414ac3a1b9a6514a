#pragma once
// Expected failures are values: every fallible function returns a Status or a
// Result<T>. A Status carries a code from a small fixed set, a human message
// (what failed) and a hint (what to do next). Exceptions are reserved for bugs
// and start-up failures and never cross a thread or an HTTP handler.

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace af {

// The small set of failure kinds. The API maps each to one HTTP status
// (see api/errors); the CLI maps them to exit codes.
enum class Code {
  kOk,
  kInvalidArgument,     // bad input from the caller: changes nothing
  kNotFound,            // the named thing does not exist
  kAlreadyExists,       // a create that collides
  kFailedPrecondition,  // the system is not in a state to do it (e.g. port in use)
  kUnauthenticated,     // missing or bad credentials
  kPermissionDenied,    // credentials lack the permission
  kResourceExhausted,   // rate limits, budgets, payload sizes
  kDeadlineExceeded,    // a timeout
  kUnavailable,         // a dependency is down; retrying later may work
  kCancelled,           // stopped on request
  kInternal,            // a bug or an unexpected state
};

// Stable lower_snake name of a code ("invalid_argument"), used in logs and JSON.
std::string_view CodeName(Code code);

class Status {
 public:
  Status() = default;  // ok
  Status(Code code, std::string message, std::string hint = {})
      : code_(code), message_(std::move(message)), hint_(std::move(hint)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

  // "message: hint" (or just the message). What a user reads.
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context + ": "`.
  Status WithContext(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::string hint_;
};

inline Status InvalidArgument(std::string msg, std::string hint = {}) {
  return {Code::kInvalidArgument, std::move(msg), std::move(hint)};
}
inline Status NotFound(std::string msg, std::string hint = {}) {
  return {Code::kNotFound, std::move(msg), std::move(hint)};
}
inline Status AlreadyExists(std::string msg, std::string hint = {}) {
  return {Code::kAlreadyExists, std::move(msg), std::move(hint)};
}
inline Status FailedPrecondition(std::string msg, std::string hint = {}) {
  return {Code::kFailedPrecondition, std::move(msg), std::move(hint)};
}
inline Status Unauthenticated(std::string msg, std::string hint = {}) {
  return {Code::kUnauthenticated, std::move(msg), std::move(hint)};
}
inline Status PermissionDenied(std::string msg, std::string hint = {}) {
  return {Code::kPermissionDenied, std::move(msg), std::move(hint)};
}
inline Status ResourceExhausted(std::string msg, std::string hint = {}) {
  return {Code::kResourceExhausted, std::move(msg), std::move(hint)};
}
inline Status DeadlineExceeded(std::string msg, std::string hint = {}) {
  return {Code::kDeadlineExceeded, std::move(msg), std::move(hint)};
}
inline Status Unavailable(std::string msg, std::string hint = {}) {
  return {Code::kUnavailable, std::move(msg), std::move(hint)};
}
inline Status Cancelled(std::string msg, std::string hint = {}) {
  return {Code::kCancelled, std::move(msg), std::move(hint)};
}
inline Status Internal(std::string msg, std::string hint = {}) {
  return {Code::kInternal, std::move(msg), std::move(hint)};
}

// A value or the Status that explains why there is none. Accessing value() of
// a failed Result is a bug (it aborts in debug builds via std::get).
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace af

#define AF_CONCAT_INNER_(a, b) a##b
#define AF_CONCAT_(a, b) AF_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function when `expr` is not ok.
#define AF_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::af::Status af_status_ = (expr);        \
    if (!af_status_.ok()) return af_status_; \
  } while (0)

// `AF_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the Status.
#define AF_ASSIGN_OR_RETURN(lhs, expr) \
  AF_ASSIGN_OR_RETURN_IMPL_(AF_CONCAT_(af_result_, __LINE__), lhs, expr)
#define AF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
