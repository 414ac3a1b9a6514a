#include "af/agents/gates.h"

namespace af {

std::string NoTestsRanNote(std::string_view output) {
  // Whole phrases as the runners print them (case matters: a test named
  // no_tests_ran or a summary such as "Ran 10 tests" must not match).
  static constexpr std::string_view kSigns[] = {
      "Ran 0 tests",         "NO TESTS RAN",   "no tests ran",   "collected 0 items",
      "No tests were found", "No tests found", "[no test files]"};
  // go test prints "[no test files]" per package without tests, also when
  // other packages' tests ran ("ok  <package>" or "FAIL\t<package>" lines).
  auto has_line = [&](std::string_view start) {
    return output.substr(0, start.size()) == start ||
           output.find("\n" + std::string(start)) != std::string_view::npos;
  };
  const bool go_tests_ran = has_line("ok ") || has_line("FAIL\t");
  for (std::string_view sign : kSigns) {
    if (output.find(sign) == std::string_view::npos) continue;
    if (sign == "[no test files]" && go_tests_ran) continue;
    return "the gate ran no test (its output says \"" + std::string(sign) +
           "\"): add tests for the feature, or fix the gate command so it finds them";
  }
  return "";
}

std::string HeadAndTail(std::string_view output, size_t max_chars) {
  if (output.size() <= max_chars) return std::string(output);
  size_t head = max_chars / 2;  // a compiler's first error, a test run's summary
  size_t tail_start = output.size() - (max_chars - head);
  // Whole lines where a line end is near.
  if (size_t nl = output.rfind('\n', head); nl != std::string_view::npos && nl > head / 2) {
    head = nl + 1;
  }
  if (size_t nl = output.find('\n', tail_start);
      nl != std::string_view::npos && nl < tail_start + (max_chars - head) / 2) {
    tail_start = nl + 1;
  }
  const size_t left_out = tail_start - head;
  return std::string(output.substr(0, head)) + "\n[... " + std::to_string(left_out) +
         " characters left out ...]\n" + std::string(output.substr(tail_start));
}

}  // namespace af
