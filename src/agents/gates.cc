#include "af/agents/gates.h"

namespace af {

std::string NoTestsRanNote(std::string_view output) {
  // Whole phrases as the runners print them (case matters: a test named
  // no_tests_ran or a summary such as "Ran 10 tests" must not match).
  static constexpr std::string_view kSigns[] = {
      "Ran 0 tests",         "NO TESTS RAN",   "no tests ran",   "collected 0 items",
      "No tests were found", "No tests found", "[no test files]"};
  for (std::string_view sign : kSigns) {
    if (output.find(sign) == std::string_view::npos) continue;
    return "the gate ran no test (its output says \"" + std::string(sign) +
           "\"): add tests for the feature, or fix the gate command so it finds them";
  }
  return "";
}

}  // namespace af
