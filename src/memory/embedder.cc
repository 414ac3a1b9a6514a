#include "af/memory/embedder.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>

#include "af/core/strings.h"
#include "af/llm/http_transport.h"

namespace af {
namespace {

using json = nlohmann::json;

// --- Stable hashing (the same on every platform and in every process) ---

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

inline uint64_t FnvByte(uint64_t h, unsigned char c) { return (h ^ c) * kFnvPrime; }

inline char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool AllDigitsView(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// FNV-1a of `s` lower-cased, started from `seed` (which separates feature kinds).
inline uint64_t HashLower(uint64_t seed, std::string_view s) {
  uint64_t h = seed;
  for (char c : s) h = FnvByte(h, static_cast<unsigned char>(LowerAscii(c)));
  return h;
}

// splitmix64's finaliser: FNV's low bits are weak for short keys, and both the
// bucket and the sign come from this.
inline uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// Seeds per feature kind, so a word and a character n-gram with the same
// bytes land in different buckets.
constexpr uint64_t kWordSeed = kFnvOffset;
constexpr uint64_t kCharSeed = kFnvOffset ^ 0x9e3779b97f4a7c15ull;
constexpr uint64_t kBigramSalt = 0x632be59bd9b4e019ull;
constexpr uint64_t kEmptySalt = 0x2545f4914f6cdd1dull;
constexpr uint64_t kExactSalt = 0x5851f42d4c957f2dull;

// Relative weights of the feature kinds. Word stems carry the meaning (the
// exact form adds a little, so an exact match beats another form); identifier
// parts let "parse_config" meet "config"; bigrams reward shared phrases;
// character n-grams match word forms ("retry"/"retries") but are noisy, so
// each word's n-grams together weigh about kChar of one word.
constexpr float kWord = 1.0f;
constexpr float kExact = 0.5f;
constexpr float kPart = 0.7f;
constexpr float kBigram = 0.5f;
constexpr float kChar = 0.6f;

// Longer "words" (hashes, base64) are cut for n-grams: they rarely match anyway.
constexpr size_t kMaxGramWord = 40;

constexpr std::array<std::string_view, 68> kStopwords = {
    "a",    "about", "after", "all",   "also",  "an",    "and",   "any",   "are",  "as",
    "at",   "be",    "been",  "being", "but",   "by",    "can",   "could", "did",  "do",
    "does", "each",  "for",   "from",  "had",   "has",   "have",  "he",    "her",  "his",
    "how",  "i",     "if",    "in",    "into",  "is",    "it",    "its",   "may",  "me",
    "more", "my",    "of",    "on",    "or",    "our",   "she",   "so",    "such", "than",
    "that", "the",   "their", "them",  "then",  "there", "these", "they",  "this", "those",
    "to",   "was",   "we",    "were",  "which", "will",  "with",  "you"};

// Stopwords by their word hash, sorted, for a binary search per word.
const std::vector<uint64_t>& StopHashes() {
  static const std::vector<uint64_t> hashes = [] {
    std::vector<uint64_t> h;
    for (std::string_view w : kStopwords) h.push_back(HashLower(kWordSeed, w));
    std::sort(h.begin(), h.end());
    return h;
  }();
  return hashes;
}

bool IsStopword(uint64_t word_hash) {
  const auto& h = StopHashes();
  return std::binary_search(h.begin(), h.end(), word_hash);
}

// A light English stemmer, so word forms share one feature: "retries" and
// "retry", "parser"/"parsing"/"parse", "connection"/"connected". One suffix
// is removed (the longest that leaves at least 3 characters), then a final
// 'e'. Crude on purpose: it only has to map forms of one word together.
struct Suffix {
  std::string_view from, to;
};
constexpr std::array<Suffix, 12> kSuffixes = {{{"ational", "ate"},
                                               {"ization", "ize"},
                                               {"ations", ""},
                                               {"ation", ""},
                                               {"ings", ""},
                                               {"ing", ""},
                                               {"ies", "y"},
                                               {"ions", ""},
                                               {"ion", ""},
                                               {"ers", ""},
                                               {"er", ""},
                                               {"ed", ""}}};

// `lower` is the lower-cased word; the stem is written to `out` (<= lower.size() + 1).
size_t Stem(std::string_view lower, char* out) {
  std::string_view w = lower;
  std::string_view add;
  if (w.size() > 4 && !AllDigitsView(w)) {
    bool done = false;
    for (const Suffix& sfx : kSuffixes) {
      if (w.size() >= sfx.from.size() + 3 &&
          w.compare(w.size() - sfx.from.size(), sfx.from.size(), sfx.from) == 0) {
        w.remove_suffix(sfx.from.size());
        add = sfx.to;
        done = true;
        break;
      }
    }
    if (!done && w.back() == 's' && w[w.size() - 2] != 's' && w[w.size() - 2] != 'u' &&
        w[w.size() - 2] != 'i') {
      w.remove_suffix(w[w.size() - 2] == 'e' && w.size() > 5 ? 2 : 1);  // "parses", "files"
    }
  }
  size_t n = w.size();
  std::memcpy(out, w.data(), n);
  std::memcpy(out + n, add.data(), add.size());
  n += add.size();
  if (n > 4 && out[n - 1] == 'e') --n;
  return n;
}

inline bool IsWordByte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         c >= 0x80;
}
inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }
inline bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
inline bool IsLowerAscii(char c) { return c >= 'a' && c <= 'z'; }

// Splits an identifier into parts at '_', lower->Upper, digit boundaries and
// the end of an acronym ("HTTPServer" -> HTTP, Server).
template <typename F>
void ForEachPart(std::string_view w, F&& f) {
  size_t start = 0;
  auto flush = [&](size_t end) {
    if (end > start) f(w.substr(start, end - start));
  };
  for (size_t i = 0; i < w.size(); ++i) {
    char c = w[i];
    if (c == '_') {
      flush(i);
      start = i + 1;
      continue;
    }
    if (i == start) continue;
    char p = w[i - 1];
    bool boundary = (IsLowerAscii(p) && IsUpper(c)) || (IsDigit(p) != IsDigit(c)) ||
                    (IsUpper(p) && IsUpper(c) && i + 1 < w.size() && IsLowerAscii(w[i + 1]));
    if (boundary) {
      flush(i);
      start = i;
    }
  }
  flush(w.size());
}

bool AllDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return IsDigit(c); });
}

