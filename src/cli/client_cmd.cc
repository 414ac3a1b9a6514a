// Clients of a running server: `feature submit|status|list|cancel`, `agents`,
// `keys create|list|revoke`. They only speak HTTP to the server (docs/API.md);
// the server does the work and the checking.
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "af/agents/pipeline.h"
#include "af/api/auth.h"
#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "af/llm/http_transport.h"
#include "af/store/store.h"
#include "cli/commands.h"

namespace af::cli {
namespace {

using json = nlohmann::json;

struct Reply {
  int status = 0;
  json body;
};

// Turns a server error body into a Status (message and hint as the server
// wrote them), keeping the HTTP meaning in the code.
Status FromErrorBody(int http_status, const json& body, const std::string& server) {
  std::string message = "the server answered HTTP " + std::to_string(http_status);
  std::string hint;
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const json& e = body["error"];
    if (e.contains("message") && e["message"].is_string()) message = e["message"];
    if (e.contains("hint") && e["hint"].is_string()) hint = e["hint"];
    if (e.contains("details") && e["details"].is_object() && e["details"].contains("issues")) {
      // A challenged work plan: the message already lists the issues.
    }
  } else {
    hint = "is " + server + " an Agent Factory server?";
  }
  switch (http_status) {
    case 400:
    case 422:
      return InvalidArgument(message, hint);
    case 401:
      return Unauthenticated(message, hint);
    case 403:
      return PermissionDenied(message, hint);
    case 404:
      return NotFound(message, hint);
    case 409:
      return FailedPrecondition(message, hint);
    case 429:
      return ResourceExhausted(message, hint);
    case 503:
      return Unavailable(message, hint);
    default:
      return Internal(message, hint);
  }
}

class Client {
 public:
  Client(const GlobalOptions& g, const ClientFlags& c) {
    LoadedConfig loaded = LoadForCli(g);
    server_ = ServerUrl(loaded.config, c.server);
    auto key = ClientApiKey(c.api_key, loaded.config.data_dir);
    if (key.ok()) {
      key_ = *key;
    } else {
      key_status_ = key.status();
    }
  }

  // Sends the request; a non-2xx answer becomes the server's error.
  Result<Reply> Call(const std::string& method, const std::string& path,
                     const std::string& body = {},
                     const std::string& content_type = "application/json") {
    ClientRequest req;
    req.method = method;
    req.url = server_ + path;
    req.timeout = std::chrono::seconds(30);
    req.connect_timeout = std::chrono::seconds(3);
    req.headers.emplace_back("Accept", "application/json");
    if (!key_.empty()) req.headers.emplace_back("Authorization", "Bearer " + key_);
    if (!body.empty()) {
      req.headers.emplace_back("Content-Type", content_type);
      req.body = body;
    }
    auto resp = transport_->Send(req, {});
    if (!resp.ok()) return ServerUnreachable(server_);
    Reply reply;
    reply.status = resp->status;
    reply.body = json::parse(resp->body, nullptr, false);
    if (resp->status >= 200 && resp->status < 300) {
      if (reply.body.is_discarded()) {
        return Internal("the server at " + server_ + " answered " + path + " with no JSON",
                        "is another program listening on that port?");
      }
      return reply;
    }
    if (resp->status == 401 && key_.empty() && !key_status_.ok()) {
      return Unauthenticated(key_status_.message(), key_status_.hint());
    }
    return FromErrorBody(resp->status, reply.body, server_);
  }

 private:
  std::string server_;
  std::string key_;
  Status key_status_;
  std::shared_ptr<HttpTransport> transport_ = MakeCurlTransport();
};

int Fail(const Status& s) {
  // A challenged work plan (422) exits 2, like `validate`.
  return ReportError(s, s.code() == Code::kInvalidArgument ? kExitUsage : kExitFailure);
}

// A field of a server's answer, for the terminal: whoever could write it (a
// feature's title, an API key's name) cannot send the terminal escapes.
std::string Str(const json& j, const char* key, const char* fallback = "-") {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  return EscapeControls(j[key].is_string() ? j[key].get<std::string>() : DumpJson(j[key]));
}

}  // namespace

