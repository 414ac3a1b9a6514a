#include "af/core/archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "af/core/private_files.h"

namespace af {
namespace fs = std::filesystem;

namespace {

constexpr size_t kBlock = 512;
constexpr uint64_t kMaxOctalSize = 077777777777ULL;  // what 11 octal digits hold

void PutOctal(char* field, size_t width, uint64_t value) {
  // width-1 digits, zero padded, then NUL.
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(value));
}

uint64_t GetOctal(const char* field, size_t width) {
  uint64_t v = 0;
  for (size_t i = 0; i < width && field[i] != '\0' && field[i] != ' '; ++i) {
    if (field[i] < '0' || field[i] > '7') break;
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  return v;
}

unsigned Checksum(const char* block) {
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    bool in_field = i >= 148 && i < 156;
    sum += in_field ? ' ' : static_cast<unsigned char>(block[i]);
  }
  return sum;
}

// One pax record: "<len> key=value\n", where <len> counts the whole record.
std::string PaxRecord(const std::string& key, const std::string& value) {
  size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) ++len;
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

// "a/./b/" -> "a/b"; refuses absolute paths, "..", and empty names.
Result<std::string> SafeRelative(const std::string& raw) {
  if (raw.empty() || raw[0] == '/') {
    return InvalidArgument("unsafe path in archive: '" + raw + "' (absolute or empty)",
                           "extract only archives made by agent-factory");
  }
  std::string out;
  size_t i = 0;
  while (i <= raw.size()) {
    size_t j = raw.find('/', i);
    if (j == std::string::npos) j = raw.size();
    std::string part = raw.substr(i, j - i);
    if (part == "..") {
      return InvalidArgument("unsafe path in archive: '" + raw + "' (climbs out with '..')",
                             "extract only archives made by agent-factory");
    }
    if (!part.empty() && part != ".") out += (out.empty() ? "" : "/") + part;
    i = j + 1;
  }
  if (out.empty()) {
    return InvalidArgument("unsafe path in archive: '" + raw + "'",
                           "extract only archives made by agent-factory");
  }
  return out;
}

std::string ErrnoText() { return std::strerror(errno); }

}  // namespace

// --- writing ------------------------------------------------------------------

struct TarGzWriter::Impl {
  fs::path final_path, partial_path;
  gzFile gz = nullptr;
  bool finished = false;

  Status Write(const void* data, size_t n) {
    if (n == 0) return Status();
    if (gzwrite(gz, data, static_cast<unsigned>(n)) != static_cast<int>(n)) {
      int err = 0;
      const char* msg = gzerror(gz, &err);
      return Internal(
          "cannot write " + partial_path.string() + ": " +
              (err == Z_ERRNO ? ErrnoText() : std::string(msg ? msg : "?")),
          "check the free space and permissions of " + partial_path.parent_path().string());
    }
    return Status();
  }

  Status Pad(uint64_t size) {
    static const char zeros[kBlock] = {};
    size_t rest = size % kBlock;
    return rest == 0 ? Status() : Write(zeros, kBlock - rest);
  }

  // One header (preceded by a pax header when the name or link is long).
  Status Header(const std::string& name, char type, uint64_t size, unsigned mode, int64_t mtime,
                const std::string& link = "") {
    if (name.size() > 100 || link.size() > 100) {
      std::string pax;
      if (name.size() > 100) pax += PaxRecord("path", name);
      if (link.size() > 100) pax += PaxRecord("linkpath", link);
      if (Status s = Header("PaxHeader/" + name.substr(0, 80), 'x', pax.size(), 0644, mtime);
          !s.ok()) {
        return s;
      }
      if (Status s = Write(pax.data(), pax.size()); !s.ok()) return s;
      if (Status s = Pad(pax.size()); !s.ok()) return s;
    }
    if (size > kMaxOctalSize) {
      return InvalidArgument("'" + name + "' is larger than 8 GiB, which archives here cannot hold",
                             "move it out of the data directory");
    }
    char b[kBlock] = {};
    std::memcpy(b, name.data(), std::min<size_t>(name.size(), 100));
    PutOctal(b + 100, 8, mode & 07777);
    PutOctal(b + 108, 8, 0);
    PutOctal(b + 116, 8, 0);
    PutOctal(b + 124, 12, size);
    PutOctal(b + 136, 12, static_cast<uint64_t>(std::max<int64_t>(0, mtime)));
    b[156] = type;
    std::memcpy(b + 157, link.data(), std::min<size_t>(link.size(), 100));
    std::memcpy(b + 257, "ustar", 6);
    std::memcpy(b + 263, "00", 2);
    std::snprintf(b + 148, 8, "%06o", Checksum(b));
    b[155] = ' ';
    return Write(b, kBlock);
  }

