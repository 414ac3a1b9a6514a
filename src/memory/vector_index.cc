#include "af/memory/vector_index.h"

#include <hnswlib/hnswlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "af/core/log.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Hnsw = hnswlib::HierarchicalNSW<float>;

// Format 2 stores an 8-bit code and the float vector per element (see
// Layout); format 1 stored the float vector alone. A format-1 file is
// rebuilt into format 2 at open, from its own vectors.
constexpr int kFormat = 2;
constexpr int kFloatFormat = 1;
constexpr size_t kInitialCapacity = 1024;
constexpr int kRebuildThreads = 2;  // threads inserting when the graph is rebuilt
constexpr const char* kReindexHint =
    "run `agent-factory kb reindex` to rebuild the vector index from the database";

// The fixed-size header hnswlib 0.6.2 writes before the elements (x86_64 and
// aarch64 layouts: size_t fields, then int/uint32, then size_t and a double).
struct HnswFileHeader {
  size_t offset_level0, max_elements, count, size_data_per_element, label_offset, offset_data;
  int max_level;
  uint32_t enter_point;
  size_t max_m, max_m0, m;
  double mult;
  size_t ef_construction;
};
constexpr size_t kHnswHeaderBytes = 6 * sizeof(size_t) + sizeof(int) + sizeof(uint32_t) +
                                    3 * sizeof(size_t) + sizeof(double) + sizeof(size_t);

template <typename T>
bool ReadPod(std::istream& in, T* out) {
  in.read(reinterpret_cast<char*>(out), sizeof(T));
  return static_cast<bool>(in);
}

// A fast 64-bit checksum of a file (8 bytes at a time), so a header and an
// index file that belong to different saves are told apart.
Result<uint64_t> FileChecksum(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return FailedPrecondition("cannot read " + path.string(), kReindexHint);
  uint64_t h = 0x9e3779b97f4a7c15ull;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    size_t n = static_cast<size_t>(in.gcount());
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, buf.data() + i, 8);
      h = (h ^ w) * 0x100000001b3ull;
      h ^= h >> 29;
    }
    for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 0x100000001b3ull;
  }
  return h;
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Eight partial sums, so the compiler can vectorise it (a single running
// float sum has to be added in order).
float DotPortable(const float* a, const float* b, size_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AF_HAVE_AVX2_DOT 1
// The same sum with 256-bit fused multiply-adds, four accumulators deep. The
// build is portable (no -march), so hnswlib's own kernels compile to SSE;
// this one is compiled for AVX2+FMA alone and chosen at run time when the CPU
// has them. Distance computations are most of the graph's insert and search
// time, so this is where the cores' width pays.
__attribute__((target("avx2,fma"))) float DotAvx2(const float* a, const float* b, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float sum = _mm_cvtss_f32(h);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}
#endif

using DotFn = float (*)(const float*, const float*, size_t);

DotFn PickDot() {
#ifdef AF_HAVE_AVX2_DOT
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DotAvx2;
#endif
  return DotPortable;
}

// Chosen once, at load time.
const DotFn kDot = PickDot();

float Dot(const float* a, const float* b, size_t n) { return kDot(a, b, n); }

// hnswlib's distance for unit vectors: 1 - inner product (so smaller is
// closer), the value its own InnerProductSpace gives, through the kernel
// chosen above. Only for reading files of the float-only format 1.
float InnerProductDistance(const void* a, const void* b, const void* dims) {
  return 1.0f - kDot(static_cast<const float*>(a), static_cast<const float*>(b),
                     *static_cast<const size_t*>(dims));
}

// The space of format-1 files (each element's data is its float vector).
class FloatSpace : public hnswlib::SpaceInterface<float> {
 public:
  explicit FloatSpace(size_t dims) : dims_(dims) {}
  size_t get_data_size() override { return dims_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return InnerProductDistance; }
  void* get_dist_func_param() override { return &dims_; }

 private:
  size_t dims_;
};

// The element layout of format 2. The graph's distance reads only a short
// 8-bit code per element: a quarter of the bytes of the float vector, and
// far fewer instructions per comparison. Distances are most of the work of
// an insert, and their cost is mostly waiting for memory. The exact float
// vector follows in the same element: the beam a search finds is ranked
// again with it (so recall against exact search is not lost to rounding),
// and Similarities and the exact scan read it.
//
//   [float scale][int8 code x code_bytes (zero padded)][float vector x dims]
//
// code[i] = round(v[i] / scale) with scale = max|v| / 127, so
// dot(a, b) ~= scale_a * scale_b * sum(code_a[i] * code_b[i]).
struct Layout {
  explicit Layout(size_t d)
      : dims(d), code_bytes((d + 31) / 32 * 32), vector_offset(sizeof(float) + code_bytes) {}
  size_t dims;
  size_t code_bytes;     // a multiple of 32, so the kernels need no tail
  size_t vector_offset;  // where the float vector starts
  size_t code_size() const { return vector_offset; }  // scale + code: what a query needs
  size_t element_size() const { return vector_offset + dims * sizeof(float); }
};

// Writes the scale and code of `v` (dims values) at `out` (code_size bytes).
void EncodeCode(const float* v, const Layout& l, unsigned char* out) {
  float max_abs = 0;
  for (size_t i = 0; i < l.dims; ++i) max_abs = std::max(max_abs, std::fabs(v[i]));
  const float scale = max_abs > 0 ? max_abs / 127.0f : 0.0f;
  std::memcpy(out, &scale, sizeof(scale));
  auto* code = reinterpret_cast<int8_t*>(out + sizeof(float));
  const float inv = max_abs > 0 ? 127.0f / max_abs : 0.0f;
  for (size_t i = 0; i < l.dims; ++i) {
    const long q = std::lround(v[i] * inv);
    code[i] = static_cast<int8_t>(std::clamp<long>(q, -127, 127));
  }
  std::memset(code + l.dims, 0, l.code_bytes - l.dims);
}

// A whole element: code, then the float vector.
void EncodeElement(const float* v, const Layout& l, unsigned char* out) {
  EncodeCode(v, l, out);
  std::memcpy(out + l.vector_offset, v, l.dims * sizeof(float));
}

const float* ElementVector(const char* element, const Layout& l) {
  return reinterpret_cast<const float*>(element + l.vector_offset);
}

int32_t Int8DotPortable(const int8_t* a, const int8_t* b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) s += static_cast<int32_t>(a[i]) * b[i];
  return s;
}

#ifdef AF_HAVE_AVX2_DOT
// 32 products a step: |a| (unsigned) times b with a's sign, summed in pairs
// to 16 bits (at most 2 * 127 * 127, no saturation since codes stop at
// -127), then in pairs again to 32 bits. `n` is a multiple of 32.
inline __attribute__((always_inline, target("avx2"))) int32_t Int8DotAvx2(const int8_t* a,
                                                                          const int8_t* b,
                                                                          size_t n) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i));
    const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i + 32));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i + 32));
    const __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(b0, a0));
    const __m256i p1 = _mm256_maddubs_epi16(_mm256_sign_epi8(a1, a1), _mm256_sign_epi8(b1, a1));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, ones));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, ones));
  }
  for (; i < n; i += 32) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i));
    const __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(b0, a0));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, ones));
  }
  const __m256i s = _mm256_add_epi32(s0, s1);
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  return _mm_cvtsi128_si32(h);
}
#endif

