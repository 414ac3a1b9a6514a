// PostgreSQL backend, memories and knowledge half (see pg_store.h).
//
// Tables: migration 2 of migrations_pg.cc. The rules shared with the SQLite
// backend (validation, embedded text, word cutting, which query words to
// search) come from knowledge_rules.h; what is PostgreSQL's own is here:
//
// - Full text: each memory and chunk row carries `fts`, a tsvector of the
//   words of its text as TextWords cuts them (so rows and queries follow one
//   rule, whatever the server's locale or text search parser would do), with
//   a GIN index. The store writes it as a tsvector literal of quoted lexemes;
//   a lexeme cannot hold a quote or a backslash (TextWords splits on every
//   ASCII punctuation), so the literal is exact. Queries are built the same
//   way from QueryWords ('a' | 'b'): search input is never parsed as query
//   syntax.
// - Ranking: BM25 (k1 1.2, b 0.75, the formula of SQLite's FTS5) computed
//   here from each matching row's term counts and length, the number of rows
//   holding each word (kb_terms) and the table totals (kb_meta), both kept
//   by the writing transaction so a search never counts. Chunk searches
//   follow SQLite's bounds (AffordableWords, AND first, newest rows scored).
// - Labels come from sequences (never handed out twice); kb_meta.generation
//   rises in the transaction of every labelled write. Every such write locks
//   the kb_meta row first, so knowledge writes are serialised in one order
//   and never deadlock each other.
// - Text: PostgreSQL's text holds neither NUL bytes nor invalid UTF-8; both
//   are stored as U+FFFD (CleanText; SQLite keeps the bytes as given), which
//   separates words as the bad byte did.

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

#include "af/core/ids.h"
#include "store/knowledge_rules.h"
#include "store/pg_store.h"
#include "store/store_rows.h"
#include "store/store_rules.h"

namespace af::store_internal {
namespace {

using nlohmann::json;

std::vector<std::string> CleanTexts(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  out.reserve(in.size());
  for (const auto& s : in) out.push_back(CleanText(s));
  return out;
}

// A text[] literal ({"a","b"}) for a parameter cast with ::text[].
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : CleanText(values[i])) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::string IntArray(const std::vector<int64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "}";
}

// A tsquery of `words` (from QueryWords) joined by `op` ("|" or "&"): each a
// quoted lexeme, so nothing in them is read as an operator.
std::string TsQuery(const std::vector<std::string>& words, const char* op) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += std::string(" ") + op + " ";
    out += "'" + w + "'";  // no quote or backslash can be inside: they separate words
  }
  return out;
}

// The full-text entry of a row: its tsvector literal and its number of words.
struct Indexed {
  std::string fts;
  int64_t words = 0;
  std::vector<std::string> terms;  // its distinct lexemes
};

// PostgreSQL keeps positions 1..16383 and at most 256 of them per lexeme; a
// tsvector is at most 1 MB. Later words of a very long text still count in
// its length; a new lexeme past kMaxFtsBytes is not indexed.
constexpr int64_t kMaxPosition = 16383;
constexpr size_t kMaxPositions = 256;
constexpr size_t kMaxFtsBytes = 512 * 1024;

Indexed IndexText(std::initializer_list<std::string_view> parts) {
  std::map<std::string, std::vector<int64_t>> positions;
  Indexed out;
  size_t bytes = 0;
  for (std::string_view part : parts) {
    for (auto& w : TextWords(CleanText(std::string(part)))) {
      int64_t pos = std::min(++out.words, kMaxPosition);
      if (w.size() > kMaxWordBytes) continue;
      auto it = positions.find(w);
      if (it == positions.end()) {
        if (bytes + w.size() > kMaxFtsBytes) continue;
        bytes += w.size() + 8;
        it = positions.emplace(std::move(w), std::vector<int64_t>{}).first;
      }
      auto& p = it->second;
      if (p.size() < kMaxPositions && (p.empty() || p.back() != pos)) p.push_back(pos);
    }
  }
  for (const auto& [word, pos] : positions) {
    if (!out.fts.empty()) out.fts += ' ';
    out.fts += "'" + word + "':";
    out.terms.push_back(word);
    for (size_t i = 0; i < pos.size(); ++i) out.fts += (i ? "," : "") + std::to_string(pos[i]);
  }
  return out;
}

std::string TagsText(const std::vector<std::string>& tags) {
  std::string out;
  for (const auto& t : tags) out += t + " ";
  return out;
}

Indexed IndexMemory(const Memory& m) { return IndexText({m.content, m.summary, TagsText(m.tags)}); }
Indexed IndexChunk(const KbChunk& c) { return IndexText({c.content, c.heading}); }

std::vector<int64_t> Labels(const pqxx::result& res) {
  std::vector<int64_t> out;
  out.reserve(res.size());
  for (const auto& r : res) out.push_back(Int(r[0]));
  return out;
}

// Every labelled write starts here: waits for other knowledge writers (see
// the file comment) and fails clearly when the tables are missing.
Status LockKnowledge(pqxx::work& w) {
  pqxx::result r = w.exec("SELECT generation FROM kb_meta WHERE id = 1 FOR UPDATE");
  if (r.empty())
    return Internal("kb_meta has no row", "the database was edited by hand; restore it");
  return Status::Ok();
}