  Status AddFile(const std::string& name, const fs::path& source) {
    int fd = ::open(source.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) return Status();  // vanished meanwhile: nothing to keep
      return Internal("cannot read " + source.string() + ": " + ErrnoText(),
                      "check its permissions");
    }
    struct stat st {};
    fstat(fd, &st);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    Status s = Header(name, '0', size, st.st_mode, st.st_mtim.tv_sec);
    // Exactly `size` bytes follow the header: a file that shrinks while it is
    // read is padded with zeros, one that grows is cut at its size then.
    std::vector<char> buf(1 << 16);
    uint64_t done = 0;
    while (s.ok() && done < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
      ssize_t n = ::read(fd, buf.data(), want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        s = Internal("cannot read " + source.string() + ": " + ErrnoText(), "check the disk");
        break;
      }
      if (n == 0) {
        std::fill(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(want), '\0');
        n = static_cast<ssize_t>(want);
      }
      s = Write(buf.data(), static_cast<size_t>(n));
      done += static_cast<uint64_t>(n);
    }
    ::close(fd);
    return s.ok() ? Pad(size) : s;
  }

  Status AddPath(const std::string& name, const fs::path& source, const std::string& rel,
                 const std::function<bool(const std::string&)>& skip) {
    if (skip && !rel.empty() && skip(rel)) return Status();
    std::error_code ec;
    fs::file_status st = fs::symlink_status(source, ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) return Status();
      return Internal("cannot read " + source.string() + ": " + ec.message(),
                      "check its permissions");
    }
    struct stat raw {};
    int64_t mtime = ::lstat(source.c_str(), &raw) == 0 ? raw.st_mtim.tv_sec : 0;
    switch (st.type()) {
      case fs::file_type::regular:
        return AddFile(name, source);
      case fs::file_type::symlink: {
        fs::path target = fs::read_symlink(source, ec);
        if (ec) return Status();
        return Header(name, '2', 0, 0777, mtime, target.string());
      }
      case fs::file_type::directory: {
        if (Status s = Header(name + "/", '5', 0, raw.st_mode, mtime); !s.ok()) return s;
        std::vector<fs::path> children;
        for (fs::directory_iterator it(source, ec), end; !ec && it != end; it.increment(ec)) {
          children.push_back(it->path());
        }
        if (ec) {
          return Internal("cannot list " + source.string() + ": " + ec.message(),
                          "check its permissions");
        }
        std::sort(children.begin(), children.end());  // the same tree gives the same archive
        for (const fs::path& child : children) {
          std::string leaf = child.filename().string();
          std::string child_rel = rel.empty() ? leaf : rel + "/" + leaf;
          if (Status s = AddPath(name + "/" + leaf, child, child_rel, skip); !s.ok()) return s;
        }
        return Status();
      }
      default:
        return Status();  // sockets, FIFOs, devices: not data
    }
  }
};

TarGzWriter::TarGzWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TarGzWriter::~TarGzWriter() {
  if (impl_ && !impl_->finished) {
    if (impl_->gz) gzclose(impl_->gz);
    std::error_code ec;
    fs::remove(impl_->partial_path, ec);
  }
}

Result<std::unique_ptr<TarGzWriter>> TarGzWriter::Create(const fs::path& out) {
  auto impl = std::make_unique<Impl>();
  impl->final_path = out;
  impl->partial_path = out.string() + ".partial";
  int fd = ::open(impl->partial_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Internal("cannot create " + impl->partial_path.string() + ": " + ErrnoText(),
                    "check that " + out.parent_path().string() + " exists and is writable");
  }
  fchmod(fd, 0600);
  impl->gz = gzdopen(fd, "wb6");
  if (impl->gz == nullptr) {
    ::close(fd);
    return Internal("cannot start gzip output for " + out.string(), "out of memory?");
  }
  return std::unique_ptr<TarGzWriter>(new TarGzWriter(std::move(impl)));
}

