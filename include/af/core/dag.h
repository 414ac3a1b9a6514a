#pragma once
// The one rule for task graphs, used wherever tasks name the tasks they wait
// for (a submitted plan, a batch written to the store): every dependency names
// a known id, and no chain of dependencies comes back to where it started
// (such tasks could never start).

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace af {

// One task of a graph: its id and the ids it depends on. Ids are assumed
// unique within a graph (callers report duplicates in their own words).
struct DagNode {
  std::string id;
  std::vector<std::string> dependencies;
};

// The dependencies that name neither a node of `nodes` nor an id of
// `also_known` (e.g. tasks stored earlier), as {node id, dependency} in input
// order.
std::vector<std::pair<std::string, std::string>> UnknownDependencies(
    const std::vector<DagNode>& nodes, const std::set<std::string>& also_known = {});

// The ids of the nodes that lie on a cycle (or on a path between cycles), in
// input order; empty when the graph has none. Dependencies on ids outside
// `nodes` are ignored: they cannot close a cycle within the graph.
std::vector<std::string> CycleIds(const std::vector<DagNode>& nodes);

}  // namespace af
