#pragma once
// What a validation gate's output says beyond its exit code.

#include <string>
#include <string_view>

namespace af {

// When the output of a test runner says it ran no test at all (unittest's
// "Ran 0 tests", pytest's "no tests ran" / "collected 0 items", ctest's "No
// tests were found", jest's "No tests found", go's "no test files" when no
// package's tests ran), a note saying so, naming what was seen; otherwise "".
// A gate that ran no test has checked nothing, so it does not pass whatever
// its exit code.
std::string NoTestsRanNote(std::string_view output);

// `output` when it fits in `max_chars`; else its head and its tail (half of
// the budget each, cut at line ends) with a line saying how
// much was left out between them. Both ends matter: compilers print the first
// error first, test runners their summary last.
std::string HeadAndTail(std::string_view output, size_t max_chars);

}  // namespace af