// The product of two codes' scales; the codes follow them.
inline float ScaleProduct(const void* a, const void* b) {
  float sa, sb;
  std::memcpy(&sa, a, sizeof(sa));
  std::memcpy(&sb, b, sizeof(sb));
  return sa * sb;
}

inline const int8_t* CodeOf(const void* element) {
  return reinterpret_cast<const int8_t*>(static_cast<const unsigned char*>(element) +
                                         sizeof(float));
}

// 1 - the approximate inner product of two codes (see Layout). hnswlib
// calls this through a pointer for every comparison, so the integer kernel
// is inlined into it: one call, not two.
float CodeDistancePortable(const void* a, const void* b, const void* layout) {
  const size_t n = static_cast<const Layout*>(layout)->code_bytes;
  return 1.0f - ScaleProduct(a, b) * static_cast<float>(Int8DotPortable(CodeOf(a), CodeOf(b), n));
}

#ifdef AF_HAVE_AVX2_DOT
__attribute__((target("avx2"))) float CodeDistanceAvx2(const void* a, const void* b,
                                                       const void* layout) {
  const size_t n = static_cast<const Layout*>(layout)->code_bytes;
  return 1.0f - ScaleProduct(a, b) * static_cast<float>(Int8DotAvx2(CodeOf(a), CodeOf(b), n));
}
#endif

hnswlib::DISTFUNC<float> PickCodeDistance() {
#ifdef AF_HAVE_AVX2_DOT
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return CodeDistanceAvx2;
#endif
  return CodeDistancePortable;
}

const hnswlib::DISTFUNC<float> kCodeDistance = PickCodeDistance();

class CodeSpace : public hnswlib::SpaceInterface<float> {
 public:
  explicit CodeSpace(size_t dims) : layout_(dims) {}
  size_t get_data_size() override { return layout_.element_size(); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return kCodeDistance; }
  void* get_dist_func_param() override { return &layout_; }
  const Layout& layout() const { return layout_; }

 private:
  Layout layout_;
};

Status Corrupt(const fs::path& path, const std::string& why) {
  return FailedPrecondition("vector index " + path.string() + " is unreadable: " + why,
                            kReindexHint);
}

