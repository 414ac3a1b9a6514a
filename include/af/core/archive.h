#pragma once
// tar.gz files for backups and debug bundles: POSIX tar (ustar, with pax
// headers for long names) inside gzip, readable by `tar -xzf` and written by
// this code alone (no `tar` process, nothing to find on PATH).
//
// What is kept: regular files (contents, permission bits, modification
// time), directories and symbolic links (as links: their targets are never
// followed). Sockets, FIFOs and devices are skipped. Owners are not kept.
//
// Extraction is for archives from anywhere: an entry whose path is absolute
// or climbs out of the destination with "..", or whose parent is a link the
// archive made, is refused before anything is written outside; links are
// created after every file, so no file is written through one.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af {

class TarGzWriter {
 public:
  // Starts `out` (written as `out.partial` and renamed by Finish, so a crash
  // never leaves a half archive under the final name); mode 0600.
  static Result<std::unique_ptr<TarGzWriter>> Create(const std::filesystem::path& out);
  ~TarGzWriter();  // without Finish: removes the partial file
  TarGzWriter(const TarGzWriter&) = delete;
  TarGzWriter& operator=(const TarGzWriter&) = delete;

  // Adds `data` as the regular file `name` ("a/b.txt": relative, '/'-separated).
  Status AddData(const std::string& name, std::string_view data, unsigned mode = 0600);
  // Adds the file, directory (recursively) or link at `source` under `name`.
  // `skip(relative path)` returning true leaves an entry (and, for a
  // directory, everything under it) out. A file that vanishes meanwhile is
  // skipped; one that cannot be read is an error.
  Status AddPath(const std::string& name, const std::filesystem::path& source,
                 const std::function<bool(const std::string&)>& skip = nullptr);
  // Writes the end-of-archive blocks, flushes, and renames into place.
  Status Finish();

 private:
  struct Impl;
  explicit TarGzWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The names (and kinds) of the entries in an archive, in order.
struct ArchiveEntry {
  std::string name;
  char type = '0';  // '0' file, '5' directory, '2' symbolic link
  uint64_t size = 0;
};
Result<std::vector<ArchiveEntry>> ListTarGz(const std::filesystem::path& archive);

// Extracts every entry under `dest` (created 0700 when missing). Refuses, with
// nothing written outside `dest`, the unsafe entries described above; a
// damaged or truncated archive is InvalidArgument saying what was found.
Status ExtractTarGz(const std::filesystem::path& archive, const std::filesystem::path& dest);

// Reads one regular file's contents from an archive (NotFound when absent).
Result<std::string> ReadTarGzFile(const std::filesystem::path& archive, const std::string& name);

}  // namespace af
