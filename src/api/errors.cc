#include "af/api/errors.h"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <vector>

#include "af/core/log.h"

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
    case ApiErrorCode::kUriTooLong:
      return 414;
    case ApiErrorCode::kWorkPlanChallenged:
      return 422;
    case ApiErrorCode::kHeadersTooLarge:
      return 431;
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
    case ApiErrorCode::kUriTooLong:
      return "URI_TOO_LONG";
    case ApiErrorCode::kWorkPlanChallenged:
      return "WORK_PLAN_CHALLENGED";
    case ApiErrorCode::kHeadersTooLarge:
      return "HEADERS_TOO_LARGE";
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

namespace {

std::mutex g_paths_mu;
std::vector<std::pair<std::string, std::string>> g_paths;  // longest first

}  // namespace

void AddServerPath(const std::string& path, const std::string& shown_as) {
  if (path.empty() || path == "/") return;
  std::vector<std::string> forms = {path};
  std::error_code ec;
  // The same directory may be written relative ("data") or absolute.
  auto absolute = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  if (!ec && !absolute.empty() && absolute.string() != path) forms.push_back(absolute.string());
  std::lock_guard<std::mutex> lock(g_paths_mu);
  for (auto& f : forms) {
    while (f.size() > 1 && f.back() == '/') f.pop_back();
    if (f.size() < 2) continue;  // "." or "/" would mangle every message
    g_paths.emplace_back(f, shown_as);
  }
  std::stable_sort(g_paths.begin(), g_paths.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

std::string HideServerPaths(std::string_view text) {
  std::string out(text);
  std::lock_guard<std::mutex> lock(g_paths_mu);
  for (const auto& [path, shown] : g_paths) {
    // Only absolute paths are hidden: a relative one ("data") is also a word.
    if (path.front() != '/') continue;
    for (size_t at = out.find(path); at != std::string::npos;
         at = out.find(path, at + shown.size())) {
      out.replace(at, path.size(), shown);
    }
  }
  return out;
}

void ClearServerPathsForTest() {
  std::lock_guard<std::mutex> lock(g_paths_mu);
  g_paths.clear();
}

HttpResponse ErrorResponse(const ApiError& error, std::string_view request_id) {
  ApiErrorCode code = error.EffectiveCode();
  std::string message = HideServerPaths(error.status.message());
  std::string hint = HideServerPaths(error.status.hint());
  if (code == ApiErrorCode::kInternal) {
    // The original may quote SQL, paths or library internals: the log gets
    // it, the client gets the id to find it by.
    log::Get("api")->error("request {}: {} ({})", request_id, error.status.message(),
                           error.status.hint());
    message = "the server failed while handling this request";
    hint = "this is a bug in the server; report it with the request id " + std::string(request_id) +
           " (the server log has the details)";
  }
  // A kOk status reaching here is a bug in the caller; still say something.
  if (message.empty()) message = std::string(ReasonPhrase(HttpStatusOf(code)));
  HttpResponse response;
  response.status = HttpStatusOf(code);
  // dump with replace: messages may quote user input that is not valid UTF-8,
  // and an error path must not throw.
  response.body = ErrorBody(code, message, error.details, request_id, hint)
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