// Checks the structure of an hnswlib file before hnswlib reads it: hnswlib
// trusts every size in it, so a truncated or garbage file would make it
// allocate wildly or read out of bounds.
// `data_size` is the bytes of one element's data in the file's format.
Status CheckHnswFile(const fs::path& path, int dims, size_t data_size, HnswFileHeader* h) {
  std::error_code ec;
  const uintmax_t file_size = fs::file_size(path, ec);
  if (ec) return Corrupt(path, ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) return Corrupt(path, "cannot open it");
  if (file_size < kHnswHeaderBytes) return Corrupt(path, "shorter than its header");
  bool ok = ReadPod(in, &h->offset_level0) && ReadPod(in, &h->max_elements) &&
            ReadPod(in, &h->count) && ReadPod(in, &h->size_data_per_element) &&
            ReadPod(in, &h->label_offset) && ReadPod(in, &h->offset_data) &&
            ReadPod(in, &h->max_level) && ReadPod(in, &h->enter_point) && ReadPod(in, &h->max_m) &&
            ReadPod(in, &h->max_m0) && ReadPod(in, &h->m) && ReadPod(in, &h->mult) &&
            ReadPod(in, &h->ef_construction);
  if (!ok) return Corrupt(path, "cannot read its header");
  const size_t links0 = h->max_m0 * sizeof(uint32_t) + sizeof(uint32_t);
  if (h->offset_level0 != 0 || h->m < 2 || h->m > 10000 || h->max_m != h->m ||
      h->max_m0 != 2 * h->m || h->offset_data != links0 || h->label_offset != links0 + data_size ||
      h->size_data_per_element != h->label_offset + sizeof(hnswlib::labeltype) ||
      !std::isfinite(h->mult) || h->mult <= 0 || h->max_level > 64) {
    return Corrupt(
        path, "its header does not describe an index of " + std::to_string(dims) + " dimensions");
  }
  const uintmax_t body = file_size - kHnswHeaderBytes;
  if (h->count > body / h->size_data_per_element) return Corrupt(path, "it is truncated");
  if (h->count > 0 && (h->enter_point >= h->count || h->max_level < 0)) {
    return Corrupt(path, "its entry point is out of range");
  }
  // The upper-layer link lists follow the elements, each with its size.
  const size_t links_per_level = h->max_m * sizeof(uint32_t) + sizeof(uint32_t);
  uintmax_t pos = kHnswHeaderBytes + h->count * h->size_data_per_element;
  in.seekg(static_cast<std::streamoff>(pos));
  for (size_t i = 0; i < h->count; ++i) {
    uint32_t size = 0;
    if (pos + sizeof(size) > file_size || !ReadPod(in, &size))
      return Corrupt(path, "it is truncated");
    pos += sizeof(size);
    if (size % links_per_level != 0 || size / links_per_level > static_cast<size_t>(h->max_level)) {
      return Corrupt(path, "element " + std::to_string(i) + " has a bad link list");
    }
    if (size > 0) {
      if (pos + size > file_size) return Corrupt(path, "it is truncated");
      pos += size;
      in.seekg(static_cast<std::streamoff>(size), std::ios::cur);
    }
  }
  if (pos != file_size) return Corrupt(path, "it has trailing bytes");
  return Status::Ok();
}

// Checks the loaded graph: every neighbour id in range and present at the
// level it is linked on (hnswlib follows them without checking).
bool GraphIsSane(const Hnsw& g) {
  const size_t n = g.cur_element_count;
  if (n == 0) return true;
  if (g.enterpoint_node_ >= n || g.element_levels_[g.enterpoint_node_] < g.maxlevel_) return false;
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<hnswlib::tableint>(i);
    const int levels = g.element_levels_[i];
    for (int level = 0; level <= levels; ++level) {
      const hnswlib::linklistsizeint* ll =
          level == 0 ? g.get_linklist0(id) : g.get_linklist(id, level);
      const size_t count = g.getListCount(const_cast<hnswlib::linklistsizeint*>(ll));
      if (count > (level == 0 ? g.maxM0_ : g.maxM_)) return false;
      const auto* nb = reinterpret_cast<const hnswlib::tableint*>(ll + 1);
      for (size_t j = 0; j < count; ++j) {
        if (nb[j] >= n || g.element_levels_[nb[j]] < level) return false;
      }
    }
  }
  return true;
}

class HnswIndex : public VectorIndex {
 public:
  HnswIndex(fs::path path, std::string embedder_id, int dims, const VectorIndexOptions& options)
      : path_(std::move(path)),
        embedder_id_(std::move(embedder_id)),
        dims_(dims),
        options_(options),
        space_(static_cast<size_t>(dims)) {}

