// A deterministic stand-in for libFuzzer, so every `make test` exercises the
// fuzz targets: runs each seed in the corpus directory, then `iterations`
// mutants of them (bit flips, byte inserts and deletes, chunk copies,
// dictionary tokens, splices, truncations) from a fixed seed. A crash or a
// violated FUZZ_CHECK aborts; a signal handler then writes the input to
// <target>-crash.bin in the working directory so it can be replayed:
//   fuzz_<target> --replay FILE
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string g_crash_file;
std::string g_current;

// Only async-signal-safe calls: the process is dying.
void SaveInputAndDie(int sig) {
  int fd = open(g_crash_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    const char* p = g_current.data();
    size_t left = g_current.size();
    while (left > 0) {
      ssize_t n = write(fd, p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
    close(fd);
  }
  const char msg[] = "fuzz driver: crashing input saved (replay it with --replay)\n";
  (void)!write(2, msg, sizeof msg - 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void Run(const std::string& input) {
  g_current = input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

struct Rng {
  uint64_t s;
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t Below(size_t n) { return n == 0 ? 0 : Next() % n; }
};

// Tokens that steer mutants into the interesting parts of the parsers.
const char* const kTokens[] = {
    "\n",   "\r\n", "## ",    "# ",    "- [ ] ",  "**",      ":",         "{",
    "}",    "[",    "]",      "\"",    "\\",      "\\u0000", "\xff",      "\xc3\xa9",
    "\xe2", "0",    "-1",     "1e309", "null",    "true",    "data: ",    "event: ",
    "\n\n", "id: ", "[DONE]", "%",     "%zz",     "+",       "&",         "=",
    "```",  "\t",   " ",      "Why",   "because", "just",    "Priority:", "Project:",
};

std::string Mutate(std::string s, const std::vector<std::string>& seeds, Rng& rng) {
  const int rounds = 1 + static_cast<int>(rng.Below(4));
  for (int r = 0; r < rounds; ++r) {
    switch (rng.Below(7)) {
      case 0:  // flip a bit
        if (!s.empty()) s[rng.Below(s.size())] ^= static_cast<char>(1 << rng.Below(8));
        break;
      case 1:  // insert random bytes
        s.insert(rng.Below(s.size() + 1),
                 std::string(1 + rng.Below(4), static_cast<char>(rng.Next())));
        break;
      case 2:  // delete a range
        if (!s.empty()) {
          size_t at = rng.Below(s.size());
          s.erase(at, 1 + rng.Below(std::min<size_t>(64, s.size() - at)));
        }
        break;
      case 3: {  // copy a chunk elsewhere
        if (s.empty()) break;
        size_t at = rng.Below(s.size());
        std::string chunk = s.substr(at, 1 + rng.Below(32));
        s.insert(rng.Below(s.size() + 1), chunk);
        break;
      }
      case 4:  // a dictionary token
        s.insert(rng.Below(s.size() + 1), kTokens[rng.Below(std::size(kTokens))]);
        break;
      case 5: {  // splice with another seed
        const std::string& other = seeds[rng.Below(seeds.size())];
        s = s.substr(0, rng.Below(s.size() + 1)) + other.substr(rng.Below(other.size() + 1));
        break;
      }
      case 6:  // truncate
        s.resize(rng.Below(s.size() + 1));
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string corpus, replay;
  long iterations = 2000;
  uint64_t seed = 0x5eed;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc)
      iterations = std::stol(argv[++i]);
    else if (a == "--seed" && i + 1 < argc)
      seed = std::stoull(argv[++i]);
    else if (a == "--replay" && i + 1 < argc)
      replay = argv[++i];
    else
      corpus = a;
  }
  const std::string self = std::filesystem::path(argv[0]).filename().string();
  g_crash_file = self + "-crash.bin";
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, SaveInputAndDie);
  if (!replay.empty()) {
    Run(ReadAll(replay));
    std::printf("%s: %s ran without a crash\n", self.c_str(), replay.c_str());
    return 0;
  }
  if (corpus.empty() || !std::filesystem::is_directory(corpus)) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [--iterations N] [--seed S] | --replay FILE\n",
                 self.c_str());
    return 2;
  }
  std::vector<std::string> seeds;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(corpus))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());  // same order, same mutants, every run
  for (const auto& f : files) seeds.push_back(ReadAll(f));
  if (seeds.empty()) {
    std::fprintf(stderr, "%s: no seed files in %s\n", self.c_str(), corpus.c_str());
    return 2;
  }
  seeds.push_back("");
  for (const std::string& s : seeds) Run(s);
  Rng rng{seed};
  for (long i = 0; i < iterations; ++i) Run(Mutate(seeds[rng.Below(seeds.size())], seeds, rng));
  std::printf("%s: %zu seeds and %ld mutants ran without a crash or a violated property\n",
              self.c_str(), seeds.size(), iterations);
  return 0;
}
