#pragma once
// Backup, restore and reset of a data directory (`agent-factory backup`,
// `restore`, `reset`).
//
// A backup is one tar.gz (af/core/archive.h) holding:
//   manifest.json      what the archive is: format and its version, the
//                      versions of the program and the schema, when, the data
//                      directory it came from, counts, the list of parts
//   agent-factory.db   the store, copied as of one moment (Store::BackupTo)
//   kb/, workspaces/, artifacts/, admin.key, ...
//                      every other entry of the data directory, except what
//                      is not state: logs/, backups/, coordinator.lock and the
//                      database's own files (the copy replaces them)
// It is taken ONLINE: a server may keep running on the directory. The
// database is copied first and the files after, so the files are never older
// than the database describes (what a crash at that moment would leave, which
// the coordinator's resume handles). In git repositories the refs are copied
// before the objects (objects are only ever added), so every copied ref finds
// its commit; lock files (*.lock) are left out, as they are only left behind
// by an interrupted git command.
//
// Restore writes into an empty (or missing) data directory only, refuses a
// live one, validates the whole archive before writing anything, extracts
// beside the target and renames into place (a failure leaves nothing), and
// rewrites the absolute paths git keeps for worktrees so that they point into
// the new directory.
//
// A data directory is live while a coordinator (serve or run) holds the flock
// on <data_dir>/coordinator.lock.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "af/core/config.h"
#include "af/core/status.h"

namespace af {

// The archive format this binary writes; it reads this version and older.
inline constexpr int kBackupFormatVersion = 1;

struct BackupOptions {
  // Empty: <data_dir>/backups/agent-factory-backup-<UTC yyyymmdd-HHMMSS>.tar.gz;
  // an existing directory: a file so named in it; otherwise the file to write.
  std::filesystem::path output;
  // Clock seam (unix milliseconds); empty = the system clock.
  std::function<int64_t()> now_ms;
};

struct BackupReport {
  std::filesystem::path path;  // the archive written (mode 0600, its directory 0700)
  uint64_t size_bytes = 0;
  nlohmann::json manifest;  // as stored in the archive
};

// Backs up the data directory of `config`. FailedPrecondition (with the tool
// to use) for a PostgreSQL or in-memory database, or when there is no
// database yet; ResourceExhausted when the disk fills (nothing is left
// behind); AlreadyExists when the output file exists.
Result<BackupReport> CreateBackup(const Config& config, const BackupOptions& options = {});

// Reads and checks a backup without extracting it: the whole archive must be
// readable (a truncated or damaged file is InvalidArgument), be an
// agent-factory backup (manifest.json and the database present) of a format
// and schema this binary knows (FailedPrecondition naming both versions
// otherwise). Returns the manifest.
Result<nlohmann::json> ReadBackupManifest(const std::filesystem::path& archive);

struct RestoreReport {
  std::filesystem::path data_dir;
  nlohmann::json manifest;
  int repaired_worktrees = 0;  // worktrees whose git paths were rewritten
};

// Restores `archive` into config.data_dir (see the top of this file).
// FailedPrecondition when the directory holds a database or other state
// (hint: another --data-dir, or `reset` first), when it is live, or when
// DATABASE_URL names a database outside it.
Result<RestoreReport> RestoreBackup(const Config& config, const std::filesystem::path& archive);

// Holds the data directory's coordinator lock (so no server starts meanwhile)
// until destroyed. FailedPrecondition when a running server or run holds it.
class DataDirLock {
 public:
  static Result<DataDirLock> Acquire(const std::filesystem::path& data_dir);
  DataDirLock(DataDirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  DataDirLock& operator=(DataDirLock&&) = delete;
  ~DataDirLock();

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;  // -1 when the directory has no lock file (nothing can hold it)
};

struct ResetReport {
  std::vector<std::string> removed;  // paths removed
  std::vector<std::string> kept;     // entries left: backups/ and anything not ours
};

// Deletes the state of config.data_dir: the database (and its -wal/-shm
// files), kb/, workspaces/, artifacts/, logs/ and admin.key. Keeps backups/
// and any file it does not know. FailedPrecondition when live; NotFound when
// the directory does not exist.
Result<ResetReport> ResetDataDir(const Config& config);

}  // namespace af