Status TarGzWriter::AddData(const std::string& name, std::string_view data, unsigned mode) {
  auto safe = SafeRelative(name);
  if (!safe.ok()) return safe.status();
  if (Status s = impl_->Header(*safe, '0', data.size(), mode, time(nullptr)); !s.ok()) return s;
  if (Status s = impl_->Write(data.data(), data.size()); !s.ok()) return s;
  return impl_->Pad(data.size());
}

Status TarGzWriter::AddPath(const std::string& name, const fs::path& source,
                            const std::function<bool(const std::string&)>& skip) {
  auto safe = SafeRelative(name);
  if (!safe.ok()) return safe.status();
  return impl_->AddPath(*safe, source, "", skip);
}

Status TarGzWriter::Finish() {
  static const char zeros[2 * kBlock] = {};
  Status s = impl_->Write(zeros, sizeof zeros);
  int rc = gzclose(impl_->gz);
  impl_->gz = nullptr;
  if (s.ok() && rc != Z_OK) {
    s = Internal("cannot finish " + impl_->partial_path.string() + " (zlib error " +
                     std::to_string(rc) + ")",
                 "check the free space of " + impl_->final_path.parent_path().string());
  }
  std::error_code ec;
  if (s.ok()) fs::rename(impl_->partial_path, impl_->final_path, ec);
  if (s.ok() && ec) {
    s = Internal("cannot rename " + impl_->partial_path.string() + ": " + ec.message(),
                 "check the permissions of " + impl_->final_path.parent_path().string());
  }
  if (!s.ok()) fs::remove(impl_->partial_path, ec);
  impl_->finished = true;
  return s;
}

// --- reading ------------------------------------------------------------------

namespace {

struct Entry {
  std::string name, link;
  char type = '0';
  uint64_t size = 0;
  unsigned mode = 0644;
  int64_t mtime = 0;
};

// Walks an archive's entries; `on_entry` reads exactly entry.size bytes of the
// body through `read` (or none: the rest is skipped).
class TarReader {
 public:
  explicit TarReader(fs::path path) : path_(std::move(path)) {}
  ~TarReader() {
    if (gz_) gzclose(gz_);
  }

  Status Open() {
    gz_ = gzopen(path_.c_str(), "rb");
    if (gz_ == nullptr) {
      return NotFound("cannot open " + path_.string() + ": " + ErrnoText(),
                      "check the path (an archive from 'agent-factory backup' or 'logs collect')");
    }
    return Status();
  }

  Status Damaged(const std::string& what) const {
    return InvalidArgument(path_.string() + " is damaged or not a tar.gz archive: " + what,
                           "use another copy of the archive");
  }

  Status ReadExact(void* buf, size_t n) {
    size_t done = 0;
    while (done < n) {
      int r = gzread(gz_, static_cast<char*>(buf) + done, static_cast<unsigned>(n - done));
      if (r <= 0) {
        int err = 0;
        const char* msg = gzerror(gz_, &err);
        return Damaged(r == 0 ? "it ends early" : std::string(msg ? msg : "read error"));
      }
      done += static_cast<size_t>(r);
    }
    return Status();
  }

  Status ReadBody(std::string& out, uint64_t size) {
    out.resize(static_cast<size_t>(size));
    if (Status s = ReadExact(out.data(), out.size()); !s.ok()) return s;
    return SkipPad(size);
  }

  Status SkipPad(uint64_t size) {
    char pad[kBlock];
    size_t rest = size % kBlock;
    return rest == 0 ? Status() : ReadExact(pad, kBlock - rest);
  }

