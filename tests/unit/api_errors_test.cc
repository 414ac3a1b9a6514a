#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "af/api/errors.h"

namespace af {
namespace {

struct CodeCase {
  Code code;
  int http;
  const char* name;
};

TEST(ApiErrorsTest, EveryCodeMapsToItsHttpStatusAndName) {
  const CodeCase cases[] = {
      {Code::kInvalidArgument, 400, "VALIDATION_ERROR"},
      {Code::kUnauthenticated, 401, "UNAUTHORIZED"},
      {Code::kPermissionDenied, 403, "FORBIDDEN"},
      {Code::kNotFound, 404, "NOT_FOUND"},
      {Code::kAlreadyExists, 409, "CONFLICT"},
      {Code::kFailedPrecondition, 409, "CONFLICT"},
      {Code::kResourceExhausted, 429, "RATE_LIMIT_EXCEEDED"},
      {Code::kUnavailable, 503, "UNAVAILABLE"},
      {Code::kCancelled, 503, "UNAVAILABLE"},
      {Code::kDeadlineExceeded, 504, "TIMEOUT"},
      {Code::kInternal, 500, "INTERNAL"},
      {Code::kOk, 500, "INTERNAL"},
  };
  for (const CodeCase& c : cases) {
    SCOPED_TRACE(std::string(CodeName(c.code)));
    ApiErrorCode api = ApiErrorCodeFor(c.code);
    EXPECT_EQ(HttpStatusOf(api), c.http);
    EXPECT_EQ(ApiErrorName(api), c.name);
    HttpResponse r = ErrorResponse(Status(c.code, "m"), "req-1");
    EXPECT_EQ(r.status, c.http);
    EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["code"], c.name);
  }
}

TEST(ApiErrorsTest, ExplicitCodesOnlyReachableByOverride) {
  EXPECT_EQ(HttpStatusOf(ApiErrorCode::kPayloadTooLarge), 413);
  EXPECT_EQ(ApiErrorName(ApiErrorCode::kPayloadTooLarge), "PAYLOAD_TOO_LARGE");
  EXPECT_EQ(HttpStatusOf(ApiErrorCode::kWorkPlanChallenged), 422);
  EXPECT_EQ(ApiErrorName(ApiErrorCode::kWorkPlanChallenged), "WORK_PLAN_CHALLENGED");
  EXPECT_EQ(HttpStatusOf(ApiErrorCode::kMethodNotAllowed), 405);
  EXPECT_EQ(ApiErrorName(ApiErrorCode::kMethodNotAllowed), "METHOD_NOT_ALLOWED");

  ApiError challenged(InvalidArgument("the work plan has a cycle", "break the cycle"),
                      ApiErrorCode::kWorkPlanChallenged);
  challenged.details = {{"cycle", {"t1", "t2"}}};
  HttpResponse r = ErrorResponse(challenged, "req-9");
  EXPECT_EQ(r.status, 422);
  auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["error"]["code"], "WORK_PLAN_CHALLENGED");
  EXPECT_EQ(body["error"]["details"]["cycle"][1], "t2");
}

TEST(ApiErrorsTest, BodyHasExactlyTheSpecShape) {
  HttpResponse r = ErrorResponse(NotFound("feature f-1 not found", "list features"), "req-42");
  EXPECT_EQ(r.content_type, "application/json");
  auto body = nlohmann::json::parse(r.body);
  ASSERT_EQ(body.size(), 1u);
  const auto& e = body.at("error");
  EXPECT_EQ(e.size(), 5u);
  EXPECT_EQ(e.at("code"), "NOT_FOUND");
  EXPECT_EQ(e.at("message"), "feature f-1 not found");
  EXPECT_EQ(e.at("details"), nlohmann::json::object());
  EXPECT_EQ(e.at("request_id"), "req-42");
  EXPECT_EQ(e.at("hint"), "list features");
}

TEST(ApiErrorsTest, MissingHintIsNullAndNullDetailsBecomeObject) {
  auto body = ErrorBody(ApiErrorCode::kInternal, "boom", nullptr, "r", "");
  EXPECT_TRUE(body["error"]["hint"].is_null());
  EXPECT_TRUE(body["error"]["details"].is_object());
}

TEST(ApiErrorsTest, RetryAfterBecomesAHeader) {
  ApiError limited(ResourceExhausted("too many requests"));
  limited.retry_after_seconds = 7;
  HttpResponse r = ErrorResponse(limited, "r");
  EXPECT_EQ(r.status, 429);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Retry-After");
  EXPECT_EQ(r.headers[0].second, "7");
  EXPECT_TRUE(ErrorResponse(ResourceExhausted("x"), "r").headers.empty());
}

TEST(ApiErrorsTest, InvalidUtf8InMessageDoesNotThrow) {
  HttpResponse r;
  ASSERT_NO_THROW(r = ErrorResponse(InvalidArgument("bad name '\xff\xfe'"), "r"));
  EXPECT_EQ(r.status, 400);
  EXPECT_NO_THROW(nlohmann::json::parse(r.body));
}

TEST(ApiErrorsTest, JsonResponseCarriesStatusAndBody) {
  HttpResponse r = JsonResponse(201, {{"id", "f-1"}});
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(r.body)["id"], "f-1");
}

}  // namespace
}  // namespace af