// Raises the generation and moves the BM25 totals by the given deltas.
void RaiseGeneration(pqxx::work& w, int64_t chunk_rows, int64_t chunk_words, int64_t memory_rows,
                     int64_t memory_words) {
  w.exec_params(
      "UPDATE kb_meta SET generation = generation + 1, chunk_rows = chunk_rows + $1, "
      "chunk_words = chunk_words + $2, memory_rows = memory_rows + $3, "
      "memory_words = memory_words + $4 WHERE id = 1",
      chunk_rows, chunk_words, memory_rows, memory_words);
}

// Changes to kb_terms (rows holding each word) a transaction makes, summed
// per word and written once at its end: replacing a document mostly
// removes and adds the same words, and a batch of documents shares most.
using TermDeltas = std::map<std::string, int64_t>;

void AddTerms(TermDeltas& d, const std::vector<std::string>& terms, int64_t sign) {
  for (const auto& t : terms) d[t] += sign;
}

// `lexemes` as array_to_string(tsvector_to_array(fts), ' ') gives them (no
// lexeme holds a space).
void AddTerms(TermDeltas& d, std::string_view lexemes, int64_t sign) {
  size_t i = 0;
  while (i < lexemes.size()) {
    size_t end = lexemes.find(' ', i);
    if (end == std::string_view::npos) end = lexemes.size();
    if (end > i) d[std::string(lexemes.substr(i, end - i))] += sign;
    i = end + 1;
  }
}
constexpr const char* kLexemes = "array_to_string(tsvector_to_array(fts), ' ')";

// `column` is "chunks" or "memories" (a constant, never input). One
// statement, words in sorted order.
void ApplyTerms(pqxx::work& w, const char* column, const TermDeltas& d) {
  std::vector<std::string> terms;
  std::vector<int64_t> counts;
  for (const auto& [term, n] : d) {
    if (n == 0) continue;
    terms.push_back(term);
    counts.push_back(n);
  }
  if (terms.empty()) return;
  const std::string col = column;
  w.exec_params("INSERT INTO kb_terms (term, " + col +
                    ") SELECT * FROM unnest($1::text[], $2::bigint[]) "
                    "ON CONFLICT (term) DO UPDATE SET " +
                    col + " = kb_terms." + col + " + excluded." + col,
                TextArray(terms), IntArray(counts));
}

Status MemoryNotFound(const std::string& id) {
  return NotFound("memory " + id + " not found",
                  "it may have been deleted; list memories with 'agent-factory memory list'");
}

Result<Memory> GetMemoryTx(pqxx::work& w, const std::string& id, bool for_update) {
  std::string sql = "SELECT " AF_MEMORY_COLS " FROM memories WHERE id = $1";
  if (for_update) sql += " FOR NO KEY UPDATE";
  pqxx::result r = w.exec_params(sql, CleanText(id));
  if (r.empty()) return MemoryNotFound(id);
  return ReadMemory(PgRow(r[0]));
}

// Marks memories accessed (access_count + 1 per mention) in one statement,
// so two concurrent calls lock the rows in one order.
void TouchTx(pqxx::work& w, const std::vector<std::string>& ids, int64_t now) {
  w.exec_params(
      "UPDATE memories m SET accessed_ms = $1, access_count = m.access_count + t.n "
      "FROM (SELECT id, COUNT(*) AS n FROM unnest($2::text[]) AS id GROUP BY id) t "
      "WHERE m.id = t.id",
      now, TextArray(ids));
}

// --- Full-text search ----------------------------------------------------------

// The BM25 inputs of one table: its totals and how many rows hold each word.
struct TermStats {
  int64_t rows = 0;
  int64_t words = 0;
  std::vector<std::pair<std::string, int64_t>> df;  // in the order asked
};

// `column` is "chunks" or "memories" (a constant, never input): the kb_terms
// column and the kb_meta totals of that table.
TermStats ReadTermStats(pqxx::work& w, const char* column, const std::vector<std::string>& words) {
  TermStats s;
  const std::string col = column;
  pqxx::row totals =
      w.exec1(col == "chunks" ? "SELECT chunk_rows, chunk_words FROM kb_meta WHERE id = 1"
                              : "SELECT memory_rows, memory_words FROM kb_meta WHERE id = 1");
  s.rows = Int(totals[0]);
  s.words = Int(totals[1]);
  pqxx::result r = w.exec_params("SELECT COALESCE(t." + col +
                                     ", 0) FROM unnest($1::text[]) WITH ORDINALITY AS q(word, i) "
                                     "LEFT JOIN kb_terms t ON t.term = q.word ORDER BY q.i",
                                 TextArray(words));
  for (size_t i = 0; i < words.size() && i < r.size(); ++i)
    s.df.emplace_back(words[i], Int(r[i][0]));
  return s;
}

// One matching row: its label, its length in words and the entries of the
// query words it holds.
struct Candidate {
  int64_t label = 0;
  int64_t length = 0;
  std::string entries;  // see kCountsOf
};

// Calls fn(word, count) for each entry of a tsvector's text form: 'word'
// then, when it has positions, ':' and the positions separated by commas.
// (No word holds a quote, a backslash or a space: TextWords splits there.)
template <typename Fn>
void ForEachEntry(std::string_view text, Fn fn) {
  size_t i = 0;
  while ((i = text.find('\'', i)) != std::string_view::npos) {
    size_t close = text.find('\'', i + 1);
    if (close == std::string_view::npos) return;
    std::string_view word = text.substr(i + 1, close - i - 1);
    size_t end = text.find(' ', close);
    if (end == std::string_view::npos) end = text.size();
    std::string_view positions = text.substr(close + 1, end - close - 1);
    int64_t count = positions.empty() ? 1 : 1 + std::count(positions.begin(), positions.end(), ',');
    fn(word, count);
    i = end;
  }
}

