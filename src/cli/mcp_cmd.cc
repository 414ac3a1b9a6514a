// `agent-factory mcp`: the MCP server on stdio. Opens the services in this
// process for the memory and knowledge tools; the feature tools talk to the
// running server with the admin key, like `feature submit`.
#include <iostream>

#include "af/api/auth.h"
#include "af/app/services.h"
#include "af/mcp/mcp_server.h"
#include "cli/commands.h"

namespace af::cli {

int Mcp(const GlobalOptions& g) {
  // stdout carries protocol messages only: errors before the loop go to
  // stderr (ReportError), logs to stderr and the log file.
  std::ios::sync_with_stdio(false);
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  Services& svc = **services;
  mcp::ToolContext ctx;
  ctx.store = svc.store.get();
  ctx.kb = svc.kb.get();
  ctx.kb_status = svc.kb_status;
  ctx.server_url = ServerUrl(svc.config, "");
  if (auto key = ClientApiKey("", svc.config.data_dir); key.ok()) {
    ctx.api_key = *key;
  } else {
    ctx.api_key_status = key.status();
  }
  mcp::Protocol protocol(mcp::MakeTools(std::move(ctx)), AF_VERSION);
  mcp::ServeStream(protocol, std::cin, std::cout);
  return kExitOk;
}

}  // namespace af::cli
