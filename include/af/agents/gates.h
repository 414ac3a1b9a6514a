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

}  // namespace af
