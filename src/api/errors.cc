#include "af/api/errors.h"

namespace af {

ApiErrorCode ApiErrorCodeFor(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
      return ApiErrorCode::kValidationError;
    case Code::kUnauthenticated:
      return ApiErrorCode::kUnauthorized;
    case Code::kPermissionDenied:
      return ApiErrorCode::kForbidden;
    case Code::kNotFound:
      return ApiErrorCode::kNotFound;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition:
      return ApiErrorCode::kConflict;
    case Code::kResourceExhausted:
      return ApiErrorCode::kRateLimitExceeded;
    case Code::kUnavailable:
    case Code::kCancelled:
      return ApiErrorCode::kUnavailable;
    case Code::kDeadlineExceeded:
      return ApiErrorCode::kTimeout;
    case Code::kOk:
    case Code::kInternal:
      return ApiErrorCode::kInternal;
  }
  return ApiErrorCode::kInternal;  // an out-of-range value is a bug: report it as one
}

int HttpStatusOf(ApiErrorCode code) {
  switch (code) {
    case ApiErrorCode::kValidationError:
      return 400;
    case ApiErrorCode::kUnauthorized:
      return 401;
    case ApiErrorCode::kForbidden:
      return 403;
    case ApiErrorCode::kNotFound:
      return 404;
    case ApiErrorCode::kMethodNotAllowed:
      return 405;
    case ApiErrorCode::kConflict:
      return 409;
    case ApiErrorCode::kPayloadTooLarge:
      return 413;
    case ApiErrorCode::kWorkPlanChallenged:
      return 422;
    case ApiErrorCode::kRateLimitExceeded:
      return 429;
    case ApiErrorCode::kInternal:
      return 500;
    case ApiErrorCode::kUnavailable:
      return 503;
    case ApiErrorCode::kTimeout:
      return 504;
  }
  return 500;
}

std::string_view ApiErrorName(ApiErrorCode code) {
  switch (code) {
    case ApiErrorCode::kValidationError:
      return "VALIDATION_ERROR";
    case ApiErrorCode::kUnauthorized:
      return "UNAUTHORIZED";
    case ApiErrorCode::kForbidden:
      return "FORBIDDEN";
    case ApiErrorCode::kNotFound:
      return "NOT_FOUND";
    case ApiErrorCode::kMethodNotAllowed:
      return "METHOD_NOT_ALLOWED";
    case ApiErrorCode::kConflict:
      return "CONFLICT";
    case ApiErrorCode::kPayloadTooLarge:
      return "PAYLOAD_TOO_LARGE";
    case ApiErrorCode::kWorkPlanChallenged:
      return "WORK_PLAN_CHALLENGED";
    case ApiErrorCode::kRateLimitExceeded:
      return "RATE_LIMIT_EXCEEDED";
    case ApiErrorCode::kInternal:
      return "INTERNAL";
    case ApiErrorCode::kUnavailable:
      return "UNAVAILABLE";
    case ApiErrorCode::kTimeout:
      return "TIMEOUT";
  }
  return "INTERNAL";
}

nlohmann::json ErrorBody(ApiErrorCode code, std::string_view message, const nlohmann::json& details,
                         std::string_view request_id, std::string_view hint) {
  nlohmann::json error = {
      {"code", ApiErrorName(code)},
      {"message", message},
      {"details", details.is_null() ? nlohmann::json::object() : details},
      {"request_id", request_id},
      {"hint", hint.empty() ? nlohmann::json(nullptr) : nlohmann::json(hint)},
  };
  return {{"error", std::move(error)}};
}

HttpResponse ErrorResponse(const ApiError& error, std::string_view request_id) {
  ApiErrorCode code = error.EffectiveCode();
  std::string message = error.status.message();
  // A kOk status reaching here is a bug in the caller; still say something.
  if (message.empty()) message = std::string(ReasonPhrase(HttpStatusOf(code)));
  HttpResponse response;
  response.status = HttpStatusOf(code);
  // dump with replace: messages may quote user input that is not valid UTF-8,
  // and an error path must not throw.
  response.body = ErrorBody(code, message, error.details, request_id, error.status.hint())
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (error.retry_after_seconds) {
    response.headers.emplace_back("Retry-After", std::to_string(*error.retry_after_seconds));
  }
  return response;
}

HttpResponse ErrorResponse(const Status& status, std::string_view request_id) {
  return ErrorResponse(ApiError(status), request_id);
}

HttpResponse JsonResponse(int status, const nlohmann::json& body) {
  HttpResponse response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

}  // namespace af