  // Calls on_entry(entry, *this, left) for each entry: it may read up to
  // `left` bytes of the body with ReadExact (lowering `left`); the rest is skipped.
  Status Walk(const std::function<Status(const Entry&, TarReader&, uint64_t& left)>& on_entry) {
    std::map<std::string, std::string> pax;
    std::string long_name, long_link;
    for (;;) {
      char b[kBlock];
      if (Status s = ReadExact(b, kBlock); !s.ok()) return s;
      if (std::all_of(b, b + kBlock, [](char c) { return c == '\0'; })) return ReadToEnd();
      if (GetOctal(b + 148, 8) != Checksum(b)) return Damaged("a header's checksum is wrong");
      Entry e;
      e.type = b[156] == '\0' ? '0' : b[156];
      e.size = GetOctal(b + 124, 12);
      e.mode = static_cast<unsigned>(GetOctal(b + 100, 8));
      e.mtime = static_cast<int64_t>(GetOctal(b + 136, 12));
      std::string name(b, strnlen(b, 100));
      std::string prefix(b + 345, strnlen(b + 345, 155));
      if (std::memcmp(b + 257, "ustar", 5) == 0 && !prefix.empty()) name = prefix + "/" + name;
      e.name = name;
      e.link.assign(b + 157, strnlen(b + 157, 100));
      if (e.type == 'x' || e.type == 'g' || e.type == 'L' || e.type == 'K') {
        if (e.size > (1u << 20)) return Damaged("an extended header is larger than 1 MiB");
        std::string body;
        if (Status s = ReadBody(body, e.size); !s.ok()) return s;
        if (e.type == 'L') long_name = body.c_str();
        if (e.type == 'K') long_link = body.c_str();
        if (e.type == 'x') {
          size_t i = 0;
          while (i < body.size()) {
            size_t sp = body.find(' ', i);
            if (sp == std::string::npos) return Damaged("a pax record has no length");
            size_t len = std::strtoull(body.c_str() + i, nullptr, 10);
            if (len == 0 || i + len > body.size()) return Damaged("a pax record's length is wrong");
            std::string rec = body.substr(sp + 1, i + len - sp - 2);
            size_t eq = rec.find('=');
            if (eq != std::string::npos) pax[rec.substr(0, eq)] = rec.substr(eq + 1);
            i += len;
          }
        }
        continue;
      }
      if (!long_name.empty()) e.name = long_name;
      if (!long_link.empty()) e.link = long_link;
      if (pax.count("path")) e.name = pax["path"];
      if (pax.count("linkpath")) e.link = pax["linkpath"];
      if (pax.count("size")) e.size = std::strtoull(pax["size"].c_str(), nullptr, 10);
      pax.clear();
      long_name.clear();
      long_link.clear();
      uint64_t body = e.size;  // 0 for directories and links
      uint64_t left = body;
      if (Status s = on_entry(e, *this, left); !s.ok()) return s;
      char buf[kBlock];
      while (left > 0) {  // whatever on_entry did not read
        size_t n = static_cast<size_t>(std::min<uint64_t>(left, kBlock));
        if (Status s = ReadExact(buf, n); !s.ok()) return s;
        left -= n;
      }
      if (Status s = SkipPad(body); !s.ok()) return s;
    }
  }

 private:
  // The rest of the stream after the end-of-archive block: gzip checks its
  // length and CRC only at its very end, so an archive cut within its last
  // bytes (the padding, the trailer) would otherwise read as whole.
  Status ReadToEnd() {
    char buf[kBlock];
    for (;;) {
      const int r = gzread(gz_, buf, sizeof buf);
      if (r > 0) continue;
      int err = Z_OK;
      const char* msg = gzerror(gz_, &err);
      if (r == 0 && err == Z_OK) return Status();
      return Damaged(std::string(msg != nullptr && *msg != '\0' ? msg : "it ends early") +
                     " after the last entry");
    }
  }

  fs::path path_;
  gzFile gz_ = nullptr;
};

bool IsFile(char type) { return type == '0' || type == '7'; }

}  // namespace

