#include "af/workspace/programs.h"

#include "workspace/subprocess.h"

extern char** environ;

namespace af {

std::string FindProgramOnPath(const std::string& name) {
  return workspace_internal::FindProgram(name);
}

Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout) {
  workspace_internal::SpawnOptions opts;
  opts.argv = argv;
  for (char** e = environ; e && *e; ++e) opts.env.emplace_back(*e);
  opts.timeout = timeout;
  opts.new_session = true;
  opts.max_output_bytes = 64 * 1024;
  AF_ASSIGN_OR_RETURN(auto r, workspace_internal::Spawn(opts));
  return ProgramOutput{r.exit_code, r.timed_out, r.out};
}

}  // namespace af