// BM25 as SQLite's FTS5 computes it (k1 = 1.2, b = 0.75; an inverse document
// frequency that would be <= 0 counts 1e-6), higher = better.
std::vector<TextHit> Score(const std::vector<Candidate>& rows, const TermStats& stats) {
  constexpr double kK1 = 1.2, kB = 0.75;
  const double n = static_cast<double>(std::max<int64_t>(stats.rows, 1));
  const double avgdl =
      stats.rows > 0 ? std::max(1.0, static_cast<double>(stats.words) / stats.rows) : 1.0;
  std::unordered_map<std::string, double> idf;
  for (const auto& [word, df] : stats.df) {
    double v = std::log((n - df + 0.5) / (df + 0.5));
    idf[word] = v > 0 ? v : 1e-6;
  }
  std::vector<TextHit> out;
  out.reserve(rows.size());
  for (const auto& row : rows) {
    const double dl = static_cast<double>(std::max<int64_t>(row.length, 1));
    double score = 0;
    ForEachEntry(row.entries, [&](std::string_view word, int64_t count) {
      auto it = idf.find(std::string(word));
      const double tf = static_cast<double>(count);
      if (it != idf.end())
        score += it->second * tf * (kK1 + 1) / (tf + kK1 * (1 - kB + kB * dl / avgdl));
    });
    out.push_back({row.label, score});
  }
  return out;
}

std::vector<Candidate> ReadCandidates(const pqxx::result& r) {
  std::vector<Candidate> out;
  out.reserve(r.size());
  for (const auto& row : r) out.push_back({Int(row[0]), Int(row[1]), Text(row[2])});
  return out;
}

// The entries of the query words ($2) in a row's tsvector, as text
// ("'word':3A,7A 'other':5A"): setweight marks them, ts_filter keeps them.
// Four times faster than unnest()ing every lexeme of every matching row.
constexpr const char* kCountsOf = "ts_filter(setweight(x.fts, 'A', $2::text[]), '{a}')::text";

}  // namespace

// The SQLite file BackupTo writes gets the knowledge tables too; its own
// triggers fill its full-text indexes as the rows go in. Parents before
// children. kb_meta: the generation, and a next memory label above every
// label handed out here.
const std::vector<BackupTable>& PgStore::KnowledgeBackupTables() {
  static const std::vector<BackupTable> kTables = {
      {"memories", AF_MEMORY_COLS,
       "SELECT id, namespace, content, summary, type, importance, tags, source, created_ms, "
       "updated_ms, accessed_ms, access_count, archived::int, superseded_by, vector_label "
       "FROM memories"},
      {"memory_links", AF_LINK_COLS, "SELECT " AF_LINK_COLS " FROM memory_links"},
      {"kb_documents", AF_DOC_COLS, "SELECT " AF_DOC_COLS " FROM kb_documents"},
      {"kb_chunks", "label, document_id, ordinal, heading, line_start, line_end, content",
       "SELECT label, document_id, ordinal, heading, line_start, line_end, content "
       "FROM kb_chunks ORDER BY label"},
      {"kb_meta", "id, generation, next_memory_label",
       "SELECT 1, generation, (SELECT last_value + 1 FROM memory_labels) FROM kb_meta"},
  };
  return kTables;
}

// --- Memories -------------------------------------------------------------------

Result<Memory> PgStore::AddMemory(Memory memory) {
  AF_RETURN_IF_ERROR(CheckMemory(memory));
  if (memory.ns.empty()) memory.ns = "global";
  if (memory.id.empty()) memory.id = NewId("mem");
  if (memory.created_ms == 0) memory.created_ms = NowMs();
  memory.updated_ms = memory.created_ms;
  const Memory given = memory;
  return Tx("storing memory " + memory.id, [&](pqxx::work& w) -> Result<Memory> {
    Memory m = given;
    m.id = CleanText(m.id);
    m.ns = CleanText(m.ns);
    m.content = CleanText(m.content);
    m.summary = CleanText(m.summary);
    m.tags = CleanTexts(m.tags);
    m.superseded_by = CleanText(m.superseded_by);
    AF_RETURN_IF_ERROR(LockKnowledge(w));
    if (!w.exec_params("SELECT 1 FROM memories WHERE id = $1", m.id).empty()) {
      return AlreadyExists("memory " + m.id + " already exists",
                           "use UpdateMemory to change it, or leave the id empty to get a new one");
    }
    m.vector_label = Int(w.exec1("SELECT nextval('memory_labels')")[0]);
    Indexed idx = IndexMemory(m);
    w.exec_params("INSERT INTO memories (" AF_MEMORY_COLS
                  ", words, fts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
                  "$14, $15, $16, $17::tsvector)",
                  m.id, m.ns, m.content, m.summary, m.type, m.importance, DumpJson(json(m.tags)),
                  DumpJson(m.source), m.created_ms, m.updated_ms, m.accessed_ms, m.access_count,
                  m.archived, m.superseded_by, m.vector_label, idx.words, idx.fts);
    TermDeltas terms;
    AddTerms(terms, idx.terms, +1);
    ApplyTerms(w, "memories", terms);
    RaiseGeneration(w, 0, 0, 1, idx.words);
    return m;
  });
}

Result<Memory> PgStore::GetMemory(const std::string& id) {
  return Tx("reading memory " + id,
            [&](pqxx::work& w) { return GetMemoryTx(w, id, /*for_update=*/false); });
}

