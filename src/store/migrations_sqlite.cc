#include "store/migrations_sqlite.h"

namespace af::store_internal {

const std::vector<SqlMigration>& SqliteMigrations() {
  static const std::vector<SqlMigration> kMigrations = {
      {1, "projects, features, tasks and events", R"sql(
CREATE TABLE projects (
  name       TEXT PRIMARY KEY,
  created_ms INTEGER NOT NULL
);
CREATE TABLE features (
  id         TEXT PRIMARY KEY,
  project    TEXT NOT NULL REFERENCES projects(name),
  title      TEXT NOT NULL,
  status     TEXT NOT NULL,
  priority   TEXT NOT NULL,
  request    TEXT NOT NULL,
  reason     TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX features_by_created ON features(created_ms, id);
CREATE INDEX features_by_status ON features(status, created_ms);
CREATE INDEX features_by_project ON features(project, created_ms);
CREATE TABLE tasks (
  id             TEXT PRIMARY KEY,
  feature_id     TEXT NOT NULL REFERENCES features(id) ON DELETE CASCADE,
  position       INTEGER NOT NULL,
  title          TEXT NOT NULL,
  description    TEXT NOT NULL,
  role           TEXT NOT NULL,
  status         TEXT NOT NULL,
  files          TEXT NOT NULL,
  attempts       INTEGER NOT NULL DEFAULT 0,
  assigned_agent TEXT NOT NULL DEFAULT '',
  result         TEXT NOT NULL,
  created_ms     INTEGER NOT NULL,
  updated_ms     INTEGER NOT NULL
);
CREATE INDEX tasks_by_feature ON tasks(feature_id, position);
CREATE INDEX tasks_by_status ON tasks(status);
CREATE TABLE task_dependencies (
  task_id    TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
  depends_on TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
  position   INTEGER NOT NULL,
  PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX task_dependencies_by_target ON task_dependencies(depends_on);
-- AUTOINCREMENT: a seq is never reused, even after the newest rows are deleted,
-- because SSE clients resume from the last seq they saw.
CREATE TABLE events (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  type       TEXT NOT NULL,
  feature_id TEXT NOT NULL DEFAULT '',
  task_id    TEXT NOT NULL DEFAULT '',
  agent      TEXT NOT NULL DEFAULT '',
  ts_ms      INTEGER NOT NULL,
  data       TEXT NOT NULL
);
CREATE INDEX events_by_feature ON events(feature_id, seq);
)sql"},
      {2, "agents and llm_calls", R"sql(
CREATE TABLE agents (
  id                TEXT PRIMARY KEY,
  role              TEXT NOT NULL,
  state             TEXT NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL,
  current_task      TEXT NOT NULL DEFAULT '',
  counters          TEXT NOT NULL,
  host              TEXT NOT NULL DEFAULT '',
  pid               INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE llm_calls (
  id            TEXT PRIMARY KEY,
  feature_id    TEXT NOT NULL DEFAULT '',
  task_id       TEXT NOT NULL DEFAULT '',
  role          TEXT NOT NULL DEFAULT '',
  provider      TEXT NOT NULL DEFAULT '',
  model         TEXT NOT NULL DEFAULT '',
  input_tokens  INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  cost_usd      REAL NOT NULL DEFAULT 0,
  latency_ms    INTEGER NOT NULL DEFAULT 0,
  status        TEXT NOT NULL,
  error         TEXT NOT NULL DEFAULT '',
  request_hash  TEXT NOT NULL DEFAULT '',
  response      TEXT NOT NULL,
  created_ms    INTEGER NOT NULL
);
CREATE INDEX llm_calls_by_request_hash ON llm_calls(request_hash, created_ms);
CREATE INDEX llm_calls_by_feature ON llm_calls(feature_id, created_ms);
CREATE INDEX llm_calls_by_created ON llm_calls(created_ms);
)sql"},
      {3, "api_keys", R"sql(
CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL,
  key_hash     TEXT NOT NULL UNIQUE,
  prefix       TEXT NOT NULL DEFAULT '',
  permissions  TEXT NOT NULL,
  created_ms   INTEGER NOT NULL,
  last_used_ms INTEGER NOT NULL DEFAULT 0,
  revoked      INTEGER NOT NULL DEFAULT 0
);
)sql"},
      {4, "memories", R"sql(
CREATE TABLE memories (
  id           TEXT PRIMARY KEY,
  namespace    TEXT NOT NULL,
  content      TEXT NOT NULL,
  summary      TEXT NOT NULL DEFAULT '',
  type         TEXT NOT NULL,
  importance   INTEGER NOT NULL,
  tags         TEXT NOT NULL,
  source       TEXT NOT NULL,
  created_ms   INTEGER NOT NULL,
  updated_ms   INTEGER NOT NULL,
  accessed_ms  INTEGER NOT NULL DEFAULT 0,
  access_count INTEGER NOT NULL DEFAULT 0,
  archived     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX memories_by_namespace ON memories(namespace, created_ms);
)sql"},
      {5, "knowledge", R"sql(
-- One row: the knowledge generation (raised by every write that adds or
-- removes a chunk or memory label, so a vector index can tell it is behind)
-- and the next memory label (a counter, so a label is never handed out twice).
CREATE TABLE kb_meta (
  id                INTEGER PRIMARY KEY CHECK (id = 1),
  generation        INTEGER NOT NULL,
  next_memory_label INTEGER NOT NULL
);
ALTER TABLE memories ADD COLUMN superseded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE memories ADD COLUMN vector_label INTEGER;
-- Existing memories get distinct labels: their rowids.
UPDATE memories SET vector_label = rowid;
CREATE UNIQUE INDEX memories_by_label ON memories(vector_label);
INSERT INTO kb_meta (id, generation, next_memory_label)
  SELECT 1, 1, COALESCE(MAX(vector_label), 0) + 1 FROM memories;
CREATE TABLE memory_links (
  from_id    TEXT NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
  to_id      TEXT NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
  type       TEXT NOT NULL,
  strength   REAL NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (from_id, to_id, type)
);
CREATE INDEX memory_links_by_to ON memory_links(to_id);
CREATE TABLE kb_documents (
  id           TEXT PRIMARY KEY,
  namespace    TEXT NOT NULL,
  source       TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  provenance   TEXT NOT NULL,
  chunk_count  INTEGER NOT NULL,
  created_ms   INTEGER NOT NULL,
  updated_ms   INTEGER NOT NULL,
  UNIQUE (namespace, source)
);
-- AUTOINCREMENT: a label is never reused, even after the newest chunks go,
-- because the vector index keys its vectors by label.
CREATE TABLE kb_chunks (
  label       INTEGER PRIMARY KEY AUTOINCREMENT,
  document_id TEXT NOT NULL REFERENCES kb_documents(id) ON DELETE CASCADE,
  ordinal     INTEGER NOT NULL,
  heading     TEXT NOT NULL,
  line_start  INTEGER NOT NULL,
  line_end    INTEGER NOT NULL,
  content     TEXT NOT NULL
);
CREATE INDEX kb_chunks_by_document ON kb_chunks(document_id, ordinal);
-- Full-text indexes over the rows above (external content: the text is stored
-- once). The triggers keep them in step inside every writing transaction.
-- '_' stays a separator so that parse_config matches a search for config.
CREATE VIRTUAL TABLE kb_chunks_fts USING fts5(
  content, heading, content = 'kb_chunks', content_rowid = 'label',
  tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER kb_chunks_fts_insert AFTER INSERT ON kb_chunks BEGIN
  INSERT INTO kb_chunks_fts (rowid, content, heading)
    VALUES (new.label, new.content, new.heading);
END;
CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN
  INSERT INTO kb_chunks_fts (kb_chunks_fts, rowid, content, heading)
    VALUES ('delete', old.label, old.content, old.heading);
END;
CREATE TRIGGER kb_chunks_fts_update AFTER UPDATE OF label, content, heading ON kb_chunks BEGIN
  INSERT INTO kb_chunks_fts (kb_chunks_fts, rowid, content, heading)
    VALUES ('delete', old.label, old.content, old.heading);
  INSERT INTO kb_chunks_fts (rowid, content, heading)
    VALUES (new.label, new.content, new.heading);
END;
CREATE VIRTUAL TABLE memories_fts USING fts5(
  content, summary, tags, content = 'memories', content_rowid = 'vector_label',
  tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
  INSERT INTO memories_fts (rowid, content, summary, tags)
    VALUES (new.vector_label, new.content, new.summary, new.tags);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
  INSERT INTO memories_fts (memories_fts, rowid, content, summary, tags)
    VALUES ('delete', old.vector_label, old.content, old.summary, old.tags);
END;
-- Only the indexed columns: marking memories accessed does not touch the index.
CREATE TRIGGER memories_fts_update
  AFTER UPDATE OF vector_label, content, summary, tags ON memories BEGIN
  INSERT INTO memories_fts (memories_fts, rowid, content, summary, tags)
    VALUES ('delete', old.vector_label, old.content, old.summary, old.tags);
  INSERT INTO memories_fts (rowid, content, summary, tags)
    VALUES (new.vector_label, new.content, new.summary, new.tags);
END;
INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');
)sql"},
      {6, "full-text term statistics", R"sql(
-- How many rows hold each indexed term: searches drop query words so common
-- that scoring every row holding them would cost more than they tell.
CREATE VIRTUAL TABLE kb_chunks_fts_vocab USING fts5vocab(kb_chunks_fts, row);
CREATE VIRTUAL TABLE memories_fts_vocab USING fts5vocab(memories_fts, row);
)sql"},
      {7, "today's model cost from an index", R"sql(
-- The daily budget, checked before every model call, sums the cost of the
-- day's calls: read from this index alone, not from each call's row with
-- its request and response (2,000 calls: 1.7 -> 0.1 ms per check).
CREATE INDEX llm_calls_cost_by_created ON llm_calls(created_ms, cost_usd);
DROP INDEX llm_calls_by_created;
)sql"},
  };
  return kMigrations;
}

}  // namespace af::store_internal
