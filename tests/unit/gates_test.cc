#include "af/agents/gates.h"

#include <gtest/gtest.h>

namespace af {
namespace {

TEST(GatesTest, TestRunnersThatRanNoTestAreNamed) {
  for (const char* out : {
           "\n----------------------------------------------------------------------\n"
           "Ran 0 tests in 0.000s\n\nOK\n",                        // unittest, Python <= 3.11
           "Ran 0 tests in 0.000s\n\nNO TESTS RAN\n",              // unittest, Python 3.12+
           "\n============ no tests ran in 0.01s ============\n",  // pytest
           "collected 0 items\n",                                  // pytest -q header
           "Test project /b\nNo tests were found!!!\n",            // ctest
           "No tests found, exiting with code 1\n",                // jest
           "?   \texample.com/m\t[no test files]\n",               // go test
       }) {
    const std::string note = NoTestsRanNote(out);
    EXPECT_NE(note.find("ran no test"), std::string::npos) << out;
  }
}

TEST(GatesTest, RunsWithTestsAreNotFlagged) {
  for (const char* out : {
           "..........\nRan 10 tests in 0.002s\n\nOK\n",
           "collected 10 items\n\n10 passed in 0.03s\n",
           "3 passed in 0.01s\n",
           "test_no_tests_ran_is_handled PASSED\n",
           // go test ./... with a main package that has no tests of its own
           "?   \texample.com/m/cmd\t[no test files]\nok  \texample.com/m/lib\t0.004s\n",
           "",
       }) {
    EXPECT_EQ(NoTestsRanNote(out), "") << out;
  }
}

}  // namespace
}  // namespace af
