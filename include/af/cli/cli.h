#pragma once
// The command-line edge: parses arguments, calls services, formats output.
// No business logic lives here.

namespace af::cli {

// Runs `agent-factory` with the given arguments and returns the process exit
// code: 0 success, 1 a runtime failure, 2 bad usage, input or configuration.
int Main(int argc, char** argv);

}  // namespace af::cli
