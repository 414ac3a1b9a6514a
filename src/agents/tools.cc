#include "af/agents/tools.h"

#include <algorithm>
#include <functional>
#include <map>

#include "af/core/config.h"
#include "af/core/ids.h"
#include "af/store/store.h"
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

const ToolDef& Def(const std::string& name) {
  static const std::map<std::string, ToolDef> kDefs = [] {
    std::map<std::string, ToolDef> d;
    auto add = [&](ToolDef t) { d[t.name] = std::move(t); };
    json task = Obj({{"id", Str("short unique id, e.g. t1")},
                     {"title", Str("one line")},
                     {"description", Str("what to do, precisely")},
                     {"role", Str("who does it: coder")},
                     {"dependencies", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                     {"files", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
                    {"id", "title", "description", "role"});
    add({"submit_plan",
         "Submit the task plan for this feature. Each task is done by one coder; "
         "list dependencies between tasks so independent ones run in parallel.",
         Obj({{"tasks", {{"type", "array"}, {"items", task}}}}, {"tasks"})});
    add({"list_files", "List files under a directory of the workspace (recursive).",
         Obj({{"path", Str("directory relative to the workspace root; '' or '.' for the root")}},
             {})});
    add({"read_file", "Read a file of the workspace.",
         Obj({{"path", Str("relative path")}}, {"path"})});
    add({"write_file", "Create or overwrite a file in the workspace.",
         Obj({{"path", Str("relative path")}, {"content", Str("the whole new content")}},
             {"path", "content"})});
    add({"edit_file", "Replace exactly one occurrence of old_text with new_text in a file.",
         Obj({{"path", Str("relative path")},
              {"old_text", Str("text that occurs exactly once")},
              {"new_text", Str("replacement")}},
             {"path", "old_text", "new_text"})});
    add({"search_code", "Search the workspace for a substring; returns path:line: text.",
         Obj({{"query", Str("text to find")}}, {"query"})});
    add({"run_command", "Run a shell command in the workspace, sandboxed (no network, time limit).",
         Obj({{"command", Str("e.g. python3 -m unittest -v")}}, {"command"})});
    add({"finish", "Declare the task done, with a summary of what changed and how it was checked.",
         Obj({{"summary", Str("what was done")}}, {"summary"})});
    add({"submit_review", "Submit the review verdict. Cite evidence: gate results and the diff.",
         Obj({{"verdict", {{"type", "string"}, {"enum", {"approve", "request_changes"}}}},
              {"comments", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
             {"verdict", "comments"})});
    add({"recall", "Search memory for what was learned before (patterns, fixes, decisions).",
         Obj({{"query", Str("words to look for")}, {"limit", {{"type", "integer"}}}}, {"query"})});
    add({"remember", "Store something worth knowing next time in this project.",
         Obj({{"content", Str("the lesson, self-contained")},
              {"type", Str("code_pattern, bug_fix, constraint, insight, ...")},
              {"importance", {{"type", "integer"}, {"minimum", 1}, {"maximum", 10}}},
              {"tags", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
             {"content"})});
    return d;
  }();
  return kDefs.at(name);
}

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

}  // namespace

std::vector<ToolDef> ToolsForRole(const std::string& role) {
  std::vector<std::string> names;
  std::string r = CanonicalRole(role);
  if (r == "planner") names = {"submit_plan", "list_files", "read_file", "search_code"};
  if (r == "coder") {
    names = {"list_files",  "read_file",   "write_file", "edit_file",
             "search_code", "run_command", "finish"};
  }
  if (r == "reviewer") names = {"submit_review", "read_file", "list_files", "search_code"};
  names.push_back("recall");
  names.push_back("remember");
  std::vector<ToolDef> out;
  for (const auto& n : names) out.push_back(Def(n));
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
  for (const auto& [id, ds] : deps)
    for (const auto& d : ds)
      if (!deps.count(d))
        problems.push_back("task '" + id + "' depends on unknown task '" + d + "'");
  if (!problems.empty()) return problems;
  // Cycle check: depth-first with colours.
  std::map<std::string, int> colour;
  std::function<bool(const std::string&)> visit = [&](const std::string& id) {
    if (colour[id] == 1) return true;
    if (colour[id] == 2) return false;
    colour[id] = 1;
    for (const auto& d : deps[id])
      if (visit(d)) return true;
    colour[id] = 2;
    return false;
  };
  for (const auto& [id, _] : deps) {
    if (visit(id)) {
      problems.push_back("the dependencies form a cycle through task '" + id + "'");
      break;
    }
  }
  return problems;
}

ToolOutcome ExecuteTool(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  const std::string& name = call.name;
  if (!call.arguments.is_object()) return Error(name + ": arguments must be a JSON object");

  if (name == "finish") {
    std::string summary;
    if (!GetString(call, "summary", &summary, &err)) return err;
    return {"finished", false, true};
  }
  if (name == "submit_plan") {
    auto problems = CheckPlan(call.arguments);
    if (!problems.empty()) {
      std::string msg = "plan refused:";
      for (const auto& p : problems) msg += "\n- " + p;
      return Error(msg + "\nfix these and call submit_plan again");
    }
    return {"plan accepted", false, true};
  }
  if (name == "submit_review") {
    std::string verdict;
    if (!GetString(call, "verdict", &verdict, &err)) return err;
    if (verdict != "approve" && verdict != "request_changes")
      return Error("submit_review: verdict must be 'approve' or 'request_changes'");
    const json& c = call.arguments.value("comments", json::array());
    if (!c.is_array() ||
        !std::all_of(c.begin(), c.end(), [](const json& x) { return x.is_string(); }))
      return Error("submit_review: 'comments' must be an array of strings");
    if (verdict == "request_changes" && c.empty())
      return Error(
          "submit_review: request_changes needs at least one comment saying what to change");
    return {"review recorded", false, true};
  }
  if (name == "recall") {
    std::string query;
    if (!GetString(call, "query", &query, &err)) return err;
    if (!ctx.store) return Error("memory is not available");
    int limit = 5;
    if (!GetInt(call, "limit", 5, 1, 20, &limit, &err)) return err;
    auto found = ctx.store->FindMemories({"project:" + ctx.project, "global"}, query, limit);
    if (!found.ok()) return FromStatus(found.status());
    if (found->empty()) return Ok("no memories match '" + query + "'");
    std::string out;
    for (const auto& m : *found)
      out +=
          "- [" + m.type + ", importance " + std::to_string(m.importance) + "] " + m.content + "\n";
    return Ok(out);
  }
  if (name == "remember") {
    std::string content, type = "insight";
    if (!GetString(call, "content", &content, &err)) return err;
    if (!GetString(call, "type", &type, &err, false)) return err;
    if (!ctx.store) return Error("memory is not available");
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
    auto stored = ctx.store->AddMemory(m);
    if (!stored.ok() && stored.status().code() != Code::kAlreadyExists)
      return FromStatus(stored.status());
    return Ok("remembered as " + m.id);
  }

  // Workspace tools.
  if (name == "list_files" || name == "read_file" || name == "write_file" || name == "edit_file" ||
      name == "search_code" || name == "run_command") {
    if (!ctx.tree) return NeedTree(call);
  } else {
    return Error("unknown tool '" + name + "'; the tools you have are listed in the request");
  }
  FeatureTree& tree = *ctx.tree;
  if (name == "list_files") {
    std::string path;
    if (!GetString(call, "path", &path, &err, false)) return err;
    if (path == ".") path.clear();
    auto files = tree.ListFiles(path);
    if (!files.ok()) return FromStatus(files.status());
    if (files->empty()) return Ok("(no files)");
    std::string out;
    for (const auto& f : *files) out += f + "\n";
    return Ok(out);
  }
  if (name == "read_file") {
    std::string path;
    if (!GetString(call, "path", &path, &err)) return err;
    auto content = tree.ReadFile(path);
    if (!content.ok()) return FromStatus(content.status());
    return Ok(*content);
  }
  if (name == "write_file") {
    std::string path, content;
    if (!GetString(call, "path", &path, &err) || !GetString(call, "content", &content, &err))
      return err;
    if (Status s = tree.WriteFile(path, content); !s.ok()) return FromStatus(s);
    if (ctx.touched) ctx.touched->insert(path);
    return Ok("wrote " + path + " (" + std::to_string(content.size()) + " bytes)");
  }
  if (name == "edit_file") {
    std::string path, old_text, new_text;
    if (!GetString(call, "path", &path, &err) || !GetString(call, "old_text", &old_text, &err) ||
        !GetString(call, "new_text", &new_text, &err))
      return err;
    if (Status s = tree.EditFile(path, old_text, new_text); !s.ok()) return FromStatus(s);
    if (ctx.touched) ctx.touched->insert(path);
    return Ok("edited " + path);
  }
  if (name == "search_code") {
    std::string query;
    if (!GetString(call, "query", &query, &err)) return err;
    auto hits = tree.Search(query);
    if (!hits.ok()) return FromStatus(hits.status());
    if (hits->empty()) return Ok("no matches for '" + query + "'");
    std::string out;
    for (const auto& h : *hits) out += h.path + ":" + std::to_string(h.line) + ": " + h.text + "\n";
    return Ok(out);
  }
  // run_command
  std::string command;
  if (!GetString(call, "command", &command, &err)) return err;
  if (!ctx.sandbox) return Error("run_command is not available (no sandbox)");
  auto run = ctx.sandbox->Run(command, tree.root());
  if (!run.ok()) return FromStatus(run.status());
  return {run->ToText(), run->exit_code != 0 || run->timed_out, false};
}

}  // namespace af