class LocalEmbedder : public Embedder {
 public:
  explicit LocalEmbedder(int dims) : dims_(dims) {}

  std::string Id() const override { return "local-hash-v1/" + std::to_string(dims_); }

  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts) override {
    std::vector<std::vector<float>> out;
    out.reserve(texts.size());
    Scratch scratch;
    for (const std::string& t : texts) out.push_back(EmbedOne(t, &scratch));
    return out;
  }

 private:
  struct Word {
    std::string_view text;
    uint64_t hash;  // of the word as written (lower-cased)
    uint64_t stem;  // of its stem
  };
  struct Slot {
    uint64_t hash = 0;
    uint32_t count = 0;
    uint32_t word = 0;  // index into words
  };
  // Buffers reused across the texts of one call (each call has its own, so
  // concurrent calls share nothing).
  struct Scratch {
    std::vector<Word> words;
    std::vector<Slot> table;
  };

  // The hash of the stem of `w` (`h`: the hash of `w` itself, used for long words).
  static uint64_t StemHash(std::string_view w, uint64_t h) {
    if (w.size() > kMaxGramWord) return h;
    char lower[kMaxGramWord + 1];
    char stem[kMaxGramWord + 2];
    for (size_t i = 0; i < w.size(); ++i) lower[i] = LowerAscii(w[i]);
    size_t n = Stem(std::string_view(lower, w.size()), stem);
    return HashLower(kWordSeed, std::string_view(stem, n));
  }

  inline void Add(float* v, uint64_t h, float w) const {
    uint64_t m = Mix(h);
    uint32_t bucket = static_cast<uint32_t>(
        (static_cast<uint64_t>(static_cast<uint32_t>(m)) * static_cast<uint64_t>(dims_)) >> 32);
    v[bucket] += (m >> 63) ? -w : w;
  }

  // Character 3- and 4-grams of "<s>" (lower-cased), together weighing about `w`.
  void AddCharGrams(float* v, std::string_view s, float w) const {
    if (s.size() > kMaxGramWord) s = s.substr(0, kMaxGramWord);
    char buf[kMaxGramWord + 2];
    size_t n = 0;
    buf[n++] = '<';
    for (char c : s) buf[n++] = LowerAscii(c);
    buf[n++] = '>';
    const size_t grams = (n >= 3 ? n - 2 : 0) + (n >= 4 ? n - 3 : 0);
    if (grams == 0) return;
    const float each = w / std::sqrt(static_cast<float>(grams));
    for (size_t i = 0; i + 3 <= n; ++i) {
      uint64_t h = kCharSeed;
      h = FnvByte(h, static_cast<unsigned char>(buf[i]));
      h = FnvByte(h, static_cast<unsigned char>(buf[i + 1]));
      h = FnvByte(h, static_cast<unsigned char>(buf[i + 2]));
      Add(v, h, each);
      if (i + 4 <= n) Add(v, FnvByte(h, static_cast<unsigned char>(buf[i + 3])), each);
    }
  }

  std::vector<float> EmbedOne(std::string_view text, Scratch* s) const {
    std::vector<float> v(static_cast<size_t>(dims_), 0.0f);
    float* out = v.data();
    // Words, lower-cased by the hash; stopwords dropped (they also break bigrams'
    // adjacency less than one would think: "parse the config" -> parse config).
    s->words.clear();
    size_t i = 0;
    const size_t n = text.size();
    while (i < n) {
      while (i < n && !IsWordByte(static_cast<unsigned char>(text[i]))) ++i;
      size_t b = i;
      while (i < n && IsWordByte(static_cast<unsigned char>(text[i]))) ++i;
      if (i == b) break;
      std::string_view w = text.substr(b, i - b);
      // Leading/trailing underscores are decoration (__init__, _private).
      while (!w.empty() && w.front() == '_') w.remove_prefix(1);
      while (!w.empty() && w.back() == '_') w.remove_suffix(1);
      if (w.empty()) continue;
      uint64_t h = HashLower(kWordSeed, w);
      if (IsStopword(h)) continue;
      s->words.push_back({w, h, StemHash(w, h)});
    }
    if (s->words.empty()) {
      // No words at all: one fixed unit vector (so every vector has length 1
      // and cosine never divides by zero); such texts are alike only to each other.
      Add(out, kEmptySalt, 1.0f);
      Normalise(&v);
      return v;
    }
    // Term frequencies per distinct word (open addressing, power-of-two size).
    size_t cap = 16;
    while (cap < s->words.size() * 2) cap <<= 1;
    s->table.assign(cap, Slot{});
    for (uint32_t k = 0; k < s->words.size(); ++k) {
      uint64_t h = s->words[k].hash;
      size_t pos = static_cast<size_t>(Mix(h)) & (cap - 1);
      while (s->table[pos].count != 0 && s->table[pos].hash != h) pos = (pos + 1) & (cap - 1);
      Slot& slot = s->table[pos];
      if (slot.count == 0) {
        slot.hash = h;
        slot.word = k;
      }
      ++slot.count;
    }
    for (const Slot& slot : s->table) {
      if (slot.count == 0) continue;
      const float tf = 1.0f + std::log(static_cast<float>(slot.count));
      const Word& word = s->words[slot.word];
      std::string_view w = word.text;
      Add(out, word.stem, kWord * tf);
      Add(out, slot.hash ^ kExactSalt, kExact * tf);
      if (AllDigits(w)) continue;  // numbers: the exact token only
      int parts = 0;
      ForEachPart(w, [&](std::string_view) { ++parts; });
      if (parts > 1) {
        ForEachPart(w, [&](std::string_view p) {
          uint64_t ph = HashLower(kWordSeed, p);
          if (p.size() < 2 || AllDigits(p) || IsStopword(ph)) return;
          Add(out, StemHash(p, ph), kPart * tf);
          AddCharGrams(out, p, kChar * kPart * tf);
        });
      } else {
        AddCharGrams(out, w, kChar * tf);
      }
    }
    for (size_t k = 1; k < s->words.size(); ++k) {
      Add(out, (s->words[k - 1].stem * 31 + s->words[k].stem) ^ kBigramSalt, kBigram);
    }
    Normalise(&v);
    return v;
  }

  static void Normalise(std::vector<float>* v) {
    double sum = 0;
    for (float x : *v) sum += static_cast<double>(x) * x;
    if (sum <= 0) {
      // Every feature cancelled out (possible with signed hashing, vanishingly
      // rare): fall back to the fixed vector rather than a zero one.
      std::fill(v->begin(), v->end(), 0.0f);
      (*v)[0] = 1.0f;
      return;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(sum));
    for (float& x : *v) x *= inv;
  }

  int dims_;
};