std::string ServerUrl(const Config& config, const std::string& server_flag) {
  std::string server = server_flag;
  if (server.empty()) {
    std::string host = config.server.host == "0.0.0.0" ? "127.0.0.1" : config.server.host;
    server = "http://" + host + ":" + std::to_string(config.server.port);
  }
  while (!server.empty() && server.back() == '/') server.pop_back();
  return server;
}

Status ServerUnreachable(const std::string& server) {
  return Unavailable("cannot reach the server at " + server,
                     "start it with 'agent-factory serve' (or 'make run'), or point at it with "
                     "--server URL");
}

int FeatureSubmit(const GlobalOptions& g, const ClientFlags& c, const std::string& file) {
  std::error_code ec;
  if (std::filesystem::exists(file, ec) && !std::filesystem::is_regular_file(file, ec)) {
    return ReportError(
        InvalidArgument(file + ": not a regular file", "pass the path of a .md or .json PRP"),
        kExitUsage);
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return ReportError(NotFound("cannot read " + file, "check the path of the PRP file"),
                       kExitUsage);
  }
  std::stringstream text;
  text << in.rdbuf();
  if (Trim(text.str()).empty()) {
    return ReportError(InvalidArgument(file + ": the PRP file is empty",
                                       "write the feature request in it; examples are in "
                                       "examples/prp/"),
                       kExitUsage);
  }
  std::string ext = std::filesystem::path(file).extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const std::string type = ext == ".json" ? "application/json" : "text/markdown";
  Client client(g, c);
  auto r = client.Call("POST", "/api/v1/features", text.str(), type);
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
  } else {
    std::printf("Feature %s submitted (%s)\n  follow it: agent-factory feature status %s\n",
                Str(r->body, "id").c_str(), Str(r->body, "status").c_str(),
                Str(r->body, "id").c_str());
  }
  return kExitOk;
}

Result<std::string> SubmitToServer(const GlobalOptions& g, const json& request) {
  Client client(g, ClientFlags{});
  AF_ASSIGN_OR_RETURN(Reply r, client.Call("POST", "/api/v1/features", request.dump()));
  if (!r.body.is_object() || !r.body.contains("id") || !r.body["id"].is_string())
    return Internal("the server accepted the feature but named no id");
  return r.body["id"].get<std::string>();
}

int FeatureStatus(const GlobalOptions& g, const ClientFlags& c, const std::string& id) {
  Client client(g, c);
  auto r = client.Call("GET", "/api/v1/features/" + PercentEncode(id));
  if (!r.ok()) return Fail(r.status());
  const json& f = r->body;
  if (g.json) {
    std::cout << DumpJson(f, 2) << "\n";
    return kExitOk;
  }
  std::printf("%s  %s\n  status: %s   project: %s   priority: %s\n", Str(f, "id").c_str(),
              Str(f, "title").c_str(), Str(f, "status").c_str(), Str(f, "project").c_str(),
              Str(f, "priority").c_str());
  if (Str(f, "reason", "").size()) std::printf("  reason: %s\n", Str(f, "reason").c_str());
  // Why a failed or cancelled feature ended, and what to do: the reason code
  // alone does not say which limit, provider or gate it was.
  if (f.contains("ended") && f["ended"].is_object()) {
    const json& ended = f["ended"];
    if (!Str(ended, "stage", "").empty())
      std::printf("  stopped while: %s\n", Str(ended, "stage").c_str());
    if (!Str(ended, "message", "").empty())
      std::printf("  error: %s\n", Str(ended, "message").c_str());
    if (!Str(ended, "hint", "").empty()) std::printf("  hint: %s\n", Str(ended, "hint").c_str());
  }
  if (f.contains("tasks")) {
    std::printf("  tasks (%zu):\n", f["tasks"].size());
    for (const auto& t : f["tasks"]) {
      std::printf("    %-12s %-8s %s  (%s)\n", Str(t, "status").c_str(), Str(t, "role").c_str(),
                  Str(t, "title").c_str(), Str(t, "id").c_str());
    }
  }
  if (f.contains("artifacts") && !f["artifacts"]["branch"].is_null()) {
    std::printf("  branch: %s at %s%s\n", Str(f["artifacts"], "branch").c_str(),
                Str(f["artifacts"], "commit").c_str(),
                f["artifacts"].value("delivered", true) ? "" : " (task commits, not delivered)");
  }
  if (f.contains("usage")) {
    const json& u = f["usage"];
    std::printf("  usage: %s calls, %s input + %s output tokens, $%.4f\n", Str(u, "calls").c_str(),
                Str(u, "input_tokens").c_str(), Str(u, "output_tokens").c_str(),
                u.value("cost_usd", 0.0));
  }
  return kExitOk;
}