Result<std::vector<Memory>> PgStore::MemoriesByLabel(const std::vector<int64_t>& labels) {
  return Tx("reading memories by label", [&](pqxx::work& w) -> Result<std::vector<Memory>> {
    pqxx::result r = w.exec_params("SELECT " AF_MEMORY_COLS
                                   " FROM memories WHERE vector_label = ANY($1::bigint[])",
                                   IntArray(labels));
    std::unordered_map<int64_t, Memory> by_label;
    for (const auto& row : r) {
      Memory m = ReadMemory(PgRow(row));
      by_label.emplace(m.vector_label, std::move(m));
    }
    std::vector<Memory> out;
    for (int64_t l : labels) {
      auto it = by_label.find(l);
      if (it != by_label.end()) out.push_back(it->second);
    }
    return out;
  });
}

Result<std::vector<Memory>> PgStore::ListMemories(const MemoryFilter& f) {
  AF_RETURN_IF_ERROR(CheckMemoryFilter(f));
  const bool all_ns = AllNamespaces(f.namespaces);
  return Tx("listing memories", [&](pqxx::work& w) -> Result<std::vector<Memory>> {
    // Every tag: the stored array contains the asked one.
    pqxx::result r =
        w.exec_params("SELECT " AF_MEMORY_COLS
                      " FROM memories WHERE ($1 OR namespace = ANY($2::text[])) "
                      "AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[])) "
                      "AND tags::jsonb @> $4::jsonb "
                      "AND ($5 OR (archived = FALSE AND superseded_by = '')) "
                      "ORDER BY importance DESC, created_ms DESC, id LIMIT $6 OFFSET $7",
                      all_ns, TextArray(f.namespaces), TextArray(f.types),
                      DumpJson(json(CleanTexts(f.tags))), f.include_archived, f.limit, f.offset);
    std::vector<Memory> out;
    out.reserve(r.size());
    for (const auto& row : r) out.push_back(ReadMemory(PgRow(row)));
    return out;
  });
}

Result<Memory> PgStore::UpdateMemory(const Memory& memory) {
  AF_RETURN_IF_ERROR(CheckMemory(memory));
  return Tx("updating memory " + memory.id, [&](pqxx::work& w) -> Result<Memory> {
    AF_RETURN_IF_ERROR(LockKnowledge(w));
    AF_ASSIGN_OR_RETURN(Memory cur, GetMemoryTx(w, memory.id, /*for_update=*/true));
    // Compared as stored (CleanText), so an unchanged text with a NUL in it
    // does not count as a change.
    const std::string content = CleanText(memory.content), summary = CleanText(memory.summary);
    const std::vector<std::string> tags = CleanTexts(memory.tags);
    const std::string superseded_by = CleanText(memory.superseded_by);
    const bool text_changed = cur.content != content || cur.summary != summary || cur.tags != tags;
    const bool listed_changed =
        cur.archived != memory.archived || cur.superseded_by != superseded_by;
    const pqxx::row old = w.exec_params1(
        std::string("SELECT words, ") + kLexemes + " FROM memories WHERE id = $1", cur.id);
    cur.content = content;
    cur.summary = summary;
    cur.type = memory.type;
    cur.importance = memory.importance;
    cur.tags = tags;
    cur.source = memory.source;
    cur.archived = memory.archived;
    cur.superseded_by = superseded_by;
    cur.updated_ms = NowMs();
    if (text_changed) {
      cur.vector_label = Int(w.exec1("SELECT nextval('memory_labels')")[0]);
      Indexed idx = IndexMemory(cur);
      w.exec_params(
          "UPDATE memories SET vector_label = $1, words = $2, fts = $3::tsvector "
          "WHERE id = $4",
          cur.vector_label, idx.words, idx.fts, cur.id);
      TermDeltas terms;
      AddTerms(terms, Text(old[1]), -1);
      AddTerms(terms, idx.terms, +1);
      ApplyTerms(w, "memories", terms);
      RaiseGeneration(w, 0, 0, 0, idx.words - Int(old[0]));
    } else if (listed_changed) {
      RaiseGeneration(w, 0, 0, 0, 0);
    }
    w.exec_params(
        "UPDATE memories SET content = $1, summary = $2, type = $3, importance = $4, tags = $5, "
        "source = $6, archived = $7, superseded_by = $8, updated_ms = $9 WHERE id = $10",
        cur.content, cur.summary, cur.type, cur.importance, DumpJson(json(cur.tags)),
        DumpJson(cur.source), cur.archived, cur.superseded_by, cur.updated_ms, CleanText(cur.id));
    return cur;
  });
}

Status PgStore::DeleteMemory(const std::string& id) {
  return Tx("deleting memory " + id, [&](pqxx::work& w) -> Status {
    AF_RETURN_IF_ERROR(LockKnowledge(w));
    // Links go by ON DELETE CASCADE.
    pqxx::result r = w.exec_params(
        std::string("DELETE FROM memories WHERE id = $1 RETURNING words, ") + kLexemes,
        CleanText(id));
    if (r.empty())
      return NotFound("memory " + id + " not found", "it may have been deleted already");
    TermDeltas terms;
    AddTerms(terms, Text(r[0][1]), -1);
    ApplyTerms(w, "memories", terms);
    RaiseGeneration(w, 0, 0, -1, -Int(r[0][0]));
    return Status::Ok();
  });
}

