#pragma once
// Deterministic crash points for recovery tests, the way storage engines test
// their logs: the process is killed right after its N-th side effect, then
// restarted, and the result is compared with an uninterrupted run.
//
// The pipeline and the store call CrashPoint(kind) right after each side
// effect (a file written, a command run, a commit, a gate, an event made
// durable, ...). Nothing happens unless the environment says so:
//   AF_TEST_CRASH_AFTER=N   the N-th point this process reaches kills it with
//                           SIGKILL (no destructor, no flush: as `kill -9`).
//   AF_TEST_CRASH_TRACE=F   each point reached is appended to file F as a line
//                           "<n> <kind>" (written before any kill), so a test
//                           learns how many points a run has and which kinds.
// Both are read once. Thread-safe; when neither is set a point costs one
// atomic load.

#include <string_view>

namespace af::fault {

void CrashPoint(std::string_view kind);

}  // namespace af::fault
