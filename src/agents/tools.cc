#include "af/agents/tools.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "af/core/config.h"
#include "af/core/dag.h"
#include "af/core/ids.h"
#include "af/memory/knowledge.h"
#include "af/workspace/sandbox.h"
#include "af/workspace/workspace.h"

namespace af {
namespace {

using json = nlohmann::json;

json Obj(std::initializer_list<std::pair<const char*, json>> props,
         std::vector<std::string> required) {
  json p = json::object();
  for (const auto& [k, v] : props) p[k] = v;
  return {{"type", "object"}, {"properties", p}, {"required", required}};
}
json Str(const char* description) { return {{"type", "string"}, {"description", description}}; }

ToolOutcome Error(std::string msg) { return {std::move(msg), true, false}; }
ToolOutcome Ok(std::string msg) { return {std::move(msg), false, false}; }

// Required string argument, or an error naming the tool and the field.
bool GetString(const ToolCall& call, const char* field, std::string* out, ToolOutcome* err,
               bool required = true) {
  auto it = call.arguments.find(field);
  if (it == call.arguments.end() || it->is_null()) {
    if (!required) return true;
    *err = Error(call.name + " needs '" + field + "' (a string)");
    return false;
  }
  if (!it->is_string()) {
    *err = Error(call.name + ": '" + field + "' must be a string, got " + it->type_name());
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

// Optional integer argument (default when absent or null), clamped to [lo, hi];
// any other JSON type is an error naming the tool and the field. Models send
// "5" for 5 often enough that a type_error must not escape the agent thread.
bool GetInt(const ToolCall& call, const char* field, int def, int lo, int hi, int* out,
            ToolOutcome* err) {
  auto it = call.arguments.find(field);
  if (it == call.arguments.end() || it->is_null()) {
    *out = def;
    return true;
  }
  if (!it->is_number()) {
    *err = Error(call.name + ": '" + field + "' must be an integer, got " + it->type_name());
    return false;
  }
  *out = static_cast<int>(
      std::clamp(it->get<double>(), static_cast<double>(lo), static_cast<double>(hi)));
  return true;
}

ToolOutcome FromStatus(const Status& s) { return Error(s.ToString()); }

ToolOutcome NeedTree(const ToolCall& call) {
  return Error(call.name + " is not available to this agent (it has no workspace)");
}

// --- Handlers: one per tool, each reads its own arguments ----------------------

ToolOutcome RunFinish(const ToolCall& call, const ToolContext&) {
  ToolOutcome err;
  std::string summary;
  if (!GetString(call, "summary", &summary, &err)) return err;
  return {"finished", false, true};
}

ToolOutcome RunSubmitPlan(const ToolCall& call, const ToolContext&) {
  auto problems = CheckPlan(call.arguments);
  if (!problems.empty()) {
    std::string msg = "plan refused:";
    for (const auto& p : problems) msg += "\n- " + p;
    return Error(msg + "\nfix these and call submit_plan again");
  }
  return {"plan accepted", false, true};
}

ToolOutcome RunSubmitReview(const ToolCall& call, const ToolContext&) {
  ToolOutcome err;
  std::string verdict;
  if (!GetString(call, "verdict", &verdict, &err)) return err;
  if (verdict != "approve" && verdict != "request_changes")
    return Error("submit_review: verdict must be 'approve' or 'request_changes'");
  const json& c = call.arguments.value("comments", json::array());
  if (!c.is_array() ||
      !std::all_of(c.begin(), c.end(), [](const json& x) { return x.is_string(); }))
    return Error("submit_review: 'comments' must be an array of strings");
  if (verdict == "request_changes" && c.empty())
    return Error("submit_review: request_changes needs at least one comment saying what to change");
  return {"review recorded", false, true};
}

constexpr char kNoMemory[] =
    "memory is not available: the knowledge base could not be opened (see `agent-factory "
    "health`); carry on without it";

ToolOutcome RunRecall(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string query;
  if (!GetString(call, "query", &query, &err)) return err;
  if (!ctx.kb) return Error(kNoMemory);
  SearchQuery q;
  q.text = query;
  q.namespaces = NamespaceFallback("project:" + ctx.project);
  if (!GetInt(call, "limit", 5, 1, 20, &q.max_results, &err)) return err;
  auto found = ctx.kb->Recall(q);
  if (!found.ok()) return FromStatus(found.status());
  if (found->empty()) return Ok("no memories match '" + query + "'");
  std::string out;
  for (const auto& r : *found) {
    char score[16];
    std::snprintf(score, sizeof score, "%.2f", r.score);
    out += "- [" + r.memory->type + ", importance " + std::to_string(r.memory->importance) +
           ", score " + score + ", " + r.id + "] " + r.content + "\n";
  }
  return Ok(out);
}

ToolOutcome RunRemember(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string content, type = "insight";
  if (!GetString(call, "content", &content, &err)) return err;
  if (!GetString(call, "type", &type, &err, false)) return err;
  if (!ctx.kb) return Error(kNoMemory);
  Memory m;
  m.ns = "project:" + ctx.project;
  m.content = content;
  m.type = type;
  if (!GetInt(call, "importance", 5, 1, 10, &m.importance, &err)) return err;
  if (call.arguments.contains("tags") && call.arguments["tags"].is_array())
    for (const auto& t : call.arguments["tags"])
      if (t.is_string()) m.tags.push_back(t.get<std::string>());
  m.source = {{"feature", ctx.feature_id}, {"task", ctx.task_id}};
  // Remembering the same thing again in the same task (a step resumed after
  // a crash redoes its calls) stores nothing new and answers the same.
  m.id = StableId("mem", ctx.feature_id + "\n" + ctx.task_id + "\n" + m.type + "\n" + content);
  auto stored = ctx.kb->Remember(m);  // idempotent by id
  if (!stored.ok()) return FromStatus(stored.status());
  return Ok("remembered as " + m.id);
}

// The workspace tools run only with ctx.tree set (ExecuteTool checks first).

ToolOutcome RunListFiles(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path;
  if (!GetString(call, "path", &path, &err, false)) return err;
  if (path == ".") path.clear();
  auto files = ctx.tree->ListFiles(path);
  if (!files.ok()) return FromStatus(files.status());
  if (files->empty()) return Ok("(no files)");
  std::string out;
  for (const auto& f : *files) out += f + "\n";
  return Ok(out);
}

ToolOutcome RunReadFile(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path;
  if (!GetString(call, "path", &path, &err)) return err;
  auto content = ctx.tree->ReadFile(path);
  if (!content.ok()) return FromStatus(content.status());
  return Ok(*content);
}

ToolOutcome RunWriteFile(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path, content;
  if (!GetString(call, "path", &path, &err) || !GetString(call, "content", &content, &err))
    return err;
  if (Status s = ctx.tree->WriteFile(path, content); !s.ok()) return FromStatus(s);
  if (ctx.touched) ctx.touched->insert(path);
  return Ok("wrote " + path + " (" + std::to_string(content.size()) + " bytes)");
}

ToolOutcome RunEditFile(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path, old_text, new_text;
  if (!GetString(call, "path", &path, &err) || !GetString(call, "old_text", &old_text, &err) ||
      !GetString(call, "new_text", &new_text, &err))
    return err;
  if (Status s = ctx.tree->EditFile(path, old_text, new_text); !s.ok()) return FromStatus(s);
  if (ctx.touched) ctx.touched->insert(path);
  return Ok("edited " + path);
}

ToolOutcome RunSearchCode(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string query;
  if (!GetString(call, "query", &query, &err)) return err;
  auto hits = ctx.tree->Search(query);
  if (!hits.ok()) return FromStatus(hits.status());
  if (hits->empty()) return Ok("no matches for '" + query + "'");
  std::string out;
  for (const auto& h : *hits) out += h.path + ":" + std::to_string(h.line) + ": " + h.text + "\n";
  return Ok(out);
}

ToolOutcome RunCommand(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string command;
  if (!GetString(call, "command", &command, &err)) return err;
  if (!ctx.sandbox) return Error("run_command is not available (no sandbox)");
  auto run = ctx.sandbox->Run(command, ctx.tree->root(), ctx.cancelled);
  if (!run.ok()) return FromStatus(run.status());
  return {run->ToText(), run->exit_code != 0 || run->timed_out, false};
}

// --- The registry ---------------------------------------------------------------

// One row per tool: what the model is shown (name, description, JSON schema;
// fixed, since prompts and recorded answers rely on them) and what runs.
struct ToolRow {
  ToolDef def;
  ToolOutcome (*run)(const ToolCall&, const ToolContext&);
  bool needs_workspace;  // refused (NeedTree) when the context has no tree
  bool every_role;       // offered to every role, after the role's own tools
};

const std::vector<ToolRow>& Registry() {
  static const std::vector<ToolRow> kRows = [] {
    json task = Obj({{"id", Str("short unique id, e.g. t1")},
                     {"title", Str("one line")},
                     {"description", Str("what to do, precisely")},
                     {"role", Str("who does it: coder")},
                     {"dependencies", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                     {"files", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
                    {"id", "title", "description", "role"});
    return std::vector<ToolRow>{
        {{"submit_plan",
          "Submit the task plan for this feature. Each task is done by one coder; "
          "list dependencies between tasks so independent ones run in parallel.",
          Obj({{"tasks", {{"type", "array"}, {"items", task}}}}, {"tasks"})},
         &RunSubmitPlan,
         false,
         false},
        {{"list_files", "List files under a directory of the workspace (recursive).",
          Obj({{"path", Str("directory relative to the workspace root; '' or '.' for the root")}},
              {})},
         &RunListFiles,
         true,
         false},
        {{"read_file", "Read a file of the workspace.",
          Obj({{"path", Str("relative path")}}, {"path"})},
         &RunReadFile,
         true,
         false},
        {{"write_file", "Create or overwrite a file in the workspace.",
          Obj({{"path", Str("relative path")}, {"content", Str("the whole new content")}},
              {"path", "content"})},
         &RunWriteFile,
         true,
         false},
        {{"edit_file", "Replace exactly one occurrence of old_text with new_text in a file.",
          Obj({{"path", Str("relative path")},
               {"old_text", Str("text that occurs exactly once")},
               {"new_text", Str("replacement")}},
              {"path", "old_text", "new_text"})},
         &RunEditFile,
         true,
         false},
        {{"search_code", "Search the workspace for a substring; returns path:line: text.",
          Obj({{"query", Str("text to find")}}, {"query"})},
         &RunSearchCode,
         true,
         false},
        {{"run_command",
          "Run a shell command in the workspace, sandboxed (no network, time limit).",
          Obj({{"command", Str("e.g. python3 -m unittest -v")}}, {"command"})},
         &RunCommand,
         true,
         false},
        {{"finish", "Declare the task done, with a summary of what changed and how it was checked.",
          Obj({{"summary", Str("what was done")}}, {"summary"})},
         &RunFinish,
         false,
         false},
        {{"submit_review", "Submit the review verdict. Cite evidence: gate results and the diff.",
          Obj({{"verdict", {{"type", "string"}, {"enum", {"approve", "request_changes"}}}},
               {"comments", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
              {"verdict", "comments"})},
         &RunSubmitReview,
         false,
         false},
        {{"recall", "Search memory for what was learned before (patterns, fixes, decisions).",
          Obj({{"query", Str("words to look for")}, {"limit", {{"type", "integer"}}}}, {"query"})},
         &RunRecall,
         false,
         true},
        {{"remember", "Store something worth knowing next time in this project.",
          Obj({{"content", Str("the lesson, self-contained")},
               {"type", Str("code_pattern, bug_fix, constraint, insight, ...")},
               {"importance", {{"type", "integer"}, {"minimum", 1}, {"maximum", 10}}},
               {"tags", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
              {"content"})},
         &RunRemember,
         false,
         true},
    };
  }();
  return kRows;
}

const ToolRow* FindTool(const std::string& name) {
  for (const ToolRow& row : Registry())
    if (row.def.name == name) return &row;
  return nullptr;
}

// Each role's own tools, in the order the model is shown them (the order is
// part of the recorded requests). Other roles get only the every-role tools.
const std::map<std::string, std::vector<std::string>>& RoleTools() {
  static const std::map<std::string, std::vector<std::string>> kRoles = {
      {"planner", {"submit_plan", "list_files", "read_file", "search_code"}},
      {"coder",
       {"list_files", "read_file", "write_file", "edit_file", "search_code", "run_command",
        "finish"}},
      {"reviewer", {"submit_review", "read_file", "list_files", "search_code"}},
  };
  return kRoles;
}

}  // namespace

std::vector<ToolDef> ToolsForRole(const std::string& role) {
  std::vector<ToolDef> out;
  if (auto it = RoleTools().find(CanonicalRole(role)); it != RoleTools().end())
    for (const std::string& name : it->second) out.push_back(FindTool(name)->def);
  for (const ToolRow& row : Registry())
    if (row.every_role) out.push_back(row.def);
  return out;
}

std::vector<std::string> CheckPlan(const json& args) {
  std::vector<std::string> problems;
  if (!args.is_object() || !args.contains("tasks") || !args["tasks"].is_array()) {
    return {
        "submit_plan needs 'tasks': an array of {id, title, description, role, dependencies, "
        "files}"};
  }
  const json& tasks = args["tasks"];
  if (tasks.empty()) problems.push_back("the plan has no tasks");
  if (tasks.size() > 50) problems.push_back("the plan has more than 50 tasks; merge small ones");
  std::map<std::string, std::vector<std::string>> deps;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const json& t = tasks[i];
    std::string where = "task " + std::to_string(i + 1);
    if (!t.is_object()) {
      problems.push_back(where + " is not an object");
      continue;
    }
    if (t.contains("id") && !t["id"].is_string()) {
      problems.push_back(where + ": id must be a string (got " + t["id"].dump() + ")");
      continue;
    }
    std::string id = t.value("id", "");
    bool id_ok = !id.empty() && id.size() <= 40 && std::all_of(id.begin(), id.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    if (!id_ok) {
      problems.push_back(where + ": id '" + id + "' must be 1-40 letters, digits, '_' or '-'");
      continue;
    }
    where = "task '" + id + "'";
    if (deps.count(id)) problems.push_back(where + " is listed twice");
    for (const char* f : {"title", "description", "role"}) {
      if (!t.contains(f) || !t[f].is_string() || t[f].get<std::string>().empty())
        problems.push_back(where + " needs a non-empty '" + f + "'");
    }
    if (t.contains("role") && t["role"].is_string() &&
        CanonicalRole(t["role"].get<std::string>()) != "coder") {
      problems.push_back(
          where + ": role '" + t["role"].get<std::string>() +
          "' cannot take plan tasks; use 'coder' (testing and review follow automatically)");
    }
    auto& d = deps[id];
    for (const char* f : {"dependencies", "files"}) {
      if (t.contains(f) &&
          !(t[f].is_array() &&
            std::all_of(t[f].begin(), t[f].end(), [](const json& x) { return x.is_string(); })))
        problems.push_back(where + ": '" + f + "' must be an array of strings");
    }
    if (t.contains("dependencies") && t["dependencies"].is_array())
      for (const auto& x : t["dependencies"])
        if (x.is_string()) d.push_back(x.get<std::string>());
  }
  std::vector<DagNode> graph;
  for (const auto& [id, ds] : deps) graph.push_back({id, ds});
  for (const auto& [id, d] : UnknownDependencies(graph))
    problems.push_back("task '" + id + "' depends on unknown task '" + d + "'");
  if (!problems.empty()) return problems;
  if (auto cycle = CycleIds(graph); !cycle.empty()) {
    std::string ids;
    for (const auto& id : cycle) ids += (ids.empty() ? "'" : ", '") + id + "'";
    problems.push_back("the dependencies form a cycle through task " + ids);
    return problems;
  }
  // All tasks share one worktree: two that may run at the same time (neither
  // depends on the other, even through others) must not own the same file,
  // and so each such task must say which files it owns.
  std::map<std::string, std::set<std::string>> before;  // id -> every task it waits for
  std::function<const std::set<std::string>&(const std::string&)> ancestors =
      [&](const std::string& id) -> const std::set<std::string>& {
    if (auto it = before.find(id); it != before.end()) return it->second;
    std::set<std::string> all;
    for (const auto& d : deps[id]) {
      all.insert(d);
      const auto& up = ancestors(d);
      all.insert(up.begin(), up.end());
    }
    return before[id] = std::move(all);
  };
  std::map<std::string, std::vector<std::string>> files;  // id -> normalised paths
  for (const auto& t : tasks) {
    auto& list = files[t["id"].get<std::string>()];
    if (t.contains("files") && t["files"].is_array())
      for (const auto& f : t["files"]) {
        std::string p = f.get<std::string>();
        while (p.rfind("./", 0) == 0) p = p.substr(2);
        while (!p.empty() && p.back() == '/') p.pop_back();
        if (!p.empty()) list.push_back(p);
      }
  }
  // A path and a directory holding it overlap too ("src" and "src/a.py").
  auto overlap = [](const std::string& a, const std::string& b) {
    if (a == b) return true;
    const std::string& s = a.size() < b.size() ? a : b;
    const std::string& l = a.size() < b.size() ? b : a;
    return l.rfind(s + "/", 0) == 0;
  };
  std::set<std::string> told_files;
  for (auto a = deps.begin(); a != deps.end(); ++a) {
    for (auto b = std::next(a); b != deps.end(); ++b) {
      if (ancestors(a->first).count(b->first) || ancestors(b->first).count(a->first)) continue;
      for (const std::string& id : {a->first, b->first}) {
        if (files[id].empty() && told_files.insert(id).second)
          problems.push_back("task '" + id +
                             "' may run in parallel with other tasks but lists no 'files'; name "
                             "the files it owns (or make it depend on the tasks it follows)");
      }
      for (const auto& fa : files[a->first])
        for (const auto& fb : files[b->first])
          if (overlap(fa, fb))
            problems.push_back("tasks '" + a->first + "' and '" + b->first +
                               "' may run in parallel in one worktree but both list '" +
                               (fa.size() < fb.size() ? fb : fa) +
                               "'; give the file to one task, or make one depend on the other");
    }
  }
  return problems;
}

ToolOutcome ExecuteTool(const ToolCall& call, const ToolContext& ctx) {
  const std::string& name = call.name;
  if (!call.arguments.is_object()) return Error(name + ": arguments must be a JSON object");
  const ToolRow* row = FindTool(name);
  if (!row)
    return Error("unknown tool '" + name + "'; the tools you have are listed in the request");
  if (row->needs_workspace && !ctx.tree) return NeedTree(call);
  return row->run(call, ctx);
}

}  // namespace af
