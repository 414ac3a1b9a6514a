// `agent-factory memory remember|recall|list|graph|evolve|export`: memories,
// opened in this process (no server needed).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "af/app/services.h"
#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "cli/commands.h"

namespace af::cli {
namespace {

using json = nlohmann::json;

Result<KnowledgeBase*> NeedKb(Services& svc) {
  if (svc.kb) return svc.kb.get();
  const Status& s = svc.kb_status;
  return Status(s.code() == Code::kOk ? Code::kUnavailable : s.code(),
                "the knowledge base is unavailable: " + s.message(), s.hint());
}

std::vector<std::string> SplitTags(const std::string& tags) {
  std::vector<std::string> out;
  std::stringstream in(tags);
  std::string tag;
  while (std::getline(in, tag, ',')) {
    std::string t(Trim(tag));
    if (!t.empty()) out.push_back(t);
  }
  return out;
}

Status CheckType(const std::string& type) {
  return type.empty() ? Status::Ok() : CheckMemoryType(type);
}

Status CheckImportance(int importance) {
  if (importance >= 1 && importance <= 10) return Status::Ok();
  return InvalidArgument("importance must be from 1 to 10 (got " + std::to_string(importance) + ")",
                         "pass --importance N with N from 1 (trivial) to 10 (critical)");
}

// One line of `memory export`: the record with raw times and its outgoing
// links, so `remember --from` can put it back as it was.
json ExportRecord(const Memory& m, const std::vector<MemoryLink>& links) {
  json out_links = json::array();
  for (const auto& l : links) {
    out_links.push_back({{"to", l.to_id}, {"type", l.type}, {"strength", l.strength}});
  }
  return {{"id", m.id},
          {"namespace", m.ns},
          {"content", m.content},
          {"summary", m.summary},
          {"type", m.type},
          {"importance", m.importance},
          {"tags", m.tags},
          {"source", m.source},
          {"created_ms", m.created_ms},
          {"updated_ms", m.updated_ms},
          {"accessed_ms", m.accessed_ms},
          {"access_count", m.access_count},
          {"archived", m.archived},
          {"superseded_by", m.superseded_by},
          {"links", out_links}};
}

Result<Memory> MemoryFromRecord(const json& j, const std::string& where) {
  auto bad = [&](const std::string& what) {
    return InvalidArgument(where + ": " + what,
                           "the file must hold the JSON lines 'agent-factory memory export' "
                           "writes");
  };
  if (!j.is_object()) return bad("not a JSON object");
  Memory m;
  m.id = Field(j, "id");
  m.content = Field(j, "content");
  if (m.id.empty() || m.content.empty()) return bad("needs \"id\" and \"content\"");
  m.ns = Field(j, "namespace", "global");
  m.summary = Field(j, "summary");
  m.type = Field(j, "type", "insight");
  if (j.contains("importance") && !j["importance"].is_number_integer()) {
    return bad("importance must be an integer");
  }
  m.importance = j.value("importance", 5);
  if (j.contains("tags")) {
    if (!j["tags"].is_array()) return bad("tags must be an array of strings");
    for (const auto& t : j["tags"]) {
      if (!t.is_string()) return bad("tags must be an array of strings");
      m.tags.push_back(t);
    }
  }
  if (j.contains("source") && j["source"].is_object()) m.source = j["source"];
  m.created_ms = j.value("created_ms", int64_t{0});
  m.updated_ms = j.value("updated_ms", int64_t{0});
  m.accessed_ms = j.value("accessed_ms", int64_t{0});
  m.access_count = j.value("access_count", int64_t{0});
  m.archived = j.value("archived", false);
  m.superseded_by = Field(j, "superseded_by");
  AF_RETURN_IF_ERROR(CheckType(m.type).WithContext(where));
  AF_RETURN_IF_ERROR(CheckImportance(m.importance).WithContext(where));
  return m;
}

// Reads an export back. Idempotent by id: a memory that exists is left as
// it is; links are upserted.
int RememberFrom(const GlobalOptions& g, KnowledgeBase& kb, Store& store, const std::string& file) {
  std::error_code ec;
  if (std::filesystem::exists(file, ec) && !std::filesystem::is_regular_file(file, ec)) {
    return ReportError(InvalidArgument(file + " is not a regular file (a directory or a device)",
                                       "give the .jsonl file 'agent-factory memory export' wrote"),
                       kExitUsage);
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return ReportError(NotFound("cannot read " + file,
                                "check the path of the file 'agent-factory memory export' wrote"),
                       kExitUsage);
  }
  struct Pending {
    Memory memory;
    json links;
    bool set_state = false;  // archived/superseded_by to apply after every record is in
  };
  std::vector<Pending> records;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (Trim(line).empty()) continue;
    const std::string where = file + ":" + std::to_string(n);
    auto parsed = ParseJson(line, where);
    if (!parsed.ok()) return ReportError(parsed.status(), kExitUsage);
    auto m = MemoryFromRecord(*parsed, where);
    if (!m.ok()) return ReportError(m.status(), kExitUsage);
    records.push_back({std::move(*m), parsed->value("links", json::array()), false});
  }
  int added = 0, existing = 0, links = 0;
  for (auto& r : records) {
    if (store.GetMemory(r.memory.id).ok()) {
      ++existing;
      continue;
    }
    Memory m = r.memory;
    // Archival and supersession point at records that may come later: set
    // them once every record is in.
    m.archived = false;
    m.superseded_by.clear();
    auto stored = kb.Remember(std::move(m));
    if (!stored.ok()) return ReportError(stored.status().WithContext(r.memory.id));
    ++added;
    r.set_state = r.memory.archived || !r.memory.superseded_by.empty();
  }
  for (auto& r : records) {
    if (r.set_state) {
      auto current = store.GetMemory(r.memory.id);
      if (!current.ok()) return ReportError(current.status());
      current->archived = r.memory.archived;
      current->superseded_by = r.memory.superseded_by;
      auto updated = kb.Update(*current);
      if (!updated.ok()) return ReportError(updated.status().WithContext(r.memory.id));
    }
    if (!r.links.is_array()) continue;
    for (const auto& l : r.links) {
      MemoryLink link;
      link.from_id = r.memory.id;
      link.to_id = Field(l, "to");
      link.type = Field(l, "type", "relates_to");
      link.strength = l.value("strength", 0.5);
      if (link.to_id.empty()) continue;
      Status s = kb.Link(link);
      if (!s.ok()) return ReportError(s.WithContext(r.memory.id));
      ++links;
    }
  }
  if (g.json) {
    std::cout << DumpJson(json{{"added", added}, {"existing", existing}, {"links", links}}, 2)
              << "\n";
  } else {
    std::printf("%d memories added, %d already there; %d links\n", added, existing, links);
  }
  return kExitOk;
}

void PrintResults(const std::vector<SearchResult>& results) {
  if (results.empty()) {
    std::printf("no memories found\n");
    return;
  }
  int n = 0;
  for (const auto& r : results) {
    std::printf("%d. %s  score %.3f", ++n, r.id.c_str(), r.score);
    if (r.memory) {
      std::printf("  %s, importance %d, %s", r.memory->type.c_str(), r.memory->importance,
                  r.memory->ns.c_str());
    }
    std::printf("\n   %s\n", OneLine(r.content, 160).c_str());
  }
}

}  // namespace