  // A fresh empty graph.
  Status Reset(size_t capacity) {
    try {
      graph_ = std::make_unique<Hnsw>(&space_, capacity, static_cast<size_t>(options_.m),
                                      static_cast<size_t>(options_.ef_construction));
      graph_->setEf(static_cast<size_t>(std::max(1, options_.ef_search)));
    } catch (const std::exception& e) {
      return Internal(std::string("cannot create the vector index: ") + e.what());
    }
    return Status::Ok();
  }

  // Reads `path_` (whose header matched) written in `format` (kFormat or
  // kFloatFormat); FailedPrecondition when it is corrupt.
  Status Load(int format, size_t expected_count, uint64_t expected_checksum,
              uintmax_t expected_bytes) {
    std::error_code ec;
    if (fs::file_size(path_, ec) != expected_bytes || ec) {
      return Corrupt(path_, "its size differs from the one its header records");
    }
    AF_ASSIGN_OR_RETURN(uint64_t sum, FileChecksum(path_));
    if (sum != expected_checksum) {
      return Corrupt(path_, "its checksum differs from the one its header records");
    }
    const bool float_format = format == kFloatFormat;
    FloatSpace float_space(static_cast<size_t>(dims_));  // lives while the old graph does
    hnswlib::SpaceInterface<float>* space =
        float_format ? static_cast<hnswlib::SpaceInterface<float>*>(&float_space) : &space_;
    HnswFileHeader h{};
    AF_RETURN_IF_ERROR(CheckHnswFile(path_, dims_, space->get_data_size(), &h));
    if (h.count == 0) {
      AF_RETURN_IF_ERROR(Reset(kInitialCapacity));
      dirty_ = float_format;  // saved again in the current format
      return Status::Ok();
    }
    try {
      size_t capacity = std::max(kInitialCapacity, h.count);
      auto g = std::make_unique<Hnsw>(space, path_.string(), false, capacity);
      // hnswlib 0.6.2 leaves its tombstone counter uninitialised on load: recount.
      g->num_deleted_ = 0;
      for (size_t i = 0; i < g->cur_element_count; ++i) {
        if (g->isMarkedDeleted(static_cast<hnswlib::tableint>(i))) ++g->num_deleted_;
      }
      if (!GraphIsSane(*g)) return Corrupt(path_, "its graph links are out of range");
      g->setEf(static_cast<size_t>(std::max(1, options_.ef_search)));
      graph_ = std::move(g);
    } catch (const std::exception& e) {
      return Corrupt(path_, e.what());
    }
    if (LiveLocked() != expected_count) {
      return Corrupt(path_, "it holds " + std::to_string(LiveLocked()) +
                                " vectors where its header says " + std::to_string(expected_count));
    }
    dirty_ = false;
    if (float_format) {
      log::Get("memory")->info(
          "rebuilding vector index {} ({} vectors): it stores float vectors only (format {}), "
          "this program's graph compares 8-bit codes (format {})",
          path_.string(), LiveLocked(), kFloatFormat, kFormat);
      // The old graph's space is about to go: keep nothing of it on failure.
      Status st = CompactLocked(/*vector_offset=*/0);
      if (!st.ok()) (void)Reset(kInitialCapacity);
      return st;
    }
    // The file records the graph options it was built with. A graph built
    // with others (saved before the defaults changed) would keep them, and
    // its recall, forever, since new elements join the graph as it is: it is
    // rebuilt here from its own vectors, and the next save writes it.
    // (hnswlib raises a build beam below m to m before it records it.)
    const auto want_m = static_cast<size_t>(options_.m);
    const auto want_ef = static_cast<size_t>(std::max(options_.ef_construction, options_.m));
    if (h.m != want_m || h.ef_construction != want_ef) {
      log::Get("memory")->info(
          "rebuilding vector index {} ({} vectors): built with m {} and ef_construction {}, "
          "now {} and {}",
          path_.string(), LiveLocked(), h.m, h.ef_construction, options_.m,
          options_.ef_construction);
      return CompactLocked(space_.layout().vector_offset);
    }
    return Status::Ok();
  }

  void MarkDirty() { dirty_ = true; }

  const std::string& embedder_id() const override { return embedder_id_; }
  int dimensions() const override { return dims_; }

  size_t size() const override {
    auto lock = ReadLock();
    return LiveLocked();
  }

