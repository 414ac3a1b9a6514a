#include "af/core/dag.h"

#include <map>

namespace af {

std::vector<std::pair<std::string, std::string>> UnknownDependencies(
    const std::vector<DagNode>& nodes, const std::set<std::string>& also_known) {
  std::set<std::string> ids;
  for (const DagNode& n : nodes) ids.insert(n.id);
  std::vector<std::pair<std::string, std::string>> out;
  for (const DagNode& n : nodes) {
    for (const std::string& d : n.dependencies) {
      if (!ids.count(d) && !also_known.count(d)) out.emplace_back(n.id, d);
    }
  }
  return out;
}

std::vector<std::string> CycleIds(const std::vector<DagNode>& nodes) {
  // Peel off, as in Kahn's algorithm, first every node whose dependencies can
  // all finish, then every node nothing left depends on; what remains is
  // cycles and the paths between them.
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index.emplace(nodes[i].id, i);
  std::vector<std::vector<size_t>> deps(nodes.size()), dependents(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const std::string& d : nodes[i].dependencies) {
      auto it = index.find(d);
      if (it == index.end()) continue;
      deps[i].push_back(it->second);
      dependents[it->second].push_back(i);
    }
  }
  std::vector<bool> removed(nodes.size(), false);
  auto peel = [&](const std::vector<std::vector<size_t>>& in,
                  const std::vector<std::vector<size_t>>& out) {
    std::vector<size_t> count(nodes.size(), 0), ready;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (removed[i]) continue;
      for (size_t j : in[i]) count[i] += removed[j] ? 0 : 1;
      if (count[i] == 0) ready.push_back(i);
    }
    while (!ready.empty()) {
      size_t i = ready.back();
      ready.pop_back();
      removed[i] = true;
      for (size_t j : out[i]) {
        if (!removed[j] && --count[j] == 0) ready.push_back(j);
      }
    }
  };
  peel(deps, dependents);  // nodes that can be ordered
  peel(dependents, deps);  // nodes only waiting behind a cycle
  std::vector<std::string> out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!removed[i]) out.push_back(nodes[i].id);
  }
  return out;
}

}  // namespace af
