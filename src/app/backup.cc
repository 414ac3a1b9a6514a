#include "af/app/backup.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "af/core/archive.h"
#include "af/core/private_files.h"
#include "af/core/strings.h"
#include "af/core/utc_time.h"
#include "af/store/store.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kManifest = "manifest.json";
constexpr const char* kDatabase = "agent-factory.db";
constexpr const char* kFormat = "agent-factory-backup";

// Removes a staging directory (and whatever is left in it) when it goes out
// of scope, whichever way the function returns.
struct RemoveOnExit {
  fs::path dir;
  ~RemoveOnExit() {
    std::error_code e;
    fs::remove_all(dir, e);
  }
};

// The database file of a SQLite URL ("" for anything else).
std::string SqlitePath(const std::string& url) {
  if (!StartsWith(url, "sqlite:") || url == "sqlite::memory:") return "";
  std::string path = url.substr(7);
  if (StartsWith(path, "//")) path = path.substr(2);
  return path;
}

// Options that open a database as it is (no migration).
StoreOptions AsIs(const std::string& url, int busy_timeout_ms = 5000) {
  StoreOptions o;
  o.url = url;
  o.migrate = false;
  o.busy_timeout = std::chrono::milliseconds(busy_timeout_ms);
  return o;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool IsPostgres(const std::string& url) {
  return StartsWith(url, "postgresql://") || StartsWith(url, "postgres://");
}

// Writes that fail on a full disk say so, whichever layer noticed.
Status DiskFullAware(const Status& s, const fs::path& where) {
  if (s.ok() || s.code() == Code::kResourceExhausted) return s;
  if (s.message().find("No space left") != std::string::npos) {
    return ResourceExhausted("disk full: " + s.message(),
                             "free some disk space on the file system holding " + where.string() +
                                 " (or choose another place), then retry");
  }
  return s;
}

// A directory beside `target` with a name nobody else uses.
fs::path TempBeside(const fs::path& target, const std::string& what) {
  std::random_device rd;
  std::ostringstream name;
  name << "." << target.filename().string() << "." << what << "-" << ::getpid() << "-" << std::hex
       << rd();
  return target.parent_path() / name.str();
}

// Data directory entries that are not state: never backed up.
bool NotState(const std::string& name, const std::string& db_name) {
  return name == "logs" || name == "backups" || name == "coordinator.lock" || name == db_name ||
         name == db_name + "-wal" || name == db_name + "-shm" || name == db_name + "-journal" ||
         EndsWith(name, ".partial");
}

// Copies the data directory's files (not the database) into the archive.
// Returns the names of the parts added.
Status AddFiles(TarGzWriter& out, const fs::path& data_dir, const std::string& db_name,
                const std::set<std::string>& also_skip, std::vector<std::string>* parts) {
  std::error_code ec;
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec) {
    return Internal("cannot list " + data_dir.string() + ": " + ec.message(),
                    "check the permissions of the data directory");
  }
  std::sort(entries.begin(), entries.end());
  // Not state: the lock files an interrupted git command leaves in .git/
  // (restored, they would block git; a project's own Cargo.lock or yarn.lock
  // elsewhere is kept) and the knowledge index's half-written files.
  auto skip_git_lock = [](const std::string& rel) {
    return StartsWith(rel, ".git/") && EndsWith(rel, ".lock");
  };
  auto skip_tmp = [](const std::string& rel) { return EndsWith(rel, ".tmp"); };
  for (const fs::path& entry : entries) {
    const std::string name = entry.filename().string();
    if (NotState(name, db_name) || also_skip.count(name)) continue;
    if (name == "workspaces" && fs::is_directory(entry, ec)) {
      std::vector<fs::path> repos;
      for (fs::directory_iterator it(entry, ec), end; !ec && it != end; it.increment(ec)) {
        repos.push_back(it->path());
      }
      std::sort(repos.begin(), repos.end());
      for (const fs::path& repo : repos) {
        const std::string base = "workspaces/" + repo.filename().string();
        // Refs (and everything else) first, objects last: a ref copied at
        // any moment names objects that already exist, and objects are
        // never removed (no automatic gc), so the copy has them all.
        AF_RETURN_IF_ERROR(out.AddPath(base, repo, [&](const std::string& rel) {
          return rel == ".git/objects" || skip_git_lock(rel);
        }));
        if (fs::is_directory(repo / ".git" / "objects", ec)) {
          AF_RETURN_IF_ERROR(out.AddPath(base + "/.git/objects", repo / ".git" / "objects"));
        }
      }
    } else {
      std::function<bool(const std::string&)> skip;
      if (name == "kb") skip = skip_tmp;
      AF_RETURN_IF_ERROR(out.AddPath(name, entry, skip));
    }
    parts->push_back(name);
  }
  return Status::Ok();
}