  Status Add(int64_t label, const std::vector<float>& vector) override {
    if (vector.size() != static_cast<size_t>(dims_)) {
      return InvalidArgument("a vector of " + std::to_string(vector.size()) +
                             " dimensions for an index of " + std::to_string(dims_));
    }
    for (float x : vector) {
      if (!std::isfinite(x)) return InvalidArgument("a vector with a non-finite value");
    }
    auto lock = WriteLock();
    try {
      const auto key = static_cast<hnswlib::labeltype>(label);
      if (graph_->label_lookup_.count(key) == 0 &&
          graph_->cur_element_count >= graph_->max_elements_) {
        graph_->resizeIndex(std::max(kInitialCapacity, graph_->max_elements_ * 2));
      }
      // hnswlib replaces the vector of a label it already has (and revives a
      // removed one) instead of adding a second element.
      std::vector<unsigned char> element(space_.layout().element_size());
      EncodeElement(vector.data(), space_.layout(), element.data());
      graph_->addPoint(element.data(), key);
    } catch (const std::exception& e) {
      return Internal(std::string("cannot add to the vector index: ") + e.what(), kReindexHint);
    }
    dirty_ = true;
    return Status::Ok();
  }

  Status AddBatch(const std::vector<int64_t>& labels,
                  const std::vector<std::vector<float>>& vectors, int threads) override {
    if (labels.size() != vectors.size()) {
      return InvalidArgument(std::to_string(labels.size()) + " labels for " +
                             std::to_string(vectors.size()) + " vectors");
    }
    for (const auto& v : vectors) {
      if (v.size() != static_cast<size_t>(dims_)) {
        return InvalidArgument("a vector of " + std::to_string(v.size()) +
                               " dimensions for an index of " + std::to_string(dims_));
      }
      for (float x : v) {
        if (!std::isfinite(x)) return InvalidArgument("a vector with a non-finite value");
      }
    }
    // The last vector of each label; labels the graph has are replaced one
    // by one, new ones inserted in parallel (hnswlib is not safe for two
    // threads writing the same label).
    std::unordered_map<int64_t, size_t> last;
    for (size_t i = 0; i < labels.size(); ++i) last[labels[i]] = i;
    auto lock = WriteLock();
    std::vector<size_t> known, fresh;
    for (size_t i = 0; i < labels.size(); ++i) {
      if (last[labels[i]] != i) continue;
      (graph_->label_lookup_.count(static_cast<hnswlib::labeltype>(labels[i])) ? known : fresh)
          .push_back(i);
    }
    try {
      const size_t need = graph_->cur_element_count + fresh.size();
      if (need > graph_->max_elements_) {
        graph_->resizeIndex(std::max({kInitialCapacity, need, graph_->max_elements_ * 2}));
      }
      std::vector<unsigned char> element(space_.layout().element_size());
      for (size_t i : known) {
        EncodeElement(vectors[i].data(), space_.layout(), element.data());
        graph_->addPoint(element.data(), static_cast<hnswlib::labeltype>(labels[i]));
      }
    } catch (const std::exception& e) {
      dirty_ = true;
      return Internal(std::string("cannot add to the vector index: ") + e.what(), kReindexHint);
    }
    std::vector<std::pair<hnswlib::labeltype, const float*>> items;
    items.reserve(fresh.size());
    for (size_t i : fresh)
      items.emplace_back(static_cast<hnswlib::labeltype>(labels[i]), vectors[i].data());
    return InsertNewLocked(items, threads);
  }

  Status Remove(int64_t label) override {
    auto lock = WriteLock();
    const auto key = static_cast<hnswlib::labeltype>(label);
    auto it = graph_->label_lookup_.find(key);
    if (it == graph_->label_lookup_.end() || graph_->isMarkedDeleted(it->second)) {
      return Status::Ok();
    }
    try {
      graph_->markDelete(key);
    } catch (const std::exception& e) {
      return Internal(std::string("cannot remove from the vector index: ") + e.what());
    }
    dirty_ = true;
    // Tombstones still cost search time and file space: rebuild once they
    // outnumber the live elements.
    if (graph_->num_deleted_ > LiveLocked()) return CompactLocked(space_.layout().vector_offset);
    return Status::Ok();
  }

  bool Contains(int64_t label) const override {
    auto lock = ReadLock();
    auto it = graph_->label_lookup_.find(static_cast<hnswlib::labeltype>(label));
    return it != graph_->label_lookup_.end() && !graph_->isMarkedDeleted(it->second);
  }

