// `agent-factory feature events ID`: follows a feature's server-sent events
// from a running server until the feature ends.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "af/api/auth.h"
#include "af/core/json_util.h"
#include "af/core/sse.h"
#include "af/llm/http_transport.h"
#include "cli/commands.h"

namespace af::cli {

std::optional<std::string> FeatureEndStatus(const nlohmann::json& event) {
  if (!event.is_object() || event.value("type", "") != "feature.status") return std::nullopt;
  const auto& data = event.contains("data") ? event["data"] : nlohmann::json();
  std::string to = data.is_object() ? data.value("to", "") : "";
  if (to == "completed" || to == "failed" || to == "cancelled") return to;
  return std::nullopt;
}

std::string FormatEventLine(const nlohmann::json& event) {
  auto str = [&](const char* key) {
    return event.contains(key) && event[key].is_string() ? event[key].get<std::string>()
                                                         : std::string();
  };
  std::string line = str("ts") + "  #" +
                     (event.contains("seq") ? DumpJson(event["seq"]) : std::string("?")) + "  " +
                     str("type");
  if (!str("task_id").empty()) line += "  " + str("task_id");
  if (!str("agent").empty()) line += " (" + str("agent") + ")";
  const nlohmann::json data = event.contains("data") ? event["data"] : nlohmann::json();
  if (data.is_object() && data.contains("from") && data.contains("to")) {
    line += "  " + DumpJson(data["from"]) + " -> " + DumpJson(data["to"]);
    if (data.contains("reason") && data["reason"].is_string() &&
        !data["reason"].get<std::string>().empty())
      line += " (" + data["reason"].get<std::string>() + ")";
  } else if (!data.is_null() && !data.empty()) {
    std::string d = DumpJson(data);
    if (d.size() > 160) d = d.substr(0, 157) + "...";
    line += "  " + d;
  }
  return line;
}

int FeatureEvents(const GlobalOptions& g, const FeatureEventsArgs& args) {
  LoadedConfig loaded = LoadForCli(g);
  const std::string server = ServerUrl(loaded.config, args.server);
  // No key at all is left to the server's 401, which names what to send.
  auto found = ClientApiKey(args.api_key, loaded.config.data_dir);
  const std::string key = found.ok() ? *found : std::string();

  auto transport = MakeCurlTransport();
  int64_t last_seq = args.from;
  std::optional<std::string> end;
  int failures = 0;
  bool connected = false;  // once: a later break is a lost stream, not a missing server
  while (!end) {
    ClientRequest req;
    req.method = "GET";
    req.url = server + "/api/v1/features/" + args.id + "/events";
    req.headers = {{"Accept", "text/event-stream"}, {"Last-Event-ID", std::to_string(last_seq)}};
    if (!key.empty()) req.headers.emplace_back("Authorization", "Bearer " + key);
    req.timeout = std::chrono::hours(24 * 365);  // a stream has no natural end
    req.connect_timeout = std::chrono::seconds(5);
    bool got_any = false;
    Status parse_error = Status::Ok();
    SseParser parser([&](std::string_view, std::string_view data) -> Status {
      nlohmann::json event = nlohmann::json::parse(data, nullptr, false);
      if (event.is_discarded()) {
        parse_error = Internal("the server sent an event that is not JSON: " +
                               std::string(data.substr(0, 120)));
        return parse_error;
      }
      got_any = true;
      if (event.contains("seq") && event["seq"].is_number_integer())
        last_seq = event["seq"].get<int64_t>();
      if (g.json) {
        std::printf("%s\n", DumpJson(event).c_str());
      } else {
        std::printf("%s\n", FormatEventLine(event).c_str());
      }
      std::fflush(stdout);
      end = FeatureEndStatus(event);
      return end ? Cancelled("the feature ended") : Status::Ok();
    });
    auto resp =
        transport->Send(req, [&](std::string_view chunk) { return parser.Feed(chunk).ok(); });
    if (end) break;
    if (!parse_error.ok()) return ReportError(parse_error);
    if (!resp.ok() && !connected && !got_any) return ReportError(ServerUnreachable(server));
    connected = true;
    if (resp.ok() && (resp->status < 200 || resp->status > 299)) {
      nlohmann::json body = nlohmann::json::parse(resp->body, nullptr, false);
      std::string message = "the server answered HTTP " + std::to_string(resp->status);
      std::string hint;
      if (!body.is_discarded() && body.contains("error") && body["error"].is_object()) {
        message = body["error"].value("message", message);
        if (body["error"].contains("hint") && body["error"]["hint"].is_string())
          hint = body["error"]["hint"].get<std::string>();
      }
      if (resp->status == 401 || resp->status == 403) {
        hint =
            "pass a key with features:read via --api-key (default: AF_API_KEY, then "
            "<data_dir>/admin.key)";
      }
      return ReportError(
          Status(resp->status == 404 ? Code::kNotFound : Code::kFailedPrecondition, message, hint));
    }
    // The stream broke (server restart, network): reconnect and resume after
    // the last event seen, a few times in a row at most.
    if (got_any) failures = 0;
    if (++failures > 5) {
      return ReportError(Unavailable(
          "lost the event stream from " + server +
              (resp.ok() ? std::string() : ": " + resp.status().message()),
          "check that the server is running ('agent-factory health'), then resume with --from " +
              std::to_string(last_seq)));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return *end == "completed" ? kExitOk : kExitFailure;
}

}  // namespace af::cli