struct Counts {
  int64_t features = 0, events = 0, memories = 0, documents = 0, chunks = 0;
  json ToJson() const {
    return {{"features", features},
            {"events", events},
            {"memories", memories},
            {"documents", documents},
            {"chunks", chunks}};
  }
};

Result<Counts> CountStore(Store& store) {
  Counts c;
  FeatureFilter filter;
  filter.limit = 1;
  AF_ASSIGN_OR_RETURN(FeaturePage page, store.ListFeatures(filter));
  c.features = page.total;
  AF_RETURN_IF_ERROR(ForEachEvent(store, "", [&](const Event&) { ++c.events; }));
  AF_ASSIGN_OR_RETURN(KbCounts kb, store.CountKnowledge());
  c.memories = kb.memories + kb.archived_memories;
  c.documents = kb.documents;
  c.chunks = kb.chunks;
  return c;
}

// The newest schema version this binary knows.
Result<int> LatestSchemaVersion() {
  AF_ASSIGN_OR_RETURN(auto mem, Store::Open(AsIs("sqlite::memory:")));
  AF_ASSIGN_OR_RETURN(MigrationStatus st, mem->GetMigrationStatus());
  return st.latest_version;
}

Status WriteText(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out)
    return Internal("cannot write " + file.string(), "check the free space and permissions");
  return Status::Ok();
}