Result<std::vector<ArchiveEntry>> ListTarGz(const fs::path& archive) {
  TarReader r(archive);
  if (Status s = r.Open(); !s.ok()) return s;
  std::vector<ArchiveEntry> out;
  Status s = r.Walk([&](const Entry& e, TarReader&, uint64_t&) {
    out.push_back({e.name, IsFile(e.type) ? '0' : e.type, e.size});
    return Status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::string> ReadTarGzFile(const fs::path& archive, const std::string& name) {
  TarReader r(archive);
  if (Status s = r.Open(); !s.ok()) return s;
  std::optional<std::string> found;
  Status s = r.Walk([&](const Entry& e, TarReader& reader, uint64_t& left) {
    if (found || !IsFile(e.type) || e.name != name) return Status();
    std::string body(static_cast<size_t>(e.size), '\0');
    if (Status rs = reader.ReadExact(body.data(), body.size()); !rs.ok()) return rs;
    left = 0;
    found = std::move(body);
    return Status();
  });
  if (!s.ok()) return s;
  if (!found) return NotFound("no '" + name + "' in " + archive.string());
  return *found;
}

Status ExtractTarGz(const fs::path& archive, const fs::path& dest) {
  TarReader r(archive);
  if (Status s = r.Open(); !s.ok()) return s;
  if (std::error_code ec = CreatePrivateDirectories(dest); ec) {
    return Internal("cannot create " + dest.string() + ": " + ec.message(),
                    "check the permissions of its parent directory");
  }
  std::vector<Entry> links;
  std::vector<std::pair<fs::path, unsigned>> dir_modes;
  std::set<std::string> link_names;
  Status s = r.Walk([&](const Entry& e, TarReader& reader, uint64_t& left) -> Status {
    auto rel = SafeRelative(e.name);
    if (!rel.ok()) return rel.status();
    // No entry may sit below a link (one from this archive, or one already in
    // dest): writing it would follow the link out of dest.
    std::string prefix;
    for (size_t i = rel->find('/'); i != std::string::npos; i = rel->find('/', i + 1)) {
      prefix = rel->substr(0, i);
      struct stat st {};
      if (link_names.count(prefix) ||
          (::lstat((dest / prefix).c_str(), &st) == 0 && S_ISLNK(st.st_mode))) {
        return InvalidArgument(
            "unsafe path in archive: '" + e.name + "' (below the link '" + prefix + "')",
            "extract only archives made by agent-factory");
      }
    }
    fs::path target = dest / *rel;
    std::error_code ec;
    if (e.type == '5') {
      fs::create_directories(target, ec);
      if (ec) return Internal("cannot create " + target.string() + ": " + ec.message(), "");
      dir_modes.emplace_back(target, e.mode & 07777);
      return Status();
    }
    if (e.type == '2') {
      // A link may point only within the extracted tree: one leading out
      // (absolute, or climbing with ..) would let whatever later writes at
      // its path write outside the data directory (say a `logs` link to
      // another user's directory).
      const fs::path to(e.link);
      const fs::path resolved = (fs::path(*rel).parent_path() / to).lexically_normal();
      if (e.link.empty() || to.is_absolute() || resolved.empty() || *resolved.begin() == "..") {
        return InvalidArgument("unsafe link in archive: '" + e.name + "' points to '" + e.link +
                                   "', outside the extracted files",
                               "extract only archives made by agent-factory");
      }
      links.push_back(e);
      links.back().name = *rel;
      link_names.insert(*rel);
      return Status();
    }
    if (!IsFile(e.type)) return Status();  // hard links, devices, FIFOs: not ours, skipped
    fs::create_directories(target.parent_path(), ec);
    int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      return Internal("cannot write " + target.string() + ": " + ErrnoText(),
                      "check the free space and permissions of " + dest.string());
    }
    std::vector<char> buf(1 << 16);
    Status ws;
    while (ws.ok() && left > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      ws = reader.ReadExact(buf.data(), n);
      if (ws.ok() && ::write(fd, buf.data(), n) != static_cast<ssize_t>(n)) {
        ws = Internal("cannot write " + target.string() + ": " + ErrnoText(),
                      "check the free space of " + dest.string());
      }
      if (ws.ok()) left -= n;
    }
    fchmod(fd, e.mode & 07777);
    struct timespec times[2] = {{e.mtime, 0}, {e.mtime, 0}};
    futimens(fd, times);
    ::close(fd);
    return ws;
  });
  if (!s.ok()) return s;
  for (const Entry& l : links) {
    fs::path target = dest / l.name;
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    fs::remove(target, ec);
    fs::create_symlink(l.link, target, ec);
    if (ec) return Internal("cannot create the link " + target.string() + ": " + ec.message(), "");
  }
  // Deepest first, so a read-only directory is made so after its contents.
  std::sort(dir_modes.begin(), dir_modes.end(),
            [](const auto& a, const auto& b) { return a.first.string() > b.first.string(); });
  for (const auto& [dir, mode] : dir_modes) ::chmod(dir.c_str(), mode == 0 ? 0700 : mode);
  return Status();
}

}  // namespace af
