// Replay recordings (llm.replay_file, JSONL).
#include "fuzz/fuzz.h"
#include "llm/replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto entries = af::llm::ParseReplay(FuzzText(data, size), "fuzz.jsonl");
  if (entries.ok()) {
    for (const auto& e : *entries) FUZZ_CHECK(e.line >= 1);
  } else {
    // Errors name where: "... at fuzz.jsonl:LINE: ...".
    FUZZ_CHECK(entries.status().message().find("fuzz.jsonl:") != std::string::npos);
  }
  return 0;
}
