#pragma once
// The scripted feature the scale-out tests share (the split pipeline in one
// process, the multi-process installation): a plan of two tasks, t1 writing
// a.txt ("alpha") and t2, after t1, writing b.txt ("beta"), each a write and
// a finish; then an approving review. Plus the check those tests make once
// it completed: no model answer recorded as paid for twice.

#include <string>
#include <vector>

#include "af/store/store.h"
#include "support/fake_llm_server.h"

namespace af::testing {

// Who asks and where in the conversation: "planner::0", "coder:b:1", ...
std::string TwoTaskKeyOf(const RecordedRequest& r);

// The scripted answer to the request with that key; a 400 naming the key for
// any request the script does not expect.
FakeReply TwoTaskAnswer(const std::string& key);

// Every key a run asks (each once when nothing goes wrong).
const std::vector<std::string>& TwoTaskKeys();

// The number of distinct requests whose answers `store` recorded as paid for
// ("ok") for the feature; adds a test failure for any recorded twice.
size_t DistinctPaidAnswers(Store& store, const std::string& feature_id);

}  // namespace af::testing
