#pragma once
// The one mapping from a failure (af::Code) to what an HTTP client sees: a
// status code plus the one error body every route answers with
//   {"error":{"code","message","details","request_id","hint"}}
//
// Mapping of af::Code (ApiErrorCodeFor):
//   kInvalidArgument    -> 400 VALIDATION_ERROR
//   kUnauthenticated    -> 401 UNAUTHORIZED
//   kPermissionDenied   -> 403 FORBIDDEN
//   kNotFound           -> 404 NOT_FOUND
//   kAlreadyExists      -> 409 CONFLICT
//   kFailedPrecondition -> 409 CONFLICT  (the target is not in a state that
//                          allows the request, e.g. cancelling a finished
//                          feature; retrying the same request will not help)
//   kResourceExhausted  -> 429 RATE_LIMIT_EXCEEDED
//   kUnavailable        -> 503 UNAVAILABLE
//   kCancelled          -> 503 UNAVAILABLE  (the server stopped the work, e.g.
//                          while shutting down; a retry later may work)
//   kDeadlineExceeded   -> 504 TIMEOUT
//   kInternal, kOk      -> 500 INTERNAL  (an "error" with kOk is a bug)
// Codes no af::Code maps to, chosen explicitly via ApiError::code:
//   413 PAYLOAD_TOO_LARGE, 414 URI_TOO_LONG, 422 WORK_PLAN_CHALLENGED,
//   431 HEADERS_TOO_LARGE, 405 METHOD_NOT_ALLOWED.
//
// What a client never sees: the file system paths of the server (its data
// directory, its database file; registered with AddServerPath) are replaced by
// their names in every message and hint, and a 500 says only that the server
// failed, with the request id: the original message (which may quote SQL
// errors or paths) goes to the "api" log under that id.
//
// All functions are pure and thread-safe.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "af/api/http_types.h"
#include "af/core/status.h"

namespace af {

enum class ApiErrorCode {
  kValidationError,     // 400
  kUnauthorized,        // 401
  kForbidden,           // 403
  kNotFound,            // 404
  kMethodNotAllowed,    // 405
  kConflict,            // 409
  kPayloadTooLarge,     // 413
  kUriTooLong,          // 414
  kWorkPlanChallenged,  // 422
  kHeadersTooLarge,     // 431
  kRateLimitExceeded,   // 429
  kInternal,            // 500
  kUnavailable,         // 503
  kTimeout,             // 504 (the last: openapi.cc lists them all up to it)
};

// The API code an af::Code maps to (table above).
ApiErrorCode ApiErrorCodeFor(Code code);
// The HTTP status of an API code (400, 401, ...).
int HttpStatusOf(ApiErrorCode code);
// The wire name of an API code ("VALIDATION_ERROR", ...).
std::string_view ApiErrorName(ApiErrorCode code);

// An error as the API reports it. `status` supplies the message and the hint;
// `code`, when set, overrides the mapping of status.code() (for 413, 422, 405).
struct ApiError {
  ApiError() = default;
  explicit ApiError(Status s, std::optional<ApiErrorCode> c = std::nullopt)
      : status(std::move(s)), code(c) {}

  Status status;
  std::optional<ApiErrorCode> code;
  nlohmann::json details = nlohmann::json::object();  // machine-readable extras
  std::optional<int> retry_after_seconds;  // adds a Retry-After header (use with 429/503)

  ApiErrorCode EffectiveCode() const { return code ? *code : ApiErrorCodeFor(status.code()); }
};

// {"error":{"code":..,"message":..,"details":..,"request_id":..,"hint":..}}.
// An empty hint is written as null; null details as {}.
nlohmann::json ErrorBody(ApiErrorCode code, std::string_view message, const nlohmann::json& details,
                         std::string_view request_id, std::string_view hint);

// Registers a path of this server that must not reach clients, shown as
// `shown_as` instead (e.g. the data directory as "<data_dir>"). Longer paths
// are replaced first, so a file inside a registered directory keeps its
// relative part. Thread-safe; meant for start-up.
void AddServerPath(const std::string& path, const std::string& shown_as);
// `text` with every registered path replaced.
std::string HideServerPaths(std::string_view text);
// Drops the registered paths (tests).
void ClearServerPathsForTest();

// The complete response: status from the code, JSON body, Retry-After if set.
// A 500 gets a generic message (the original is logged), every other message
// and hint goes through HideServerPaths.
HttpResponse ErrorResponse(const ApiError& error, std::string_view request_id);
// Shorthand for ErrorResponse(ApiError{status}, request_id).
HttpResponse ErrorResponse(const Status& status, std::string_view request_id);

// A JSON response with the given status (for handlers' success paths).
HttpResponse JsonResponse(int status, const nlohmann::json& body);

}  // namespace af
