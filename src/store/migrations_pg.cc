#include "store/migrations_pg.h"

namespace af::store_internal {

// Types follow the SQLite schema so both backends read the same records:
// times are unix milliseconds (BIGINT), JSON values are TEXT (parsed by the
// store, as in SQLite), booleans are BOOLEAN.
const std::vector<SqlMigration>& PgMigrations() {
  static const std::vector<SqlMigration> kMigrations = {
      {1, "projects, features, tasks, events, agents, llm_calls and api_keys", R"sql(
CREATE TABLE projects (
  name       TEXT PRIMARY KEY,
  created_ms BIGINT NOT NULL
);
CREATE TABLE features (
  id         TEXT PRIMARY KEY,
  project    TEXT NOT NULL REFERENCES projects(name),
  title      TEXT NOT NULL,
  status     TEXT NOT NULL,
  priority   TEXT NOT NULL,
  request    TEXT NOT NULL,
  reason     TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX features_by_created ON features(created_ms, id);
CREATE INDEX features_by_status ON features(status, created_ms);
CREATE INDEX features_by_project ON features(project, created_ms);
CREATE TABLE tasks (
  id             TEXT PRIMARY KEY,
  feature_id     TEXT NOT NULL REFERENCES features(id) ON DELETE CASCADE,
  position       BIGINT NOT NULL,
  title          TEXT NOT NULL,
  description    TEXT NOT NULL,
  role           TEXT NOT NULL,
  status         TEXT NOT NULL,
  files          TEXT NOT NULL,
  attempts       BIGINT NOT NULL DEFAULT 0,
  assigned_agent TEXT NOT NULL DEFAULT '',
  result         TEXT NOT NULL,
  created_ms     BIGINT NOT NULL,
  updated_ms     BIGINT NOT NULL
);
CREATE INDEX tasks_by_feature ON tasks(feature_id, position);
CREATE INDEX tasks_by_status ON tasks(status);
CREATE TABLE task_dependencies (
  task_id    TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
  depends_on TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
  position   BIGINT NOT NULL,
  PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX task_dependencies_by_target ON task_dependencies(depends_on);
-- The last seq handed out, in one row. An appender takes the next seq with
-- UPDATE ... RETURNING inside its own transaction, so the row lock orders
-- appenders: seqs commit (become visible) in ascending order and a reader
-- of `seq > after` never skips one that commits late. A SEQUENCE would not
-- do: its values are handed out at once and may commit in any order. Never
-- lowered, so a seq is never reused even after rows are deleted.
CREATE TABLE event_seq (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  last_seq BIGINT NOT NULL
);
INSERT INTO event_seq (id, last_seq) VALUES (1, 0);
CREATE TABLE events (
  seq        BIGINT PRIMARY KEY,
  type       TEXT NOT NULL,
  feature_id TEXT NOT NULL DEFAULT '',
  task_id    TEXT NOT NULL DEFAULT '',
  agent      TEXT NOT NULL DEFAULT '',
  ts_ms      BIGINT NOT NULL,
  data       TEXT NOT NULL
);
CREATE INDEX events_by_feature ON events(feature_id, seq);
CREATE TABLE agents (
  id                TEXT PRIMARY KEY,
  role              TEXT NOT NULL,
  state             TEXT NOT NULL,
  last_heartbeat_ms BIGINT NOT NULL,
  current_task      TEXT NOT NULL DEFAULT '',
  counters          TEXT NOT NULL,
  host              TEXT NOT NULL DEFAULT '',
  pid               BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE llm_calls (
  id            TEXT PRIMARY KEY,
  feature_id    TEXT NOT NULL DEFAULT '',
  task_id       TEXT NOT NULL DEFAULT '',
  role          TEXT NOT NULL DEFAULT '',
  provider      TEXT NOT NULL DEFAULT '',
  model         TEXT NOT NULL DEFAULT '',
  input_tokens  BIGINT NOT NULL DEFAULT 0,
  output_tokens BIGINT NOT NULL DEFAULT 0,
  cost_usd      DOUBLE PRECISION NOT NULL DEFAULT 0,
  latency_ms    BIGINT NOT NULL DEFAULT 0,
  status        TEXT NOT NULL,
  error         TEXT NOT NULL DEFAULT '',
  request_hash  TEXT NOT NULL DEFAULT '',
  response      TEXT NOT NULL,
  created_ms    BIGINT NOT NULL
);
CREATE INDEX llm_calls_by_request_hash ON llm_calls(request_hash, created_ms);
CREATE INDEX llm_calls_by_feature ON llm_calls(feature_id, created_ms);
CREATE INDEX llm_calls_by_created ON llm_calls(created_ms);
CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL,
  key_hash     TEXT NOT NULL UNIQUE,
  prefix       TEXT NOT NULL DEFAULT '',
  permissions  TEXT NOT NULL,
  created_ms   BIGINT NOT NULL,
  last_used_ms BIGINT NOT NULL DEFAULT 0,
  revoked      BOOLEAN NOT NULL DEFAULT FALSE
);
)sql"},
      // Memories and the knowledge base (pg_store_knowledge.cc). Full text:
      // the store writes each row's tsvector itself (the words as it cuts
      // them, see knowledge_rules.h) and keeps the term statistics and
      // totals BM25 needs in the same transaction.
      {2, "memories, memory links and the knowledge base", R"sql(
-- Knowledge counters, one row: the generation (raised in the transaction of
-- every write that adds or removes a chunk or memory label, archiving and
-- superseding included, so a vector index synced at another value knows to
-- repair) and the totals BM25 needs (rows and words of each full-text table),
-- kept by the same writes so a search never counts the tables. Every such
-- write locks this row first, so knowledge writes never deadlock each other.
CREATE TABLE kb_meta (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  generation   BIGINT NOT NULL,
  chunk_rows   BIGINT NOT NULL,
  chunk_words  BIGINT NOT NULL,
  memory_rows  BIGINT NOT NULL,
  memory_words BIGINT NOT NULL
);
INSERT INTO kb_meta VALUES (1, 1, 0, 0, 0, 0);
-- How many chunks / memories hold each word (BM25's document frequency, and
-- how a search tells a very common word from a rare one), kept by the writes.
CREATE TABLE kb_terms (
  term     TEXT COLLATE "C" PRIMARY KEY,
  chunks   BIGINT NOT NULL DEFAULT 0,
  memories BIGINT NOT NULL DEFAULT 0
);
-- Labels are the rows' keys in the vector index: sequences never hand out a
-- value twice, even when a transaction rolls back or the newest row goes.
CREATE SEQUENCE memory_labels;
CREATE SEQUENCE chunk_labels;
-- fts: the words of content, summary and tags as the store cuts them (one
-- rule for rows and queries), written with the row; words: how many there
-- are (BM25's document length).
CREATE TABLE memories (
  id            TEXT COLLATE "C" PRIMARY KEY,
  namespace     TEXT COLLATE "C" NOT NULL,
  content       TEXT NOT NULL,
  summary       TEXT NOT NULL DEFAULT '',
  type          TEXT COLLATE "C" NOT NULL,
  importance    INTEGER NOT NULL,
  tags          TEXT NOT NULL,
  source        TEXT NOT NULL,
  created_ms    BIGINT NOT NULL,
  updated_ms    BIGINT NOT NULL,
  accessed_ms   BIGINT NOT NULL DEFAULT 0,
  access_count  BIGINT NOT NULL DEFAULT 0,
  archived      BOOLEAN NOT NULL DEFAULT FALSE,
  superseded_by TEXT COLLATE "C" NOT NULL DEFAULT '',
  vector_label  BIGINT NOT NULL UNIQUE,
  words         INTEGER NOT NULL,
  fts           TSVECTOR NOT NULL
);
CREATE INDEX memories_by_namespace ON memories (namespace, created_ms);
CREATE INDEX memories_fts ON memories USING GIN (fts);
CREATE TABLE memory_links (
  from_id    TEXT COLLATE "C" NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
  to_id      TEXT COLLATE "C" NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
  type       TEXT COLLATE "C" NOT NULL,
  strength   DOUBLE PRECISION NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  PRIMARY KEY (from_id, to_id, type)
);
CREATE INDEX memory_links_by_to ON memory_links (to_id);
CREATE TABLE kb_documents (
  id           TEXT COLLATE "C" PRIMARY KEY,
  namespace    TEXT COLLATE "C" NOT NULL,
  source       TEXT COLLATE "C" NOT NULL,
  content_hash TEXT NOT NULL,
  provenance   TEXT NOT NULL,
  chunk_count  BIGINT NOT NULL,
  created_ms   BIGINT NOT NULL,
  updated_ms   BIGINT NOT NULL,
  UNIQUE (namespace, source)
);
CREATE TABLE kb_chunks (
  label       BIGINT PRIMARY KEY,
  document_id TEXT COLLATE "C" NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
  ordinal     INTEGER NOT NULL,
  heading     TEXT NOT NULL,
  line_start  INTEGER NOT NULL,
  line_end    INTEGER NOT NULL,
  content     TEXT NOT NULL,
  words       INTEGER NOT NULL,
  fts         TSVECTOR NOT NULL
);
CREATE INDEX kb_chunks_by_document ON kb_chunks (document_id, ordinal);
CREATE INDEX kb_chunks_fts ON kb_chunks USING GIN (fts);
-- fts stays in the row (compressed) while content goes out of line first:
-- a search reads fts of every row it scores and content of none. Measured
-- on 20,000 chunks of 120 words: scoring 760 rows read 724 buffers instead
-- of 2,968 (1.8 ms instead of 15 ms).
ALTER TABLE kb_chunks ALTER COLUMN fts SET STORAGE MAIN;
ALTER TABLE memories ALTER COLUMN fts SET STORAGE MAIN;
)sql"},
      {3, "today's model cost from an index", R"sql(
-- The daily budget, checked before every model call, sums the cost of the
-- day's calls: an index-only scan instead of reading each call's row.
CREATE INDEX llm_calls_cost_by_created ON llm_calls (created_ms) INCLUDE (cost_usd);
DROP INDEX llm_calls_by_created;
)sql"},
  };
  return kMigrations;
}

}  // namespace af::store_internal