int FeatureList(const GlobalOptions& g, const ClientFlags& c, const std::string& status) {
  Client client(g, c);
  std::string path = "/api/v1/features?limit=100";
  if (!status.empty()) path += "&status=" + PercentEncode(status);
  auto r = client.Call("GET", path);
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
    return kExitOk;
  }
  const json& features = r->body["features"];
  if (features.empty()) {
    std::printf("No features%s.\n", status.empty() ? "" : (" with status " + status).c_str());
    return kExitOk;
  }
  std::printf("%-28s %-13s %-12s %s\n", "ID", "STATUS", "PROJECT", "TITLE");
  for (const auto& f : features) {
    std::printf("%-28s %-13s %-12s %s\n", Str(f, "id").c_str(), Str(f, "status").c_str(),
                Str(f, "project").c_str(), Str(f, "title").c_str());
  }
  const json& p = r->body["pagination"];
  if (p.value("has_more", false)) {
    std::printf("(%zu of %s shown)\n", features.size(), Str(p, "total").c_str());
  }
  return kExitOk;
}

Result<std::string> RetryOnServer(const GlobalOptions& g, const std::string& id) {
  Client client(g, ClientFlags{});
  AF_ASSIGN_OR_RETURN(Reply r,
                      client.Call("POST", "/api/v1/features/" + PercentEncode(id) + "/retry"));
  return Str(r.body, "status", "");
}

int FeatureRetry(const GlobalOptions& g, const ClientFlags& c, const std::string& id) {
  Client client(g, c);
  auto r = client.Call("POST", "/api/v1/features/" + PercentEncode(id) + "/retry");
  if (!r.ok() && r.status().code() == Code::kUnavailable) {
    // Retrying drives the feature: some process must coordinate it.
    return Fail(Unavailable(r.status().message(),
                            "start 'agent-factory serve' and retry, or run the feature's request "
                            "file with 'agent-factory run FILE --retry'"));
  }
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
  } else {
    std::printf("Feature %s goes on: %s (follow it with 'agent-factory feature events %s')\n",
                Str(r->body, "id").c_str(), Str(r->body, "status").c_str(),
                Str(r->body, "id").c_str());
  }
  return kExitOk;
}

// No server answers: the feature is cancelled in the data directory's store
// itself. A `run` driving it stops at its next step; a server started later
// finds it cancelled and does not resume it.
int CancelInDataDirectory(const GlobalOptions& g, const std::string& id,
                          const Status& unreachable) {
  LoadedConfig loaded = LoadForCli(g);
  if (Status s = loaded.Validate(); !s.ok()) return ReportError(s, kExitUsage);
  const std::string url = loaded.config.DatabaseUrl();
  // No database here: the server was the only way.
  if (url.rfind("sqlite:", 0) == 0 && !std::filesystem::exists(url.substr(7)))
    return Fail(unreachable);
  auto store = Store::Open(
      {.url = url,
       .migrate = false,
       .busy_timeout = std::chrono::milliseconds(loaded.config.database.busy_timeout_ms)});
  if (!store.ok()) return Fail(unreachable);
  if (Status s = CancelInStore(**store, id); !s.ok()) return Fail(s);
  if (g.json) {
    std::cout << DumpJson(json{{"id", id}, {"status", "cancelled"}}, 2) << "\n";
    return kExitOk;
  }
  std::printf(
      "Feature %s is cancelled (no server answered, so in the data directory's store: a "
      "run driving it stops at its next step)\n",
      EscapeControls(id).c_str());
  return kExitOk;
}