Status PgStore::TouchMemories(const std::vector<std::string>& ids) {
  if (ids.empty()) return Status::Ok();
  const int64_t now = NowMs();
  return Tx("marking memories accessed", [&](pqxx::work& w) -> Status {
    TouchTx(w, ids, now);
    return Status::Ok();
  });
}

Result<std::vector<Memory>> PgStore::FindMemories(const std::vector<std::string>& namespaces,
                                                  const std::string& query, int limit) {
  // Matched as substrings of the content lower-cased in ASCII only
  // (translate, not lower(): the server's locale must not change what
  // matches).
  const std::vector<std::string> words = SubstringWords(query);
  const int64_t now = NowMs();
  return Tx("searching memories", [&](pqxx::work& w) -> Result<std::vector<Memory>> {
    std::vector<Memory> out;
    for (const auto& ns : namespaces) {
      if (static_cast<int>(out.size()) >= limit) break;
      pqxx::result r = w.exec_params(
          "SELECT " AF_MEMORY_COLS
          " FROM memories WHERE archived = FALSE AND superseded_by = '' AND namespace = $1 "
          "AND NOT EXISTS (SELECT 1 FROM unnest($2::text[]) AS q(word) WHERE strpos(translate("
          "content, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), q.word) = 0) "
          "ORDER BY importance DESC, created_ms DESC, id LIMIT $3",
          CleanText(ns), TextArray(words), static_cast<int64_t>(limit - out.size()));
      for (const auto& row : r) out.push_back(ReadMemory(PgRow(row)));
    }
    std::vector<std::string> ids;
    for (auto& m : out) {
      ids.push_back(m.id);
      m.accessed_ms = now;
      ++m.access_count;
    }
    if (!ids.empty()) TouchTx(w, ids, now);
    return out;
  });
}

Result<std::vector<TextHit>> PgStore::SearchMemoryText(const std::vector<std::string>& namespaces,
                                                       const std::string& query, int limit) {
  std::vector<std::string> words = QueryWords(query);
  if (words.empty() || limit < 1) return std::vector<TextHit>{};
  limit = std::min(limit, kMaxTextHits);
  const bool all_ns = AllNamespaces(namespaces);
  return Tx("searching memories", [&](pqxx::work& w) -> Result<std::vector<TextHit>> {
    TermStats stats = ReadTermStats(w, "memories", words);
    // As SQLite: with more than two words, the very common ones are left out.
    std::vector<std::string> kept = words.size() > 2 ? AffordableWords(stats.df) : words;
    // As SQLite: the newest kScoredRows matching memories are scored.
    pqxx::result r = w.exec_params(
        std::string("SELECT x.vector_label, x.words, ") + kCountsOf +
            " FROM memories x WHERE x.fts @@ $1::tsquery AND x.archived = FALSE "
            "AND x.superseded_by = '' AND ($3 OR x.namespace = ANY($4::text[])) "
            "ORDER BY x.vector_label DESC LIMIT $5",
        TsQuery(kept, "|"), TextArray(kept), all_ns, TextArray(namespaces), kScoredRows);
    return BestHits(Score(ReadCandidates(r), stats), limit);
  });
}

// --- Memory links -----------------------------------------------------------------

Status PgStore::UpsertMemoryLink(const MemoryLink& l) { return UpsertMemoryLinks({l}); }

Status PgStore::UpsertMemoryLinks(const std::vector<MemoryLink>& links) {
  for (const auto& l : links) AF_RETURN_IF_ERROR(CheckMemoryLink(l));
  if (links.empty()) return Status::Ok();
  const int64_t now = NowMs();
  const MemoryLink& first = links.front();
  return Tx(
      "linking memory " + first.from_id + " to " + first.to_id +
          (links.size() > 1 ? " (and " + std::to_string(links.size() - 1) + " more)" : ""),
      [&](pqxx::work& w) -> Status {
        for (const auto& l : links) {
          for (const std::string* id : {&l.from_id, &l.to_id}) {
            // FOR KEY SHARE: a memory seen here cannot go before the link is in.
            if (w.exec_params("SELECT 1 FROM memories WHERE id = $1 FOR KEY SHARE", CleanText(*id))
                    .empty()) {
              return NotFound("memory " + *id + " not found; cannot link it",
                              "link only memories that exist");
            }
          }
          w.exec_params("INSERT INTO memory_links (" AF_LINK_COLS
                        ") VALUES ($1, $2, $3, $4, $5, $6) "
                        "ON CONFLICT (from_id, to_id, type) DO UPDATE SET "
                        "strength = excluded.strength, updated_ms = excluded.updated_ms",
                        CleanText(l.from_id), CleanText(l.to_id), CleanText(l.type), l.strength,
                        l.created_ms != 0 ? l.created_ms : now, now);
        }
        return Status::Ok();
      });
}

Result<std::vector<MemoryLink>> PgStore::MemoryLinks(const std::string& memory_id) {
  return Tx("listing links of memory " + memory_id,
            [&](pqxx::work& w) -> Result<std::vector<MemoryLink>> {
              pqxx::result r = w.exec_params("SELECT " AF_LINK_COLS
                                             " FROM memory_links WHERE from_id = $1 OR to_id = $1 "
                                             "ORDER BY strength DESC, from_id, to_id, type",
                                             CleanText(memory_id));
              std::vector<MemoryLink> out;
              for (const auto& row : r) out.push_back(ReadLink(PgRow(row)));
              return out;
            });
}

