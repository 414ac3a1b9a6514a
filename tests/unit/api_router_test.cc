#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "af/api/http_types.h"
#include "af/api/router.h"

namespace af {
namespace {

Handler Reply(std::string text) {
  return [text](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain";
    r.body = text;
    return r;
  };
}

HttpRequest Req(std::string method, std::string path) {
  HttpRequest r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.request_id = "rid-1";
  return r;
}

TEST(HttpTypesTest, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%20b%2Fc", false), "a b/c");
  EXPECT_EQ(PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(PercentDecode("a+b", true), "a b");
  EXPECT_EQ(PercentDecode("100%", false), "100%");    // truncated escape kept
  EXPECT_EQ(PercentDecode("%zz%4", false), "%zz%4");  // malformed escapes kept
}

TEST(HttpTypesTest, ParseQueryString) {
  auto q = ParseQueryString("status=running&limit=10&q=a+b%21&flag&status=other&=x&&");
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q["status"], "running");  // first of repeats wins
  EXPECT_EQ(q["limit"], "10");
  EXPECT_EQ(q["q"], "a b!");
  EXPECT_EQ(q["flag"], "");
  EXPECT_TRUE(ParseQueryString("").empty());
}

TEST(HttpTypesTest, RequestAccessorsFallBack) {
  HttpRequest r;
  r.headers["content-type"] = "text/markdown";
  r.query_params["limit"] = "5";
  EXPECT_EQ(r.Header("content-type"), "text/markdown");
  EXPECT_EQ(r.Header("accept", "*/*"), "*/*");
  EXPECT_EQ(r.Query("limit"), "5");
  EXPECT_EQ(r.Query("offset", "0"), "0");
}

TEST(RouterTest, LiteralAndRootRoutes) {
  Router router;
  router.Add("GET", "/", Reply("root"));
  router.Add("get", "/health", Reply("health"));  // method is upper-cased
  HttpRequest a = Req("GET", "/");
  EXPECT_EQ(router.Dispatch(a).body, "root");
  HttpRequest b = Req("GET", "/health");
  EXPECT_EQ(router.Dispatch(b).body, "health");
  HttpRequest c = Req("GET", "/health/");  // trailing slash ignored
  EXPECT_EQ(router.Dispatch(c).body, "health");
}

TEST(RouterTest, PathParamsAreCapturedAndDecoded) {
  Router router;
  router.Add("GET", "/api/v1/features/:id/tasks/:task", [](const HttpRequest& r) {
    HttpResponse resp;
    resp.body = r.path_params.at("id") + "|" + r.path_params.at("task");
    return resp;
  });
  HttpRequest r = Req("GET", "/api/v1/features/f%201/tasks/t-2");
  HttpResponse resp = router.Dispatch(r);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, "f 1|t-2");
  EXPECT_EQ(r.path_params.at("id"), "f 1");
  // An empty segment is no parameter value.
  HttpRequest empty = Req("GET", "/api/v1/features//tasks/t-2");
  EXPECT_EQ(router.Dispatch(empty).status, 404);
}

TEST(RouterTest, LiteralSegmentBeatsParameter) {
  Router router;
  router.Add("GET", "/features/:id", Reply("by-id"));
  router.Add("GET", "/features/stats", Reply("stats"));
  HttpRequest a = Req("GET", "/features/stats");
  EXPECT_EQ(router.Dispatch(a).body, "stats");
  HttpRequest b = Req("GET", "/features/f-1");
  EXPECT_EQ(router.Dispatch(b).body, "by-id");
}

TEST(RouterTest, UnknownPathIs404JsonError) {
  Router router;
  router.Add("GET", "/health", Reply("x"));
  HttpRequest r = Req("GET", "/nope");
  HttpResponse resp = router.Dispatch(r);
  EXPECT_EQ(resp.status, 404);
  auto body = nlohmann::json::parse(resp.body);
  EXPECT_EQ(body["error"]["code"], "NOT_FOUND");
  EXPECT_EQ(body["error"]["request_id"], "rid-1");
  EXPECT_EQ(router.Find("GET", "/health/x").outcome, Router::Outcome::kNotFound);
}

TEST(RouterTest, WrongMethodIs405WithAllow) {
  Router router;
  router.Add("GET", "/features/:id", Reply("get"));
  router.Add("DELETE", "/features/:id", Reply("del"));
  HttpRequest r = Req("POST", "/features/f-1");
  HttpResponse resp = router.Dispatch(r);
  EXPECT_EQ(resp.status, 405);
  auto body = nlohmann::json::parse(resp.body);
  EXPECT_EQ(body["error"]["code"], "METHOD_NOT_ALLOWED");
  EXPECT_EQ(body["error"]["details"]["allowed_methods"], nlohmann::json({"DELETE", "GET", "HEAD"}));
  ASSERT_EQ(resp.headers.size(), 1u);
  EXPECT_EQ(resp.headers[0].first, "Allow");
  EXPECT_EQ(resp.headers[0].second, "DELETE, GET, HEAD");
}

TEST(RouterTest, HeadFallsBackToGet) {
  Router router;
  router.Add("GET", "/x", Reply("get"));
  Router::Match m = router.Find("HEAD", "/x");
  EXPECT_EQ(m.outcome, Router::Outcome::kFound);
  router.Add("HEAD", "/x", Reply("head"));
  HttpRequest r = Req("HEAD", "/x");
  EXPECT_EQ(router.Dispatch(r).body, "head");  // an explicit HEAD route wins
}

TEST(RouterTest, ThrowingHandlerBecomes500) {
  Router router;
  router.Add("GET", "/boom",
             [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("kaboom"); });
  router.Add("GET", "/weird", [](const HttpRequest&) -> HttpResponse { throw 42; });
  HttpRequest r = Req("GET", "/boom");
  HttpResponse resp = router.Dispatch(r);
  EXPECT_EQ(resp.status, 500);
  auto body = nlohmann::json::parse(resp.body);
  EXPECT_EQ(body["error"]["code"], "INTERNAL");
  // What was thrown goes to the log, never to the client (it may quote
  // internals); the body says the server failed and gives the request id.
  EXPECT_EQ(resp.body.find("kaboom"), std::string::npos) << resp.body;
  EXPECT_NE(body["error"]["hint"].get<std::string>().find(r.request_id), std::string::npos);
  HttpRequest w = Req("GET", "/weird");
  EXPECT_EQ(router.Dispatch(w).status, 500);
}

TEST(RouterTest, BadPatternsAreRejected) {
  Router router;
  EXPECT_THROW(router.Add("GET", "health", Reply("x")), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a/:", Reply("x")), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a/:id/b/:id", Reply("x")), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a", Handler()), std::invalid_argument);
  router.Add("GET", "/a/:id", Reply("x"));
  EXPECT_THROW(router.Add("GET", "/a/:other", Reply("y")), std::invalid_argument);
  router.Add("POST", "/a/:id", Reply("z"));  // another method is fine
  EXPECT_EQ(router.size(), 2u);
}

}  // namespace
}  // namespace af
