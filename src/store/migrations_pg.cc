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
      // Migration 2 (memories, memory links, knowledge documents and chunks,
      // full-text indexes) goes here, appended by the knowledge half
      // (pg_store_knowledge.cc). Later changes append {3, ...} and onwards.
  };
  return kMigrations;
}

}  // namespace af::store_internal