Result<std::vector<MemoryLink>> PgStore::AllMemoryLinks() {
  return Tx("listing memory links", [&](pqxx::work& w) -> Result<std::vector<MemoryLink>> {
    pqxx::result r =
        w.exec("SELECT " AF_LINK_COLS " FROM memory_links ORDER BY from_id, to_id, type");
    std::vector<MemoryLink> out;
    for (const auto& row : r) out.push_back(ReadLink(PgRow(row)));
    return out;
  });
}

Status PgStore::DeleteMemoryLink(const std::string& from_id, const std::string& to_id,
                                 const std::string& type) {
  return Tx("deleting a memory link", [&](pqxx::work& w) -> Status {
    pqxx::result r =
        w.exec_params("DELETE FROM memory_links WHERE from_id = $1 AND to_id = $2 AND type = $3",
                      CleanText(from_id), CleanText(to_id), CleanText(type));
    if (r.affected_rows() == 0) {
      return NotFound("no '" + type + "' link from memory " + from_id + " to " + to_id,
                      "list a memory's links first");
    }
    return Status::Ok();
  });
}

// --- Knowledge base ---------------------------------------------------------------

Result<KbDocument> PgStore::FindDocument(const std::string& ns, const std::string& source) {
  return Tx("reading document " + source, [&](pqxx::work& w) -> Result<KbDocument> {
    pqxx::result r = w.exec_params("SELECT " AF_DOC_COLS
                                   " FROM kb_documents WHERE namespace = $1 AND source = $2",
                                   CleanText(ns), CleanText(source));
    if (r.empty()) {
      return NotFound("no document '" + source + "' in namespace '" + ns + "'",
                      "ingest it first, or list documents to see what is there");
    }
    return ReadDocument(PgRow(r[0]));
  });
}

Result<std::vector<KbDocument>> PgStore::ListDocuments(const std::string& ns) {
  return Tx("listing documents", [&](pqxx::work& w) -> Result<std::vector<KbDocument>> {
    pqxx::result r = w.exec_params("SELECT " AF_DOC_COLS
                                   " FROM kb_documents WHERE $1 = '' OR namespace = $1 "
                                   "ORDER BY namespace, source",
                                   CleanText(ns));
    std::vector<KbDocument> out;
    for (const auto& row : r) out.push_back(ReadDocument(PgRow(row)));
    return out;
  });
}

namespace {

// What a transaction changed in the chunks table, for kb_meta and kb_terms.
struct ChunkChanges {
  int64_t rows = 0, words = 0;
  TermDeltas terms;
};

// Writes `c` and raises the generation: the end of every chunk write.
void FinishChunkWrite(pqxx::work& w, const ChunkChanges& c) {
  ApplyTerms(w, "chunks", c.terms);
  RaiseGeneration(w, c.rows, c.words, 0, 0);
}

// Deletes a document's chunks and the document inside an open transaction;
// returns the removed labels (ascending) and adds what went to `c`.
std::vector<int64_t> DeleteDocumentTx(pqxx::work& w, const std::string& id, ChunkChanges* c) {
  pqxx::result r = w.exec_params(
      std::string("DELETE FROM kb_chunks WHERE document_id = $1 RETURNING label, words, ") +
          kLexemes,
      id);
  std::vector<int64_t> labels;
  for (const auto& row : r) {
    labels.push_back(Int(row[0]));
    c->words -= Int(row[1]);
    AddTerms(c->terms, Text(row[2]), -1);
  }
  c->rows -= static_cast<int64_t>(r.size());
  std::sort(labels.begin(), labels.end());
  w.exec_params("DELETE FROM kb_documents WHERE id = $1", id);
  return labels;
}

// One document of ReplaceDocuments, inside its transaction.
Status ReplaceDocumentTx(pqxx::work& w, int64_t now, DocumentWrite* dw, ChunkChanges* changes) {
  KbDocument& doc = dw->doc;
  if (doc.ns.empty()) doc.ns = "global";
  doc.ns = CleanText(doc.ns);
  doc.source = CleanText(doc.source);
  doc.id = CleanText(doc.id);
  pqxx::result old = w.exec_params(
      "SELECT id, created_ms FROM kb_documents WHERE namespace = $1 AND source = $2 FOR UPDATE",
      doc.ns, doc.source);
  dw->removed.clear();
  if (!old.empty()) {
    // Re-ingesting keeps the document's identity and first ingestion time.
    const std::string old_id = Text(old[0][0]);
    if (doc.created_ms == 0) doc.created_ms = Int(old[0][1]);
    dw->removed = DeleteDocumentTx(w, old_id, changes);
    if (doc.id.empty()) doc.id = old_id;
  }
  if (doc.id.empty()) doc.id = NewId("doc");
  if (!w.exec_params("SELECT 1 FROM kb_documents WHERE id = $1", doc.id).empty()) {
    return AlreadyExists("document id " + doc.id + " belongs to another document",
                         "leave the id empty to keep the replaced document's id or get a new one");
  }
  if (doc.created_ms == 0) doc.created_ms = now;
  doc.updated_ms = now;
  doc.chunk_count = static_cast<int64_t>(dw->chunks.size());
  w.exec_params("INSERT INTO kb_documents (" AF_DOC_COLS
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                doc.id, doc.ns, doc.source, CleanText(doc.content_hash),
                PgStore::DumpJson(doc.provenance), doc.chunk_count, doc.created_ms, doc.updated_ms);
  dw->labels.clear();
  if (dw->chunks.empty()) return Status::Ok();
  // Labels first (ascending, in chunk order), then every chunk in one
  // statement: one round trip for a document of any size.
  dw->labels = Labels(w.exec_params("SELECT nextval('chunk_labels') FROM generate_series(1, $1)",
                                    static_cast<int64_t>(dw->chunks.size())));
  std::sort(dw->labels.begin(), dw->labels.end());
  json rows_json = json::array();
  for (size_t i = 0; i < dw->chunks.size(); ++i) {
    const KbChunk& c = dw->chunks[i];
    Indexed idx = IndexChunk(c);
    changes->rows += 1;
    changes->words += idx.words;
    AddTerms(changes->terms, idx.terms, +1);
    rows_json.push_back({{"label", dw->labels[i]},
                         {"ordinal", static_cast<int64_t>(i)},
                         {"heading", CleanText(c.heading)},
                         {"line_start", c.line_start},
                         {"line_end", c.line_end},
                         {"content", CleanText(c.content)},
                         {"words", idx.words},
                         {"fts", idx.fts}});
  }
  w.exec_params(
      "INSERT INTO kb_chunks (label, document_id, ordinal, heading, line_start, line_end, "
      "content, words, fts) SELECT x.label, $1, x.ordinal, x.heading, x.line_start, x.line_end, "
      "x.content, x.words, x.fts::tsvector FROM json_to_recordset($2::json) AS x(label bigint, "
      "ordinal integer, heading text, line_start integer, line_end integer, content text, "
      "words integer, fts text)",
      doc.id, PgStore::DumpJson(rows_json));
  return Status::Ok();
}

}  // namespace

