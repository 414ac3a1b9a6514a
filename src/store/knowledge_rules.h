#pragma once
// Internal: the rules for memories and the knowledge base that every Store
// backend applies the same way, so a search or a validation does not depend
// on which database is behind the store. One definition each, here.
//
// Word cutting is the centre: the SQLite backend cuts search input with
// QueryWords and lets FTS5 (unicode61, diacritics removed) cut the rows; the
// PostgreSQL backend cuts both the rows (TextWords) and the input
// (QueryWords) with this same rule, so a word found in a row is always the
// word a query asks for.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "af/store/types.h"

namespace af::store_internal {

// The one validation of a memory's fields, for AddMemory and UpdateMemory:
// non-empty content of at most kMaxMemoryContentBytes, a known type,
// importance 1..10. InvalidArgument names the bad field.
Status CheckMemory(const Memory& m);

// What the vector index embeds for a memory / a chunk (see Store::MemoryTexts
// and Store::ChunkTexts).
std::string MemoryEmbedText(const std::string& summary, const std::string& content,
                            const std::vector<std::string>& tags);
std::string ChunkEmbedText(const std::string& heading, const std::string& content);

// The words of `text`, in order, repeats kept: runs of ASCII letters/digits
// (lower-cased) and runs of other well-formed UTF-8 characters (folded: see
// below). Everything else separates words: ASCII punctuation and spaces
// (so '_' too: parse_config holds "parse" and "config"), bytes that are not
// UTF-8, and common non-ASCII punctuation, spaces and symbols (U+00A0..U+00BF,
// U+2000..U+206F, U+3000..U+303F, U+FE00..U+FE0F, U+FEFF, U+1F000 and up,
// and U+FFFD, which stands for a bad byte where a store could not keep it).
// Folding: Latin letters with diacritics lose them (é -> e, Ł stays ł: only
// letters that decompose to a base letter and a mark), and Latin, Greek and
// Cyrillic capitals become lower case; the same folding SQLite's unicode61
// tokenizer (remove_diacritics 2) applies, for the letters it covers here.
std::vector<std::string> TextWords(std::string_view text);

// Longest word a search looks for; longer ones are skipped (a query) or not
// indexed (a row, PostgreSQL): nobody types them.
constexpr size_t kMaxWordBytes = 128;
// At most this many words of a query are searched.
constexpr size_t kMaxQueryWords = 64;

// Free text -> the words to search for, never syntax: TextWords, without
// repeats or words over kMaxWordBytes, at most kMaxQueryWords. English
// stopwords are dropped unless the query has nothing else: the words are
// OR-ed, so "the" or "how" would match nearly every row (and cost scoring
// them all) while BM25 gives them almost no weight anyway. A query of
// stopwords only ("to be or not") is still searched as it is. Empty when the
// query has no word.
std::vector<std::string> QueryWords(std::string_view query);
bool IsQueryStopword(std::string_view word);

// Searches return at most this many hits.
constexpr int kMaxTextHits = 1000;

// The best `limit` of `hits`, highest score first (ties: the newer label).
std::vector<TextHit> BestHits(std::vector<TextHit> hits, int limit);

// Chunk searches (SearchChunkText): the AND of the kept words is tried first
// when they hold more rows than kAndFirstRows, and no search scores more than
// kScoredRows rows (the newest); memory searches score at most kScoredRows
// too (a recall before every model call must not grow with the memories).
// Measured on 100,000 chunks of the benchmark corpus (bench/kb_bench.cc,
// SQLite, 400 queries), against the OR of the kept words alone: p50 5.1 ->
// 3.2 ms, p99 56 -> 8.5 ms, and the top 10 shares 0.62 of its results with
// the unbounded OR of every word (0.68 before; scoring the newest rows
// without trying the AND: 0.50).
constexpr int64_t kAndFirstRows = 500;
constexpr int64_t kScoredRows = 3000;

// Query words whose rows a search may score: scoring computes BM25 for every
// row holding any OR-ed word before it can keep the best, so a word held by
// tens of thousands of rows costs tens of ms while telling little (its
// inverse document frequency is low). `df` is each word with the number of
// rows holding it. Words are taken rarest first while the rows they hold add
// up to at most kPostingBudget; the 2 rarest are always kept, so a query of
// common words only still answers. A word no row holds (0) costs nothing and
// is kept.
constexpr int64_t kPostingBudget = 3000;
std::vector<std::string> AffordableWords(std::vector<std::pair<std::string, int64_t>> df);

// FindMemories' words: `query` split at ASCII white space and lower-cased in
// ASCII only; a memory matches when its content, lower-cased the same way,
// holds every one as a substring.
std::vector<std::string> SubstringWords(std::string_view query);

// "" among the namespaces, or none at all, means every namespace.
bool AllNamespaces(const std::vector<std::string>& namespaces);

// Ok for 1 <= limit <= 10000 (ChunkTexts / MemoryTexts paging), else
// InvalidArgument naming `what`.
Status CheckPage(int limit, std::string_view what);

}  // namespace af::store_internal