int MemoryRemember(const GlobalOptions& g, const RememberArgs& args) {
  if (args.from.empty() && Trim(args.content).empty()) {
    return ReportError(InvalidArgument("nothing to remember",
                                       "give the CONTENT, or --from FILE.jsonl to read an export"),
                       kExitUsage);
  }
  if (Status s = CheckType(args.type); !s.ok()) return ReportError(s, kExitUsage);
  if (args.importance) {
    if (Status s = CheckImportance(*args.importance); !s.ok()) return ReportError(s, kExitUsage);
  }
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  auto kb = NeedKb(**services);
  if (!kb.ok()) return ReportError(kb.status());
  if (!args.from.empty()) return RememberFrom(g, **kb, *(*services)->store, args.from);

  Memory m;
  m.content = args.content;
  if (!args.type.empty()) m.type = args.type;
  if (args.importance) m.importance = *args.importance;
  m.tags = SplitTags(args.tags);
  if (!args.ns.empty()) m.ns = args.ns;
  m.summary = args.summary;
  m.source = {{"via", "cli"}};
  auto stored = (*kb)->Remember(std::move(m));
  if (!stored.ok()) {
    return ReportError(stored.status(), stored.status().code() == Code::kInvalidArgument
                                            ? kExitUsage
                                            : kExitFailure);
  }
  if (g.json) {
    std::cout << DumpJson(ExportRecord(*stored, {}), 2) << "\n";
  } else {
    std::printf("remembered %s (%s, importance %d, %s)\n", stored->id.c_str(), stored->type.c_str(),
                stored->importance, stored->ns.c_str());
  }
  return kExitOk;
}

int MemoryRecall(const GlobalOptions& g, const std::string& query, int max_results,
                 const std::string& ns) {
  if (Trim(query).empty()) {
    return ReportError(InvalidArgument("the query is empty", "give the words to look for"),
                       kExitUsage);
  }
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  auto kb = NeedKb(**services);
  if (!kb.ok()) return ReportError(kb.status());
  SearchQuery q;
  q.text = query;
  q.max_results = max_results;
  q.namespaces = NamespaceFallback(ns);
  auto results = (*kb)->Recall(q);
  if (!results.ok()) return ReportError(results.status());
  if (g.json) {
    json out = json::array();
    for (const auto& r : *results) out.push_back(r.ToJson());
    std::cout << DumpJson(json{{"results", out}}, 2) << "\n";
  } else {
    PrintResults(*results);
  }
  return kExitOk;
}