Result<std::vector<int64_t>> PgStore::ReplaceDocument(KbDocument doc, std::vector<KbChunk> chunks,
                                                      std::vector<int64_t>* removed) {
  std::vector<DocumentWrite> writes(1);
  writes[0].doc = std::move(doc);
  writes[0].chunks = std::move(chunks);
  AF_RETURN_IF_ERROR(ReplaceDocuments(&writes));
  if (removed != nullptr) *removed = std::move(writes[0].removed);
  return std::move(writes[0].labels);
}

Status PgStore::ReplaceDocuments(std::vector<DocumentWrite>* writes) {
  if (writes->empty()) return Status::Ok();
  AF_RETURN_IF_ERROR(CheckDocumentWrites(*writes));
  const int64_t now = NowMs();
  // The transaction works on a copy (it may run twice, see Tx); the caller's
  // writes get their ids and labels only once it committed.
  std::vector<DocumentWrite> done;
  Status st = Tx("storing documents", [&](pqxx::work& w) -> Status {
    done = *writes;
    AF_RETURN_IF_ERROR(LockKnowledge(w));
    ChunkChanges changes;
    for (auto& dw : done) AF_RETURN_IF_ERROR(ReplaceDocumentTx(w, now, &dw, &changes));
    FinishChunkWrite(w, changes);
    return Status::Ok();
  });
  if (!st.ok()) {
    // Rolled back: no label handed out here exists.
    for (auto& w : *writes) {
      w.labels.clear();
      w.removed.clear();
    }
    return st;
  }
  *writes = std::move(done);
  return Status::Ok();
}

Result<std::vector<int64_t>> PgStore::DeleteDocument(const std::string& document_id) {
  return Tx("deleting document " + document_id, [&](pqxx::work& w) -> Result<std::vector<int64_t>> {
    AF_RETURN_IF_ERROR(LockKnowledge(w));
    const std::string id = CleanText(document_id);
    if (w.exec_params("SELECT 1 FROM kb_documents WHERE id = $1", id).empty()) {
      return NotFound("document " + document_id + " not found",
                      "list documents to see what is there");
    }
    ChunkChanges changes;
    std::vector<int64_t> gone = DeleteDocumentTx(w, id, &changes);
    FinishChunkWrite(w, changes);
    return gone;
  });
}

Result<std::vector<TextHit>> PgStore::SearchChunkText(const std::vector<std::string>& namespaces,
                                                      const std::string& query, int limit) {
  std::vector<std::string> words = QueryWords(query);
  if (words.empty() || limit < 1) return std::vector<TextHit>{};
  limit = std::min(limit, kMaxTextHits);
  const bool all_ns = AllNamespaces(namespaces);
  return Tx("searching the knowledge base", [&](pqxx::work& w) -> Result<std::vector<TextHit>> {
    TermStats stats = ReadTermStats(w, "chunks", words);
    std::vector<std::string> kept = AffordableWords(stats.df);
    // The kept words some row holds (one no row holds would make the AND
    // below match nothing), and the rows they hold.
    std::vector<std::string> known;
    int64_t kept_rows = 0;
    for (const auto& word : kept) {
      for (const auto& [term, rows] : stats.df) {
        if (term != word || rows == 0) continue;
        known.push_back(word);
        kept_rows += rows;
      }
    }
    // Bounded ranking, as SQLite: the newest kScoredRows matching rows are
    // scored and the best `limit` kept; a query of very common words then
    // answers from the newest rows instead of scoring them all.
    const std::string sql =
        std::string("SELECT x.label, x.words, ") + kCountsOf +
        " FROM kb_chunks x WHERE x.fts @@ $1::tsquery AND ($3 OR EXISTS (SELECT 1 FROM "
        "kb_documents d WHERE d.id = x.document_id AND d.namespace = ANY($4::text[]))) "
        "ORDER BY x.label DESC LIMIT $5";
    const int64_t scored = std::max<int64_t>(limit, kScoredRows);
    auto best = [&](const std::string& tsquery) {
      pqxx::result r =
          w.exec_params(sql, tsquery, TextArray(kept), all_ns, TextArray(namespaces), scored);
      return BestHits(Score(ReadCandidates(r), stats), limit);
    };
    // The rows holding all the kept words are tried first when those words'
    // rows are many: few, cheap to score, and ranked near the top anyway.
    if (known.size() >= 2 && kept_rows > kAndFirstRows) {
      std::vector<TextHit> all = best(TsQuery(known, "&"));
      if (all.size() >= static_cast<size_t>(limit)) return all;
    }
    return best(TsQuery(kept, "|"));
  });
}

