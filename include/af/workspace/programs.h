#pragma once
// The outside programs the product runs (git, bwrap), found and asked the
// same way the workspace and the sandbox find them, for the diagnostics
// (`doctor`, `logs collect`) that report on them.

#include <chrono>
#include <string>
#include <vector>

#include "af/core/status.h"

namespace af {

// The absolute path of `name` as the workspace and the sandbox would run it
// ($PATH first, then the usual system directories); "" when there is none.
std::string FindProgramOnPath(const std::string& name);

struct ProgramOutput {
  int exit_code = -1;  // -1 when killed (timeout or signal)
  bool timed_out = false;
  std::string output;  // stdout and stderr together
};

// Runs argv (argv[0] absolute) with this process's environment and waits up
// to `timeout`, killing it and what it started after that. Errors only when
// it cannot be started; a failing program is a result.
Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout);

}  // namespace af
