#pragma once
// Moving a SQLite database into PostgreSQL (`agent-factory db import`).

#include <cstdint>
#include <string>

#include "af/core/status.h"

namespace af {

class Store;

// What ImportSqliteDatabase copied.
struct ImportReport {
  int64_t projects = 0, features = 0, tasks = 0, events = 0, agents = 0, llm_calls = 0,
          api_keys = 0;
  int64_t memories = 0, links = 0, documents = 0, chunks = 0;
  int64_t last_event_seq = 0;  // the highest seq copied (new events continue above it)
};

// Copies every record of the SQLite database file `sqlite_path` into `target`,
// which must be a PostgreSQL store (FailedPrecondition otherwise) holding no
// features, events, memories or documents yet (FailedPrecondition naming what
// it holds). The source is only read; it must be at this binary's schema
// version (FailedPrecondition with the `db migrate` command otherwise).
//
// Features, tasks, events (with their seqs, so an SSE client's Last-Event-ID
// stays meaningful), agents, model calls (so recorded answers are still
// replayed) and API keys are copied as they are, in one transaction: an
// error leaves the target without any of them. Memories, their links and
// knowledge documents then go through the store's own writes (the target
// keeps its full-text statistics) with their ids and times; they get new
// vector-index labels, so each process's knowledge index re-embeds them on
// its next start. A failure there names what was copied so far.
Result<ImportReport> ImportSqliteDatabase(const std::string& sqlite_path, Store& target);

}  // namespace af