// --- OpenAI-compatible /v1/embeddings ---

// "http://h:1", "http://h:1/", "http://h:1/v1/" and ".../v1/embeddings" all
// become "http://h:1/v1" (the base the endpoint path is appended to).
std::string NormaliseBase(std::string_view base) {
  std::string b(Trim(base));
  while (!b.empty() && b.back() == '/') b.pop_back();
  auto ends = [&](std::string_view suffix) {
    return b.size() >= suffix.size() &&
           b.compare(b.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends("/embeddings")) b.resize(b.size() - std::string_view("/embeddings").size());
  while (!b.empty() && b.back() == '/') b.pop_back();
  if (!ends("/v1")) b += "/v1";
  return b;
}

// The start of a reply body for an error message, with the key (should a
// server echo it) blanked out.
std::string Snippet(std::string_view body, const std::string& key) {
  std::string s(body.substr(0, 200));
  if (body.size() > 200) s += "...";
  if (!key.empty()) {
    for (size_t p = s.find(key); p != std::string::npos; p = s.find(key, p)) {
      s.replace(p, key.size(), "[REDACTED]");
    }
  }
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

class HttpEmbedder : public Embedder {
 public:
  HttpEmbedder(const EmbedderOptions& o, std::shared_ptr<HttpTransport> transport)
      : base_(NormaliseBase(o.base_url)),
        url_(base_ + "/embeddings"),
        model_(o.model),
        key_(o.api_key),
        batch_(o.batch_size),
        timeout_(o.timeout),
        transport_(std::move(transport)) {}

  std::string Id() const override { return "openai-compatible:" + base_ + "#" + model_; }

  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts) override {
    std::vector<std::vector<float>> out;
    out.reserve(texts.size());
    for (size_t b = 0; b < texts.size(); b += static_cast<size_t>(batch_)) {
      size_t e = std::min(texts.size(), b + static_cast<size_t>(batch_));
      AF_RETURN_IF_ERROR(EmbedBatch(texts, b, e, &out));
    }
    return out;
  }

 private:
  Status EmbedBatch(const std::vector<std::string>& texts, size_t b, size_t e,
                    std::vector<std::vector<float>>* out) {
    json input = json::array();
    for (size_t i = b; i < e; ++i) input.push_back(texts[i]);
    ClientRequest req;
    req.method = "POST";
    req.url = url_;
    req.headers.emplace_back("Content-Type", "application/json");
    if (!key_.empty()) req.headers.emplace_back("Authorization", "Bearer " + key_);
    // Invalid UTF-8 in a text must not throw: replace it.
    req.body = json{{"model", model_}, {"input", std::move(input)}}.dump(
        -1, ' ', false, json::error_handler_t::replace);
    req.timeout = timeout_;
    auto sent = transport_->Send(req, {});
    if (!sent.ok()) {
      const Status& st = sent.status();
      if (st.code() == Code::kUnavailable) {
        return Unavailable(
            "embeddings server " + url_ + " cannot be reached (" + st.message() + ")",
            "start the embeddings server, or unset embeddings.base_url to use the "
            "built-in local embedder");
      }
      return st.WithContext("embeddings request to " + url_);
    }
    const ClientResponse& r = *sent;
    if (r.status == 401 || r.status == 403) {
      return FailedPrecondition("embeddings endpoint refused the key (HTTP " +
                                    std::to_string(r.status) + " from " + url_ + ")",
                                key_.empty() ? "set embeddings.api_key to the server's API key"
                                             : "check embeddings.api_key");
    }
    if (r.status == 404) {
      return FailedPrecondition("embeddings endpoint " + url_ + " answered 404 for model '" +
                                    model_ + "': " + Snippet(r.body, key_),
                                "check embeddings.model (the server must have that model) and "
                                "embeddings.base_url (the server's OpenAI-compatible base, "
                                "e.g. http://127.0.0.1:11434/v1)");
    }
    if (r.status == 429 || r.status >= 500) {
      return Unavailable("embeddings server " + url_ + " answered HTTP " +
                             std::to_string(r.status) + ": " + Snippet(r.body, key_),
                         "retry later; check the embeddings server's log");
    }
    if (r.status < 200 || r.status >= 300) {
      return InvalidArgument("embeddings server " + url_ + " rejected the request (HTTP " +
                                 std::to_string(r.status) + "): " + Snippet(r.body, key_),
                             "check embeddings.model and that the server accepts these inputs");
    }
    return Parse(r.body, e - b, out);
  }

  Status Parse(const std::string& body, size_t count, std::vector<std::vector<float>>* out) {
    auto bad = [&](const std::string& why) {
      return Internal("malformed reply from embeddings server " + url_ + ": " + why,
                      "check that embeddings.base_url points at an OpenAI-compatible server");
    };
    json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return bad("not JSON: " + Snippet(body, key_));
    if (!j.is_object() || !j.contains("data") || !j["data"].is_array()) {
      return bad("no \"data\" array");
    }
    const json& data = j["data"];
    if (data.size() != count) {
      return bad(std::to_string(data.size()) + " embeddings for " + std::to_string(count) +
                 " inputs");
    }
    std::vector<std::vector<float>> batch(count);
    std::vector<bool> seen(count, false);
    for (size_t i = 0; i < data.size(); ++i) {
      const json& item = data[i];
      if (!item.is_object() || !item.contains("embedding") || !item["embedding"].is_array()) {
        return bad("item " + std::to_string(i) + " has no \"embedding\" array");
      }
      size_t index = i;
      if (item.contains("index")) {
        if (!item["index"].is_number_integer() || item["index"].get<int64_t>() < 0 ||
            item["index"].get<uint64_t>() >= count) {
          return bad("item " + std::to_string(i) + " has an invalid \"index\"");
        }
        index = item["index"].get<size_t>();
      }
      if (seen[index]) return bad("index " + std::to_string(index) + " appears twice");
      seen[index] = true;
      const json& emb = item["embedding"];
      std::vector<float> v;
      v.reserve(emb.size());
      double sum = 0;
      for (const json& x : emb) {
        if (!x.is_number()) return bad("a non-number in embedding " + std::to_string(index));
        double d = x.get<double>();
        if (!std::isfinite(d))
          return bad("a non-finite value in embedding " + std::to_string(index));
        v.push_back(static_cast<float>(d));
        sum += d * d;
      }
      if (v.empty() || sum <= 0)
        return bad("embedding " + std::to_string(index) + " is empty or zero");
      const float inv = static_cast<float>(1.0 / std::sqrt(sum));
      for (float& x : v) x *= inv;
      batch[index] = std::move(v);
    }
    for (const auto& v : batch) {
      // Every vector of this embedder, across calls, has the size of the first.
      size_t expected = dims_.load();
      if (expected == 0) {
        dims_.compare_exchange_strong(expected, v.size());
        expected = dims_.load();
      }
      if (v.size() != expected) {
        return Internal("embeddings server " + url_ + " returned vectors of different sizes (" +
                            std::to_string(v.size()) + " and " + std::to_string(expected) + ")",
                        "check embeddings.model; after changing the model run "
                        "`agent-factory kb reindex`");
      }
    }
    for (auto& v : batch) out->push_back(std::move(v));
    return Status::Ok();
  }

  std::string base_;
  std::string url_;
  std::string model_;
  std::string key_;
  int batch_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<HttpTransport> transport_;
  std::atomic<size_t> dims_{0};
};

}  // namespace