  std::vector<int64_t> Labels() const override {
    auto lock = ReadLock();
    std::vector<int64_t> out;
    out.reserve(LiveLocked());
    for (const auto& [key, id] : graph_->label_lookup_) {
      if (!graph_->isMarkedDeleted(id)) out.push_back(static_cast<int64_t>(key));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::pair<int64_t, float>> Search(
      const std::vector<float>& query, int k,
      const std::function<bool(int64_t)>& accept) const override {
    std::vector<std::pair<int64_t, float>> out;
    if (k <= 0 || query.size() != static_cast<size_t>(dims_)) return out;
    auto lock = ReadLock();
    const size_t live = LiveLocked();
    if (live == 0) return out;
    const size_t want = std::min(static_cast<size_t>(k), live);
    const Layout& layout = space_.layout();
    std::vector<unsigned char> code(layout.code_size());
    EncodeCode(query.data(), layout, code.data());
    try {
      // The beam is ef_search wide anyway, so asking for that many costs nothing
      // and gives a filter the most candidates.
      const size_t ef = static_cast<size_t>(options_.ef_search);
      size_t ask = accept ? std::min(live, std::max(want * 4, ef)) : want;
      for (int round = 0;; ++round) {
        // searchKnn widens its beam to what it is asked for itself
        // (ef = max(ef_search, asked)), so concurrent searches never change
        // shared state. The graph ranks by codes; the candidates it returns
        // are ranked again by their exact vectors.
        auto heap =
            graph_->searchKnn(code.data(), std::max(ask, std::min(live, RerankDepth(want))));
        out.clear();
        while (!heap.empty()) {
          const auto label = static_cast<int64_t>(heap.top().second);
          heap.pop();
          if (accept && !accept(label)) continue;
          auto it = graph_->label_lookup_.find(static_cast<hnswlib::labeltype>(label));
          if (it == graph_->label_lookup_.end()) continue;
          out.emplace_back(label,
                           Dot(ElementVector(graph_->getDataByInternalId(it->second), layout),
                               query.data(), query.size()));
        }
        if (!accept || out.size() >= want || ask >= live) break;
        // Too few accepted: widen by the share accepted so far, once. A filter
        // that accepted none of the nearest ones is selective, and for those
        // a scan of the accepted elements is exact and cheap.
        size_t next = out.empty() ? live : ask * want * 2 / out.size();
        if (round > 0 || next > live / 8) {
          out = ScanLocked(query, want, accept);
          break;
        }
        ask = std::min(live, std::max(next, ask * 2));
      }
    } catch (const std::exception&) {
      // hnswlib throws only on a corrupt graph, which Load rules out; an
      // exception must still never escape a search.
      out = ScanLocked(query, want, accept);
    }
    SortBest(&out);
    if (out.size() > want) out.resize(want);
    return out;
  }

  std::vector<std::optional<float>> Similarities(
      const std::vector<float>& query, const std::vector<int64_t>& labels) const override {
    std::vector<std::optional<float>> out(labels.size());
    if (query.size() != static_cast<size_t>(dims_)) return out;
    auto lock = ReadLock();
    for (size_t i = 0; i < labels.size(); ++i) {
      auto it = graph_->label_lookup_.find(static_cast<hnswlib::labeltype>(labels[i]));
      if (it == graph_->label_lookup_.end() || graph_->isMarkedDeleted(it->second)) continue;
      const float* v = ElementVector(graph_->getDataByInternalId(it->second), space_.layout());
      out[i] = Dot(v, query.data(), query.size());
    }
    return out;
  }

  Status Save() override {
    auto lock = WriteLock();
    if (path_.empty() || !dirty_) return Status::Ok();
    std::error_code ec;
    if (path_.has_parent_path()) fs::create_directories(path_.parent_path(), ec);
    const fs::path tmp = path_.string() + ".tmp";
    const fs::path header = path_.string() + ".json";
    const fs::path header_tmp = header.string() + ".tmp";
    auto fail = [&](const std::string& why) {
      fs::remove(tmp, ec);
      fs::remove(header_tmp, ec);
      return Unavailable("cannot save the vector index to " + path_.string() + ": " + why,
                         "check that the data directory is writable and has free space");
    };
    try {
      graph_->saveIndex(tmp.string());
    } catch (const std::exception& e) {
      return fail(e.what());
    }
    const uintmax_t bytes = fs::file_size(tmp, ec);
    if (ec) return fail(ec.message());
    auto sum = FileChecksum(tmp);
    if (!sum.ok()) return fail(sum.status().message());
    // saveIndex does not report write errors: check the size it must have.
    uintmax_t expected =
        kHnswHeaderBytes + graph_->cur_element_count * graph_->size_data_per_element_;
    for (size_t i = 0; i < graph_->cur_element_count; ++i) {
      expected += sizeof(uint32_t) + (graph_->element_levels_[i] > 0
                                          ? graph_->size_links_per_element_ *
                                                static_cast<size_t>(graph_->element_levels_[i])
                                          : 0);
    }
    if (bytes != expected) return fail("the file was written incompletely (disk full?)");
    // m and ef_construction are for people: Load reads them from the file.
    json h = {{"format", kFormat},   {"embedder", embedder_id_},
              {"dimensions", dims_}, {"count", LiveLocked()},
              {"bytes", bytes},      {"checksum", Hex(*sum)},
              {"m", options_.m},     {"ef_construction", options_.ef_construction}};
    {
      std::ofstream out(header_tmp, std::ios::binary | std::ios::trunc);
      out << h.dump(2) << "\n";
      out.flush();
      if (!out) return fail("cannot write " + header_tmp.string());
    }
    // The index first, then its header: a crash in between leaves a header
    // whose checksum does not match, which Open reports as corrupt.
    fs::rename(tmp, path_, ec);
    if (ec) return fail(ec.message());
    fs::rename(header_tmp, header, ec);
    if (ec) return fail(ec.message());
    dirty_ = false;
    return Status::Ok();
  }

  void Clear() override {
    auto lock = WriteLock();
    if (!Reset(kInitialCapacity).ok()) return;  // allocation of an empty graph failed: keep the old
    dirty_ = true;
  }

 private:
  // glibc's rwlock prefers readers, so a steady stream of searches would keep
  // Add/Remove/Save waiting forever. A writer holds the turnstile while it
  // waits, which keeps new readers out until it has had its turn.
  std::shared_lock<std::shared_mutex> ReadLock() const {
    std::lock_guard<std::mutex> turn(turnstile_);
    return std::shared_lock<std::shared_mutex>(mu_);
  }
  std::unique_lock<std::shared_mutex> WriteLock() {
    std::lock_guard<std::mutex> turn(turnstile_);
    return std::unique_lock<std::shared_mutex>(mu_);
  }

  size_t LiveLocked() const { return graph_->cur_element_count - graph_->num_deleted_; }

  // How many of the beam's best (by code) a search ranks again by exact
  // vectors: rounding moves a neighbour by a few places, not by hundreds.
  size_t RerankDepth(size_t want) const {
    return std::min(static_cast<size_t>(options_.ef_search), std::max<size_t>(want * 8, 64));
  }

  static void SortBest(std::vector<std::pair<int64_t, float>>* v) {
    std::sort(v->begin(), v->end(), [](const auto& a, const auto& b) {
      if (a.second != b.second) return a.second > b.second;
      return a.first < b.first;
    });
  }

  // Exact search over the live (and accepted) elements of the graph.
  std::vector<std::pair<int64_t, float>> ScanLocked(
      const std::vector<float>& query, size_t want,
      const std::function<bool(int64_t)>& accept) const {
    std::vector<std::pair<int64_t, float>> all;
    const size_t n = graph_->cur_element_count;
    for (size_t i = 0; i < n; ++i) {
      const auto id = static_cast<hnswlib::tableint>(i);
      if (graph_->isMarkedDeleted(id)) continue;
      const auto label = static_cast<int64_t>(graph_->getExternalLabel(id));
      if (accept && !accept(label)) continue;
      const float* v = ElementVector(graph_->getDataByInternalId(id), space_.layout());
      all.emplace_back(label, Dot(v, query.data(), query.size()));
    }
    if (all.size() > want) {
      std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(want), all.end(),
                        [](const auto& a, const auto& b) {
                          if (a.second != b.second) return a.second > b.second;
                          return a.first < b.first;
                        });
      all.resize(want);
    }
    return all;
  }

  // Inserts labels the graph does not hold, on up to `threads` threads:
  // hnswlib's inserts are safe in parallel for distinct new labels once the
  // graph has room, which the caller makes. Caller holds the write lock.
  Status InsertNewLocked(const std::vector<std::pair<hnswlib::labeltype, const float*>>& items,
                         int threads) {
    // Threads only pay for themselves on a few hundred inserts.
    const size_t n_threads =
        items.size() < 256
            ? 1
            : std::clamp<size_t>(threads, 1, std::max(1u, std::thread::hardware_concurrency()));
    std::atomic<size_t> next{0};
    std::mutex error_mu;
    std::string error;
    auto work = [&] {
      std::vector<unsigned char> element(space_.layout().element_size());
      for (size_t k = next++; k < items.size(); k = next++) {
        try {
          EncodeElement(items[k].second, space_.layout(), element.data());
          graph_->addPoint(element.data(), items[k].first);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> g(error_mu);
          if (error.empty()) error = e.what();
          next = items.size();
        }
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    dirty_ = true;
    if (!error.empty()) {
      return Internal("cannot add to the vector index: " + error, kReindexHint);
    }
    return Status::Ok();
  }

  // Rebuilds the graph from the live elements only, with this index's
  // options and format (also how a file built with other graph options or in
  // the float-only format is brought to them: from its own vectors, without
  // embedding anything again). `vector_offset`: where the float vector
  // starts in the current graph's elements.
  Status CompactLocked(size_t vector_offset) {
    std::vector<std::pair<hnswlib::labeltype, const float*>> live;
    const size_t n = graph_->cur_element_count;
    for (size_t i = 0; i < n; ++i) {
      const auto id = static_cast<hnswlib::tableint>(i);
      if (graph_->isMarkedDeleted(id)) continue;
      live.emplace_back(
          graph_->getExternalLabel(id),
          reinterpret_cast<const float*>(graph_->getDataByInternalId(id) + vector_offset));
    }
    std::unique_ptr<Hnsw> old = std::move(graph_);  // owns the data `live` points into
    Status st = Reset(std::max(kInitialCapacity, live.size() * 2));
    if (!st.ok()) {
      graph_ = std::move(old);
      return st;
    }
    st = InsertNewLocked(live, kRebuildThreads);
    if (!st.ok()) {
      graph_ = std::move(old);
      return Internal("cannot rebuild the vector index: " + st.message(), kReindexHint);
    }
    dirty_ = true;
    return Status::Ok();
  }

  const fs::path path_;
  const std::string embedder_id_;
  const int dims_;
  const VectorIndexOptions options_;
  CodeSpace space_;
  mutable std::mutex turnstile_;
  mutable std::shared_mutex mu_;
  std::unique_ptr<Hnsw> graph_;  // guarded by mu_
  bool dirty_ = false;           // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<VectorIndex>> VectorIndex::Open(const fs::path& path,
                                                       const std::string& embedder_id,
                                                       int dimensions,
                                                       const VectorIndexOptions& options) {
  if (dimensions < 1 || dimensions > 65536) {
    return InvalidArgument("vector index dimensions out of range: " + std::to_string(dimensions));
  }
  if (options.m < 2 || options.m > 1000 || options.ef_construction < 1 || options.ef_search < 1) {
    return InvalidArgument(
        "vector index options out of range (m 2..1000, ef_construction and "
        "ef_search at least 1)");
  }
  auto index = std::make_unique<HnswIndex>(path, embedder_id, dimensions, options);
  AF_RETURN_IF_ERROR(index->Reset(kInitialCapacity));
  if (path.empty()) return std::unique_ptr<VectorIndex>(std::move(index));

  const fs::path header = path.string() + ".json";
  std::error_code ec;
  const bool has_index = fs::exists(path, ec);
  const bool has_header = fs::exists(header, ec);
  if (!has_index && !has_header) {
    index->MarkDirty();  // the first Save writes the (empty) files
    return std::unique_ptr<VectorIndex>(std::move(index));
  }
  if (!has_header) return Corrupt(path, "its header " + header.string() + " is missing");
  if (!has_index) return Corrupt(path, "the file is missing (only its header exists)");

  std::ifstream in(header, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json h = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object() || !h.contains("format") ||
      !h["format"].is_number_integer() || !h.contains("embedder") || !h["embedder"].is_string() ||
      !h.contains("dimensions") || !h["dimensions"].is_number_integer() || !h.contains("count") ||
      !h["count"].is_number_unsigned() || !h.contains("bytes") ||
      !h["bytes"].is_number_unsigned() || !h.contains("checksum") || !h["checksum"].is_string()) {
    return Corrupt(path, "its header " + header.string() + " is not valid");
  }
  const int format = h["format"].get<int>();
  if (format != kFormat && format != kFloatFormat) {
    return FailedPrecondition("vector index " + path.string() + " has format " +
                                  std::to_string(h["format"].get<int>()) + ", this program reads " +
                                  std::to_string(kFormat),
                              kReindexHint);
  }
  const std::string built_by = h["embedder"].get<std::string>();
  const int built_dims = h["dimensions"].get<int>();
  if (built_by != embedder_id || built_dims != dimensions) {
    return FailedPrecondition("vector index " + path.string() + " was built by embedder '" +
                                  built_by + "' (" + std::to_string(built_dims) +
                                  " dimensions), not by the configured '" + embedder_id + "' (" +
                                  std::to_string(dimensions) + " dimensions)",
                              kReindexHint);
  }
  uint64_t checksum = 0;
  try {
    checksum = std::stoull(h["checksum"].get<std::string>(), nullptr, 16);
  } catch (const std::exception&) {
    return Corrupt(path, "its header " + header.string() + " is not valid");
  }
  AF_RETURN_IF_ERROR(
      index->Load(format, h["count"].get<size_t>(), checksum, h["bytes"].get<uintmax_t>()));
  return std::unique_ptr<VectorIndex>(std::move(index));
}

std::vector<std::pair<int64_t, float>> ExactSearch(
    const std::vector<std::pair<int64_t, std::vector<float>>>& vectors,
    const std::vector<float>& query, int k) {
  std::vector<std::pair<int64_t, float>> all;
  if (k <= 0) return all;
  all.reserve(vectors.size());
  for (const auto& [label, v] : vectors) {
    if (v.size() != query.size()) continue;
    all.emplace_back(label, Dot(v.data(), query.data(), v.size()));
  }
  auto better = [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    return a.first < b.first;
  };
  const size_t want = std::min(all.size(), static_cast<size_t>(k));
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(want), all.end(),
                    better);
  all.resize(want);
  return all;
}

}  // namespace af