int FeatureCancel(const GlobalOptions& g, const ClientFlags& c, const std::string& id) {
  Client client(g, c);
  auto r = client.Call("DELETE", "/api/v1/features/" + PercentEncode(id));
  if (!r.ok() && r.status().code() == Code::kUnavailable && c.server.empty())
    return CancelInDataDirectory(g, id, r.status());
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
  } else {
    std::printf("Feature %s is %s\n", Str(r->body, "id").c_str(), Str(r->body, "status").c_str());
  }
  return kExitOk;
}

int Agents(const GlobalOptions& g, const ClientFlags& c) {
  Client client(g, c);
  auto r = client.Call("GET", "/api/v1/agents");
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
    return kExitOk;
  }
  const json& agents = r->body["agents"];
  if (agents.empty()) {
    std::printf("No agents registered (is an LLM provider configured?)\n");
    return kExitOk;
  }
  // Host and pid tell the agents of `serve` from those of each `worker`.
  std::printf("%-24s %-12s %-9s %-26s %-20s %-8s %s\n", "ID", "ROLE", "STATE", "LAST HEARTBEAT",
              "HOST", "PID", "CURRENT TASK");
  for (const auto& a : agents) {
    const std::string pid = a.contains("pid") ? DumpJson(a["pid"]) : "";
    std::printf("%-24s %-12s %-9s %-26s %-20s %-8s %s\n", Str(a, "id").c_str(),
                Str(a, "role").c_str(), Str(a, "state").c_str(), Str(a, "last_heartbeat").c_str(),
                Str(a, "host").c_str(), pid.c_str(), Str(a, "current_task").c_str());
  }
  return kExitOk;
}

int KeysCreate(const GlobalOptions& g, const ClientFlags& c, const std::string& name,
               const std::string& permissions) {
  json perms = json::array();
  std::stringstream ss(permissions);
  for (std::string p; std::getline(ss, p, ',');) {
    while (!p.empty() && p.back() == ' ') p.pop_back();
    while (!p.empty() && p.front() == ' ') p.erase(0, 1);
    if (!p.empty()) perms.push_back(p);
  }
  Client client(g, c);
  auto r = client.Call("POST", "/api/v1/auth/api-keys",
                       DumpJson(json{{"name", name}, {"permissions", perms}}));
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
    return kExitOk;
  }
  std::string list;
  for (const auto& p : r->body["permissions"])
    list += (list.empty() ? "" : ", ") + p.get<std::string>();
  std::printf(
      "Created API key '%s' (%s) with permissions: %s\n%s\n"
      "Store it now: it is not shown again.\n",
      Str(r->body, "name").c_str(), Str(r->body, "id").c_str(), list.c_str(),
      Str(r->body, "key").c_str());
  return kExitOk;
}

int KeysList(const GlobalOptions& g, const ClientFlags& c) {
  Client client(g, c);
  auto r = client.Call("GET", "/api/v1/auth/api-keys");
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
    return kExitOk;
  }
  std::printf("%-26s %-16s %-10s %-8s %-26s %s\n", "ID", "NAME", "PREFIX", "STATE", "LAST USED",
              "PERMISSIONS");
  for (const auto& k : r->body["api_keys"]) {
    std::string list;
    for (const auto& p : k["permissions"]) list += (list.empty() ? "" : ",") + p.get<std::string>();
    std::printf("%-26s %-16s %-10s %-8s %-26s %s\n", Str(k, "id").c_str(), Str(k, "name").c_str(),
                Str(k, "prefix").c_str(), k.value("revoked", false) ? "revoked" : "active",
                Str(k, "last_used_at", "never").c_str(), list.c_str());
  }
  return kExitOk;
}

int KeysRevoke(const GlobalOptions& g, const ClientFlags& c, const std::string& id) {
  Client client(g, c);
  auto r = client.Call("DELETE", "/api/v1/auth/api-keys/" + PercentEncode(id));
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << DumpJson(r->body, 2) << "\n";
  } else {
    std::printf("Revoked API key %s\n", id.c_str());
    // The server deleted <data_dir>/admin.key when it held this key.
    if (r->body.contains("admin_key_file")) {
      std::printf("admin.key: %s\n", Str(r->body, "admin_key_file").c_str());
    }
  }
  return kExitOk;
}

}  // namespace af::cli