int MemoryList(const GlobalOptions& g, const std::string& ns, const std::string& type, int limit) {
  if (Status s = CheckType(type); !s.ok()) return ReportError(s, kExitUsage);
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  MemoryFilter f;
  if (!ns.empty()) f.namespaces = {ns};
  if (!type.empty()) f.types = {type};
  f.limit = limit;
  auto found = (*services)->store->ListMemories(f);
  if (!found.ok()) return ReportError(found.status());
  if (g.json) {
    json out = json::array();
    for (const auto& m : *found) out.push_back(ExportRecord(m, {}));
    std::cout << DumpJson(json{{"memories", out}}, 2) << "\n";
    return kExitOk;
  }
  if (found->empty()) {
    std::printf("no memories (add one with 'agent-factory memory remember TEXT')\n");
    return kExitOk;
  }
  std::printf("%-26s %-22s %-3s %-20s %s\n", "ID", "TYPE", "IMP", "NAMESPACE", "CONTENT");
  for (const auto& m : *found) {
    std::printf("%-26s %-22s %-3d %-20s %s\n", m.id.c_str(), m.type.c_str(), m.importance,
                m.ns.c_str(), OneLine(m.summary.empty() ? m.content : m.summary, 60).c_str());
  }
  return kExitOk;
}

int MemoryGraphCmd(const GlobalOptions& g, const std::string& id, int depth) {
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  auto kb = NeedKb(**services);
  if (!kb.ok()) return ReportError(kb.status());
  auto graph = (*kb)->Graph(id, depth);
  if (!graph.ok()) return ReportError(graph.status());
  if (g.json) {
    std::cout << DumpJson(graph->ToJson(), 2) << "\n";
    return kExitOk;
  }
  for (const auto& m : graph->nodes) {
    std::printf("%s  %s, importance %d: %s\n", m.id.c_str(), m.type.c_str(), m.importance,
                OneLine(m.summary.empty() ? m.content : m.summary, 80).c_str());
  }
  if (graph->edges.empty()) std::printf("(no links)\n");
  for (const auto& e : graph->edges) {
    std::printf("  %s -[%s %.2f]-> %s\n", e.from_id.c_str(), e.type.c_str(), e.strength,
                e.to_id.c_str());
  }
  return kExitOk;
}

int MemoryEvolve(const GlobalOptions& g, bool dry_run) {
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  auto kb = NeedKb(**services);
  if (!kb.ok()) return ReportError(kb.status());
  EvolveOptions options;
  options.dry_run = dry_run;
  auto report = (*kb)->Evolve(options);
  if (!report.ok()) return ReportError(report.status());
  if (g.json) {
    json j = report->ToJson();
    j["dry_run"] = dry_run;
    std::cout << DumpJson(j, 2) << "\n";
    return kExitOk;
  }
  std::printf("%s%d decayed, %d links decayed, %d links removed, %d archived, %d consolidated\n",
              dry_run ? "(dry run) " : "", report->decayed, report->links_decayed,
              report->links_removed, report->archived, report->consolidated);
  for (const auto& a : report->actions) std::printf("  %s\n", a.c_str());
  return kExitOk;
}

int MemoryExport(const GlobalOptions& g, const std::string& ns, const std::string& output) {
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  Store& store = *(*services)->store;
  auto all_links = store.AllMemoryLinks();
  if (!all_links.ok()) return ReportError(all_links.status());
  std::map<std::string, std::vector<MemoryLink>> outgoing;
  for (const auto& l : *all_links) outgoing[l.from_id].push_back(l);

  std::ofstream file;
  if (std::error_code ec; !output.empty() && std::filesystem::is_directory(output, ec)) {
    return ReportError(
        InvalidArgument(output + " is a directory",
                        "give the file to write, e.g. " +
                            (std::filesystem::path(output) / "memories.jsonl").string()),
        kExitUsage);
  }
  if (!output.empty()) {
    file.open(output, std::ios::binary | std::ios::trunc);
    if (!file) {
      return ReportError(FailedPrecondition("cannot write " + output,
                                            "check that its directory exists and is writable"));
    }
  }
  std::ostream& out = output.empty() ? std::cout : file;
  MemoryFilter f;
  if (!ns.empty()) f.namespaces = {ns};
  f.include_archived = true;
  f.limit = 500;
  int count = 0;
  for (;;) {
    auto page = store.ListMemories(f);
    if (!page.ok()) return ReportError(page.status());
    for (const auto& m : *page) {
      out << ExportRecord(m, outgoing[m.id]).dump(-1, ' ', false, json::error_handler_t::replace)
          << "\n";
      ++count;
    }
    if (static_cast<int>(page->size()) < f.limit) break;
    f.offset += f.limit;
  }
  out.flush();
  if (!out) return ReportError(Internal("writing the export failed", "check the disk space"));
  if (!output.empty()) std::fprintf(stderr, "exported %d memories to %s\n", count, output.c_str());
  return kExitOk;
}

}  // namespace af::cli