std::string ReadText(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Git keeps absolute paths for linked worktrees: <repo>/.git/worktrees/<id>/gitdir
// names the worktree's .git file, which names that admin directory back. In
// a restored copy both still point into the old data directory; they are
// rewritten from `old_roots` (the old repository root, as configured and
// canonical) to `new_root`. `staged_root` is where the repository sits now
// (the extraction directory, renamed to new_root afterwards). Worktrees
// outside the repository are left alone. Returns how many were rewritten.
Result<int> RepairWorktrees(const fs::path& staged_root, const std::vector<std::string>& old_roots,
                            const std::string& new_root) {
  int repaired = 0;
  std::error_code ec;
  const fs::path admin = staged_root / ".git" / "worktrees";
  if (!fs::is_directory(admin, ec)) return repaired;
  for (fs::directory_iterator it(admin, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path gitdir_file = it->path() / "gitdir";
    std::string old_path(Trim(ReadText(gitdir_file)));
    if (old_path.empty() || old_path[0] != '/') continue;  // relative paths move with the copy
    std::string rel;
    for (const std::string& root : old_roots) {
      if (!root.empty() && StartsWith(old_path, root + "/")) {
        rel = old_path.substr(root.size());  // "/.af/worktrees/<id>/.git"
        break;
      }
    }
    if (rel.empty()) continue;
    AF_RETURN_IF_ERROR(WriteText(gitdir_file, new_root + rel + "\n"));
    const fs::path dotgit = staged_root / fs::path(rel.substr(1));
    if (fs::is_regular_file(dotgit, ec)) {
      AF_RETURN_IF_ERROR(WriteText(dotgit, "gitdir: " + new_root + "/.git/worktrees/" +
                                               it->path().filename().string() + "\n"));
    }
    ++repaired;
  }
  return repaired;
}

// What is in a data directory, by name.
std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.push_back(it->path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

// --- lock ---------------------------------------------------------------------

Result<DataDirLock> DataDirLock::Acquire(const fs::path& data_dir) {
  const fs::path lock = data_dir / "coordinator.lock";
  std::error_code ec;
  if (!fs::exists(lock, ec)) return DataDirLock(-1);
  int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return FailedPrecondition("cannot open " + lock.string() + ": " + std::strerror(errno),
                              "check the permissions of the data directory");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return FailedPrecondition(
        "the data directory " + data_dir.string() +
            " is in use by a running agent-factory (serve or run holds " + lock.string() + ")",
        "stop that process first (Ctrl-C, or 'systemctl stop agent-factory'), or choose "
        "another directory with --data-dir");
  }
  return DataDirLock(fd);
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

// --- backup -------------------------------------------------------------------

Result<BackupReport> CreateBackup(const Config& config, const BackupOptions& options) {
  const std::string url = config.DatabaseUrl();
  if (IsPostgres(url)) {
    return FailedPrecondition(
        "backup copies the embedded SQLite store; this one is PostgreSQL",
        "back the database up with PostgreSQL's own tool, e.g. 'pg_dump --format=custom "
        "--file=agent-factory.dump \"$DATABASE_URL\"', and copy the data directory's kb/, "
        "workspaces/ and admin.key beside it");
  }
  const std::string db_path = SqlitePath(url);
  if (db_path.empty()) {
    return FailedPrecondition(
        "the database (" + url + ") is not a file: nothing durable to back up",
        "point DATABASE_URL at a SQLite file, or unset it");
  }
  const fs::path data_dir = config.data_dir;
  std::error_code ec;
  if (!fs::exists(db_path, ec)) {
    return FailedPrecondition("there is no database at " + db_path + ": nothing to back up",
                              "check --data-dir / AF_DATA_DIR (the directory 'serve' uses)");
  }
  const int64_t now = options.now_ms ? options.now_ms() : UnixNowMs();
  fs::path output = options.output;
  // No --output, or an existing directory: a dated file of its own there.
  const fs::path in_dir = output.empty()                 ? data_dir / "backups"
                          : fs::is_directory(output, ec) ? output
                                                         : fs::path();
  if (!in_dir.empty()) {
    // Two backups within a second get distinct names.
    const std::string stem = "agent-factory-backup-" + FormatUtc(now, "%Y%m%d-%H%M%S");
    output = in_dir / (stem + ".tar.gz");
    for (int n = 2; fs::exists(output, ec) && n < 100; ++n) {
      output = in_dir / (stem + "-" + std::to_string(n) + ".tar.gz");
    }
  }
  output = fs::absolute(output);
  if (fs::exists(output, ec)) {
    return AlreadyExists("the backup file " + output.string() + " already exists",
                         "choose a new file name with --output, or a directory to put a dated "
                         "file in");
  }
  if (std::error_code err = CreatePrivateDirectories(output.parent_path())) {
    return FailedPrecondition(
        "cannot create " + output.parent_path().string() + ": " + err.message(),
        "check the permissions, or choose another place with --output");
  }

  AF_ASSIGN_OR_RETURN(auto store, Store::Open(AsIs(url, config.database.busy_timeout_ms)));
  AF_ASSIGN_OR_RETURN(MigrationStatus schema, store->GetMigrationStatus());

  // The database copy waits beside the archive until it is packed.
  const fs::path staging = TempBeside(output, "staging");
  if (std::error_code err = CreatePrivateDirectories(staging)) {
    return FailedPrecondition("cannot create " + staging.string() + ": " + err.message(),
                              "check the permissions, or choose another place with --output");
  }
  const RemoveOnExit cleanup{staging};
  const fs::path db_copy = staging / kDatabase;
  AF_RETURN_IF_ERROR(DiskFullAware(store->BackupTo(db_copy.string()), output));
  store.reset();

  // Counted in the copy: the numbers describe exactly what the archive holds.
  Counts counts;
  {
    AF_ASSIGN_OR_RETURN(auto copy, Store::Open(AsIs("sqlite:" + db_copy.string())));
    AF_ASSIGN_OR_RETURN(counts, CountStore(*copy));
  }

  AF_ASSIGN_OR_RETURN(auto writer, TarGzWriter::Create(output));
  std::vector<std::string> parts = {kDatabase};
  // The files go into the archive after the database copy was taken, so the
  // manifest (which lists them) is written last.
  AF_RETURN_IF_ERROR(DiskFullAware(writer->AddPath(kDatabase, db_copy), output));
  // An archive written into the data directory itself must not pack itself.
  std::set<std::string> also_skip;
  if (fs::equivalent(output.parent_path(), data_dir, ec)) {
    also_skip = {output.filename().string(), output.filename().string() + ".partial",
                 staging.filename().string()};
  }
  AF_RETURN_IF_ERROR(DiskFullAware(
      AddFiles(*writer, data_dir, fs::path(db_path).filename().string(), also_skip, &parts),
      output));
  fs::path canonical = fs::weakly_canonical(data_dir, ec);
  json manifest = {{"format", kFormat},
                   {"format_version", kBackupFormatVersion},
                   {"agent_factory_version", AF_VERSION},
                   {"schema_version", schema.current_version},
                   {"created_at", FormatUtc(now, "%Y-%m-%dT%H:%M:%SZ")},
                   {"data_dir", data_dir.string()},
                   {"data_dir_canonical", ec ? data_dir.string() : canonical.string()},
                   {"counts", counts.ToJson()},
                   {"parts", parts}};
  AF_RETURN_IF_ERROR(DiskFullAware(writer->AddData(kManifest, manifest.dump(2) + "\n"), output));
  AF_RETURN_IF_ERROR(DiskFullAware(writer->Finish(), output));

  BackupReport report;
  report.path = output;
  report.size_bytes = fs::file_size(output, ec);
  report.manifest = std::move(manifest);
  return report;
}

// --- restore ------------------------------------------------------------------

Result<json> ReadBackupManifest(const fs::path& archive) {
  std::error_code ec;
  if (!fs::exists(archive, ec)) {
    return NotFound("no such file: " + archive.string(),
                    "give the path of a backup, e.g. <data_dir>/backups/"
                    "agent-factory-backup-YYYYMMDD-HHMMSS.tar.gz");
  }
  if (!fs::is_regular_file(archive, ec)) {
    return InvalidArgument(archive.string() + " is not a file", "give the path of a backup file");
  }
  const std::string bad_hint =
      "use another backup (the file may have been cut short while copying: compare its size "
      "with the original)";
  // The whole archive is read first: a file cut short is found before
  // anything is written.
  auto entries = ListTarGz(archive);
  if (!entries.ok()) {
    return InvalidArgument(archive.string() + " is not a readable agent-factory backup (" +
                               entries.status().message() + ")",
                           bad_hint);
  }
  bool has_db = false;
  for (const ArchiveEntry& e : *entries) has_db |= e.name == kDatabase && e.type == '0';
  auto text = ReadTarGzFile(archive, kManifest);
  if (!text.ok()) {
    return InvalidArgument(
        archive.string() + " is a tar.gz but not an agent-factory backup (" +
            (text.status().code() == Code::kNotFound ? std::string("it has no manifest.json")
                                                     : text.status().message()) +
            ")",
        "give a file written by 'agent-factory backup'");
  }
  json manifest = json::parse(*text, nullptr, false);
  if (!manifest.is_object() || manifest.value("format", "") != kFormat) {
    return InvalidArgument(archive.string() +
                               " has a manifest.json that is not an agent-factory "
                               "backup's",
                           "give a file written by 'agent-factory backup'");
  }
  const std::string made_by =
      "agent-factory " + manifest.value("agent_factory_version", std::string("?"));
  const int format = manifest.value("format_version", 0);
  if (format > kBackupFormatVersion) {
    return FailedPrecondition(archive.string() + " is a backup of format " +
                                  std::to_string(format) + " (made by " + made_by +
                                  "), newer than this binary reads (" +
                                  std::to_string(kBackupFormatVersion) + ")",
                              "restore it with " + made_by + " or newer");
  }
  AF_ASSIGN_OR_RETURN(int latest, LatestSchemaVersion());
  const int schema = manifest.value("schema_version", 0);
  if (schema > latest) {
    return FailedPrecondition(archive.string() + " holds a database of schema version " +
                                  std::to_string(schema) + " (made by " + made_by +
                                  "), newer than this binary knows (" + std::to_string(latest) +
                                  ")",
                              "restore it with " + made_by + " or newer");
  }
  if (!has_db) {
    return InvalidArgument(archive.string() + " holds no database (agent-factory.db is missing)",
                           bad_hint);
  }
  return manifest;
}

Result<RestoreReport> RestoreBackup(const Config& config, const fs::path& archive) {
  AF_ASSIGN_OR_RETURN(json manifest, ReadBackupManifest(archive));
  fs::path data_dir = fs::absolute(config.data_dir).lexically_normal();
  if (!data_dir.has_filename()) data_dir = data_dir.parent_path();  // "dir/" -> "dir"
  const std::string url = config.DatabaseUrl();
  const fs::path db_path = SqlitePath(url);
  if (db_path.empty() || fs::absolute(db_path).lexically_normal() != data_dir / kDatabase) {
    return FailedPrecondition(
        "restore puts the database in the data directory (" + (data_dir / kDatabase).string() +
            "), but the configured database is elsewhere",
        "unset DATABASE_URL (and database.url in agent-factory.toml) for the restore and "
        "for the server that uses the restored directory");
  }

  std::error_code ec;
  // A live directory is refused first, whatever it holds; the lock is kept
  // until the files are in place so no server starts on it meanwhile.
  std::optional<DataDirLock> lock;
  if (fs::exists(data_dir, ec)) {
    AF_ASSIGN_OR_RETURN(DataDirLock held, DataDirLock::Acquire(data_dir));
    lock.emplace(std::move(held));
    const std::string fix =
        "restore into another directory (--data-dir NEW_DIR), or run 'agent-factory reset' "
        "on this one first (after a backup if it holds anything you want)";
    if (fs::exists(data_dir / kDatabase, ec)) {
      return FailedPrecondition(
          "the data directory " + data_dir.string() + " already holds a database (" +
              (data_dir / kDatabase).string() + "); restore only writes into an empty one",
          fix);
    }
    std::string others;
    for (const std::string& e : Entries(data_dir)) {
      if (e == "backups" || e == "coordinator.lock") continue;
      others += (others.empty() ? "" : ", ") + e;
    }
    if (!others.empty()) {
      return FailedPrecondition("the data directory " + data_dir.string() +
                                    " is not empty (it holds " + others +
                                    "); restore only writes into an empty one",
                                fix);
    }
  }

  // Extracted beside the target, then renamed into it: nothing half-done
  // under the final name.
  if (std::error_code err = CreatePrivateDirectories(data_dir.parent_path())) {
    return FailedPrecondition(
        "cannot create " + data_dir.parent_path().string() + ": " + err.message(),
        "check the permissions, or choose another --data-dir");
  }
  const fs::path staging = TempBeside(data_dir, "restore");
  const RemoveOnExit cleanup{staging};
  AF_RETURN_IF_ERROR(DiskFullAware(ExtractTarGz(archive, staging), data_dir));
  fs::remove(staging / kManifest, ec);

  RestoreReport report;
  report.data_dir = data_dir;
  report.manifest = manifest;
  const std::string new_canonical =
      (fs::weakly_canonical(data_dir.parent_path(), ec) / data_dir.filename()).string();
  for (const std::string& project : Entries(staging / "workspaces")) {
    std::vector<std::string> old_roots;
    for (const char* key : {"data_dir_canonical", "data_dir"}) {
      std::string old = manifest.value(key, std::string());
      if (!old.empty()) old_roots.push_back(old + "/workspaces/" + project);
    }
    AF_ASSIGN_OR_RETURN(int n, RepairWorktrees(staging / "workspaces" / project, old_roots,
                                               new_canonical + "/workspaces/" + project));
    report.repaired_worktrees += n;
  }

  // Into place: the whole directory when there was none, else entry by entry
  // (undone if one fails) beside the backups/ it keeps.
  if (!fs::exists(data_dir, ec)) {
    fs::rename(staging, data_dir, ec);
    if (ec) {
      return Internal(
          "cannot rename " + staging.string() + " to " + data_dir.string() + ": " + ec.message(),
          "check the permissions of " + data_dir.parent_path().string());
    }
  } else {
    std::vector<std::string> moved;
    for (const std::string& e : Entries(staging)) {
      fs::rename(staging / e, data_dir / e, ec);
      if (ec) {
        const std::string why = ec.message();
        for (const std::string& m : moved) fs::rename(data_dir / m, staging / m, ec);
        return Internal("cannot move " + e + " into " + data_dir.string() + ": " + why,
                        "check the permissions of the data directory; nothing was restored");
      }
      moved.push_back(e);
    }
  }
  fs::permissions(data_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  return report;
}

// --- reset --------------------------------------------------------------------

Result<ResetReport> ResetDataDir(const Config& config) {
  const fs::path data_dir = config.data_dir;
  std::error_code ec;
  if (!fs::is_directory(data_dir, ec)) {
    return NotFound("there is no data directory at " + data_dir.string() + ": nothing to reset",
                    "check --data-dir / AF_DATA_DIR");
  }
  AF_ASSIGN_OR_RETURN(DataDirLock lock, DataDirLock::Acquire(data_dir));
  std::set<std::string> state = {"kb", "workspaces", "artifacts", "logs", "admin.key"};
  const std::string url = config.DatabaseUrl();
  const fs::path db_path = SqlitePath(url);
  ResetReport report;
  if (!db_path.empty()) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      fs::path p = db_path.string() + suffix;
      if (fs::exists(p, ec)) {
        fs::remove(p, ec);
        if (ec) {
          return Internal("cannot remove " + p.string() + ": " + ec.message(),
                          "check its permissions, then run reset again");
        }
        report.removed.push_back(p.string());
      }
    }
  }
  for (const std::string& e : Entries(data_dir)) {
    if (state.count(e) == 0) {
      if (e != "coordinator.lock") report.kept.push_back((data_dir / e).string());
      continue;
    }
    fs::remove_all(data_dir / e, ec);
    if (ec) {
      return Internal("cannot remove " + (data_dir / e).string() + ": " + ec.message(),
                      "check its permissions, then run reset again");
    }
    report.removed.push_back((data_dir / e).string());
  }
  return report;
}

}  // namespace af