Result<std::vector<KbChunk>> PgStore::ChunksByLabel(const std::vector<int64_t>& labels) {
  return Tx("reading chunks by label", [&](pqxx::work& w) -> Result<std::vector<KbChunk>> {
    pqxx::result r = w.exec_params(
        "SELECT c.label, c.document_id, d.source, d.namespace, c.ordinal, c.heading, "
        "c.line_start, c.line_end, c.content FROM kb_chunks c JOIN kb_documents d "
        "ON d.id = c.document_id WHERE c.label = ANY($1::bigint[])",
        IntArray(labels));
    std::unordered_map<int64_t, KbChunk> by_label;
    for (const auto& row : r) {
      KbChunk c;
      c.label = Int(row[0]);
      c.document_id = Text(row[1]);
      c.source = Text(row[2]);
      c.ns = Text(row[3]);
      c.ordinal = static_cast<int>(Int(row[4]));
      c.heading = Text(row[5]);
      c.line_start = static_cast<int>(Int(row[6]));
      c.line_end = static_cast<int>(Int(row[7]));
      c.content = Text(row[8]);
      by_label.emplace(c.label, std::move(c));
    }
    std::vector<KbChunk> out;
    for (int64_t l : labels) {
      auto it = by_label.find(l);
      if (it != by_label.end()) out.push_back(it->second);
    }
    return out;
  });
}

Result<std::vector<Store::LabelledText>> PgStore::ChunkTexts(int64_t after_label, int limit) {
  AF_RETURN_IF_ERROR(CheckPage(limit, "chunk text paging"));
  return Tx("reading chunk texts", [&](pqxx::work& w) -> Result<std::vector<LabelledText>> {
    pqxx::result r = w.exec_params(
        "SELECT c.label, d.namespace, c.heading, c.content FROM kb_chunks c "
        "JOIN kb_documents d ON d.id = c.document_id WHERE c.label > $1 "
        "ORDER BY c.label LIMIT $2",
        after_label, limit);
    std::vector<LabelledText> out;
    for (const auto& row : r)
      out.push_back({Int(row[0]), Text(row[1]), ChunkEmbedText(Text(row[2]), Text(row[3]))});
    return out;
  });
}

Result<std::vector<Store::LabelledText>> PgStore::MemoryTexts(int64_t after_label, int limit) {
  AF_RETURN_IF_ERROR(CheckPage(limit, "memory text paging"));
  return Tx("reading memory texts", [&](pqxx::work& w) -> Result<std::vector<LabelledText>> {
    pqxx::result r = w.exec_params(
        "SELECT vector_label, namespace, summary, content, tags FROM memories "
        "WHERE vector_label > $1 AND archived = FALSE AND superseded_by = '' "
        "ORDER BY vector_label LIMIT $2",
        after_label, limit);
    std::vector<LabelledText> out;
    for (const auto& row : r) {
      out.push_back(
          {Int(row[0]), Text(row[1]),
           MemoryEmbedText(Text(row[2]), Text(row[3]), StringList(ParseJson(Text(row[4]))))});
    }
    return out;
  });
}

Result<std::vector<int64_t>> PgStore::ChunkLabels() {
  return Tx("listing chunk labels", [&](pqxx::work& w) -> Result<std::vector<int64_t>> {
    return Labels(w.exec("SELECT label FROM kb_chunks ORDER BY label"));
  });
}

Result<std::vector<int64_t>> PgStore::MemoryLabels() {
  return Tx("listing memory labels", [&](pqxx::work& w) -> Result<std::vector<int64_t>> {
    return Labels(
        w.exec("SELECT vector_label FROM memories WHERE archived = FALSE "
               "AND superseded_by = '' ORDER BY vector_label"));
  });
}

Result<KbCounts> PgStore::CountKnowledge() {
  return Tx("counting the knowledge base", [&](pqxx::work& w) -> Result<KbCounts> {
    pqxx::row r = w.exec1(
        "SELECT (SELECT COUNT(*) FROM kb_documents), (SELECT COUNT(*) FROM kb_chunks), "
        "(SELECT COUNT(*) FROM memories WHERE archived = FALSE AND superseded_by = ''), "
        "(SELECT COUNT(*) FROM memories WHERE archived OR superseded_by <> ''), "
        "(SELECT COUNT(*) FROM memory_links)");
    KbCounts c;
    c.documents = Int(r[0]);
    c.chunks = Int(r[1]);
    c.memories = Int(r[2]);
    c.archived_memories = Int(r[3]);
    c.links = Int(r[4]);
    return c;
  });
}

Result<int64_t> PgStore::KnowledgeGeneration() {
  return Tx("reading the knowledge generation", [&](pqxx::work& w) -> Result<int64_t> {
    pqxx::result r = w.exec("SELECT generation FROM kb_meta WHERE id = 1");
    if (r.empty()) {
      return Internal("kb_meta has no row", "the database was edited by hand; restore it");
    }
    return Int(r[0][0]);
  });
}

}  // namespace af::store_internal
