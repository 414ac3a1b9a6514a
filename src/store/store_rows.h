#pragma once
// Internal: how a stored row becomes a record, once for every backend. The
// tables have the same columns in SQLite and PostgreSQL, so each reader
// below is written once, with its select list (AF_*_COLS), against a row that
// offers, for column c (0-based, in the order of the select list):
//   std::string Text(int c)    "" for NULL
//   int64_t Int(int c)         0 for NULL
//   double Real(int c)         0 for NULL
//   bool Bool(int c)           false for NULL
//   nlohmann::json Json(int c) a JSON text column, null for NULL or bad text
// (SQLite: the prepared statement; PostgreSQL: PgRow in pg_store.h).

#include "af/store/types.h"
#include "store/store_rules.h"

// The select list of each reader below, for statements on either backend.
#define AF_FEATURE_COLS \
  "id, project, title, status, priority, request, reason, created_ms, updated_ms"
#define AF_TASK_COLS                                                                            \
  "id, feature_id, title, description, role, status, files, attempts, assigned_agent, result, " \
  "created_ms, updated_ms"
#define AF_EVENT_COLS "seq, type, feature_id, task_id, agent, ts_ms, data"
#define AF_AGENT_COLS "id, role, state, last_heartbeat_ms, current_task, counters, host, pid"
#define AF_LLM_COLS                                                                         \
  "id, feature_id, task_id, role, provider, model, input_tokens, output_tokens, cost_usd, " \
  "latency_ms, status, error, request_hash, response, created_ms"
#define AF_KEY_COLS "id, name, key_hash, prefix, permissions, created_ms, last_used_ms, revoked"
#define AF_MEMORY_COLS                                                                        \
  "id, namespace, content, summary, type, importance, tags, source, created_ms, updated_ms, " \
  "accessed_ms, access_count, archived, superseded_by, vector_label"
#define AF_LINK_COLS "from_id, to_id, type, strength, created_ms, updated_ms"
#define AF_DOC_COLS \
  "id, namespace, source, content_hash, provenance, chunk_count, created_ms, updated_ms"

namespace af::store_internal {

// Columns: id, project, title, status, priority, request, reason, created_ms,
// updated_ms.
template <typename Row>
Feature ReadFeature(const Row& r) {
  Feature f;
  f.id = r.Text(0);
  f.project = r.Text(1);
  f.title = r.Text(2);
  f.status = r.Text(3);
  f.priority = r.Text(4);
  f.request = r.Json(5);
  f.reason = r.Text(6);
  f.created_ms = r.Int(7);
  f.updated_ms = r.Int(8);
  return f;
}

// Columns: id, feature_id, title, description, role, status, files, attempts,
// assigned_agent, result, created_ms, updated_ms. Dependencies are another
// table: the caller adds them.
template <typename Row>
Task ReadTask(const Row& r) {
  Task t;
  t.id = r.Text(0);
  t.feature_id = r.Text(1);
  t.title = r.Text(2);
  t.description = r.Text(3);
  t.role = r.Text(4);
  t.status = r.Text(5);
  t.files = StringList(r.Json(6));
  t.attempts = static_cast<int>(r.Int(7));
  t.assigned_agent = r.Text(8);
  t.result = r.Json(9);
  t.created_ms = r.Int(10);
  t.updated_ms = r.Int(11);
  return t;
}

// Columns: seq, type, feature_id, task_id, agent, ts_ms, data.
template <typename Row>
Event ReadEvent(const Row& r) {
  Event e;
  e.seq = r.Int(0);
  e.type = r.Text(1);
  e.feature_id = r.Text(2);
  e.task_id = r.Text(3);
  e.agent = r.Text(4);
  e.ts_ms = r.Int(5);
  e.data = r.Json(6);
  return e;
}

// Columns: id, role, state, last_heartbeat_ms, current_task, counters, host,
// pid.
template <typename Row>
AgentRecord ReadAgent(const Row& r) {
  AgentRecord a;
  a.id = r.Text(0);
  a.role = r.Text(1);
  a.state = r.Text(2);
  a.last_heartbeat_ms = r.Int(3);
  a.current_task = r.Text(4);
  a.counters = r.Json(5);
  a.host = r.Text(6);
  a.pid = r.Int(7);
  return a;
}

// Columns: id, feature_id, task_id, role, provider, model, input_tokens,
// output_tokens, cost_usd, latency_ms, status, error, request_hash, response,
// created_ms.
template <typename Row>
LlmCall ReadLlmCall(const Row& r) {
  LlmCall c;
  c.id = r.Text(0);
  c.feature_id = r.Text(1);
  c.task_id = r.Text(2);
  c.role = r.Text(3);
  c.provider = r.Text(4);
  c.model = r.Text(5);
  c.input_tokens = r.Int(6);
  c.output_tokens = r.Int(7);
  c.cost_usd = r.Real(8);
  c.latency_ms = r.Int(9);
  c.status = r.Text(10);
  c.error = r.Text(11);
  c.request_hash = r.Text(12);
  c.response = r.Json(13);
  c.created_ms = r.Int(14);
  return c;
}

// Columns: id, name, key_hash, prefix, permissions, created_ms, last_used_ms,
// revoked.
template <typename Row>
ApiKey ReadApiKey(const Row& r) {
  ApiKey k;
  k.id = r.Text(0);
  k.name = r.Text(1);
  k.key_hash = r.Text(2);
  k.prefix = r.Text(3);
  k.permissions = StringList(r.Json(4));
  k.created_ms = r.Int(5);
  k.last_used_ms = r.Int(6);
  k.revoked = r.Bool(7);
  return k;
}

// Columns: id, namespace, content, summary, type, importance, tags, source,
// created_ms, updated_ms, accessed_ms, access_count, archived, superseded_by,
// vector_label.
template <typename Row>
Memory ReadMemory(const Row& r) {
  Memory m;
  m.id = r.Text(0);
  m.ns = r.Text(1);
  m.content = r.Text(2);
  m.summary = r.Text(3);
  m.type = r.Text(4);
  m.importance = static_cast<int>(r.Int(5));
  m.tags = StringList(r.Json(6));
  m.source = r.Json(7);
  m.created_ms = r.Int(8);
  m.updated_ms = r.Int(9);
  m.accessed_ms = r.Int(10);
  m.access_count = r.Int(11);
  m.archived = r.Bool(12);
  m.superseded_by = r.Text(13);
  m.vector_label = r.Int(14);
  return m;
}

// Columns: from_id, to_id, type, strength, created_ms, updated_ms.
template <typename Row>
MemoryLink ReadLink(const Row& r) {
  MemoryLink l;
  l.from_id = r.Text(0);
  l.to_id = r.Text(1);
  l.type = r.Text(2);
  l.strength = r.Real(3);
  l.created_ms = r.Int(4);
  l.updated_ms = r.Int(5);
  return l;
}

// Columns: id, namespace, source, content_hash, provenance, chunk_count,
// created_ms, updated_ms.
template <typename Row>
KbDocument ReadDocument(const Row& r) {
  KbDocument d;
  d.id = r.Text(0);
  d.ns = r.Text(1);
  d.source = r.Text(2);
  d.content_hash = r.Text(3);
  d.provenance = r.Json(4);
  d.chunk_count = r.Int(5);
  d.created_ms = r.Int(6);
  d.updated_ms = r.Int(7);
  return d;
}

}  // namespace af::store_internal