Result<std::unique_ptr<Embedder>> Embedder::Create(const EmbedderOptions& options) {
  if (Trim(options.base_url).empty()) {
    if (options.dimensions < 16 || options.dimensions > 4096) {
      return InvalidArgument("the local embedder's dimensions must be between 16 and 4096 (got " +
                                 std::to_string(options.dimensions) + ")",
                             "use the default (256)");
    }
    return std::unique_ptr<Embedder>(new LocalEmbedder(options.dimensions));
  }
  std::string_view base = Trim(options.base_url);
  if (!StartsWith(base, "http://") && !StartsWith(base, "https://")) {
    return InvalidArgument(
        "embeddings.base_url must start with http:// or https:// (got '" + std::string(base) + "')",
        "e.g. http://127.0.0.1:11434/v1 for Ollama");
  }
  if (Trim(options.model).empty()) {
    return InvalidArgument("embeddings.model is required when embeddings.base_url is set",
                           "name the server's embedding model, e.g. nomic-embed-text");
  }
  if (options.batch_size < 1) {
    return InvalidArgument("the embeddings batch size must be at least 1 (got " +
                           std::to_string(options.batch_size) + ")");
  }
  if (options.timeout.count() <= 0) {
    return InvalidArgument("the embeddings request timeout must be positive");
  }
  std::shared_ptr<HttpTransport> transport =
      options.transport ? options.transport : MakeCurlTransport();
  return std::unique_ptr<Embedder>(new HttpEmbedder(options, std::move(transport)));
}

}  // namespace af
