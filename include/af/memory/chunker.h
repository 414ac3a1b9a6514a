#pragma once
// Splits a document into chunks for the knowledge base. Pure functions.
//   - Markdown (.md, .markdown): on headings; each chunk carries its heading
//     path ("Install > From source").
//   - Source code (.cc .cpp .h .hpp .c .py .js .ts .go .rs .java .sh .rb ...):
//     on top-level definitions where a line at column 0 starts one
//     (def/class/fn/func/function/struct/impl/... or a C-like signature);
//     the heading is that line.
//   - Anything else: plain text, on blank lines (paragraphs).
// Sections longer than chunk_size are cut at line boundaries into windows of
// about chunk_size characters that overlap by `overlap` characters; small
// neighbouring sections are merged up to chunk_size. Empty input gives none.

#include <string>
#include <string_view>
#include <vector>

namespace af {

struct ChunkOptions {
  int chunk_size = 1200;  // characters (kb.chunk_size)
  int overlap = 200;      // characters, less than chunk_size (kb.chunk_overlap)
};

enum class DocKind { kMarkdown, kCode, kText };

// By extension (case-insensitive); unknown extensions are text.
DocKind DocKindForPath(std::string_view path);

struct Chunk {
  std::string heading;               // "" when none
  int line_start = 1, line_end = 1;  // 1-based, inclusive
  std::string content;
};

std::vector<Chunk> ChunkDocument(std::string_view content, DocKind kind,
                                 const ChunkOptions& options);

}  // namespace af
