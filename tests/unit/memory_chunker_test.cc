#include <gtest/gtest.h>

#include <chrono>
#include <sstream>

#include "af/memory/chunker.h"

namespace af {
namespace {

// The lines [a, b] (1-based, inclusive) of `text`, joined by '\n'.
std::string Lines(const std::string& text, int a, int b) {
  std::istringstream in(text);
  std::string line, out;
  for (int n = 1; std::getline(in, line); ++n) {
    if (n < a || n > b) continue;
    if (n > a) out += '\n';
    out += line;
  }
  return out;
}

// Every chunk's content is exactly its lines (or a piece of its one line), and none is blank.
void ExpectConsistent(const std::string& text, const std::vector<Chunk>& chunks) {
  for (const Chunk& c : chunks) {
    EXPECT_GE(c.line_start, 1);
    EXPECT_LE(c.line_start, c.line_end);
    EXPECT_NE(c.content.find_first_not_of(" \t\n"), std::string::npos) << "blank chunk";
    std::string lines = Lines(text, c.line_start, c.line_end);
    if (c.line_start == c.line_end && c.content != lines) {
      EXPECT_NE(lines.find(c.content), std::string::npos) << c.content;
    } else {
      EXPECT_EQ(c.content, lines);
    }
  }
}

TEST(DocKindTest, ByExtensionCaseInsensitive) {
  EXPECT_EQ(DocKindForPath("docs/README.md"), DocKind::kMarkdown);
  EXPECT_EQ(DocKindForPath("Guide.MARKDOWN"), DocKind::kMarkdown);
  EXPECT_EQ(DocKindForPath("src/a.cc"), DocKind::kCode);
  EXPECT_EQ(DocKindForPath("x/Y.PY"), DocKind::kCode);
  EXPECT_EQ(DocKindForPath("main.go"), DocKind::kCode);
  EXPECT_EQ(DocKindForPath("lib.rs"), DocKind::kCode);
  EXPECT_EQ(DocKindForPath("app.ts"), DocKind::kCode);
  EXPECT_EQ(DocKindForPath("A.java"), DocKind::kCode);
  EXPECT_EQ(DocKindForPath("run.sh"), DocKind::kCode);
  EXPECT_EQ(DocKindForPath("notes.txt"), DocKind::kText);
  EXPECT_EQ(DocKindForPath("LICENSE"), DocKind::kText);
  EXPECT_EQ(DocKindForPath("dir.md/file"), DocKind::kText);
  EXPECT_EQ(DocKindForPath(""), DocKind::kText);
}

TEST(ChunkerTest, EmptyInputGivesNoChunks) {
  for (DocKind k : {DocKind::kMarkdown, DocKind::kCode, DocKind::kText}) {
    EXPECT_TRUE(ChunkDocument("", k, {}).empty());
    EXPECT_TRUE(ChunkDocument("\n\n  \n\t\n", k, {}).empty());
  }
}

TEST(ChunkerTest, MarkdownSplitsOnHeadingsWithPaths) {
  const std::string doc =
      "Intro line.\n"
      "\n"
      "# Install\n"
      "Get it.\n"
      "## From source\n"
      "Run make.\n"
      "### Options\n"
      "Flags.\n"
      "# Usage\n"
      "Call it.\n";
  ChunkOptions small{26, 0};  // too small to merge the sections
  auto chunks = ChunkDocument(doc, DocKind::kMarkdown, small);
  ASSERT_EQ(chunks.size(), 5u);
  EXPECT_EQ(chunks[0].heading, "");
  EXPECT_EQ(chunks[0].content, "Intro line.");
  EXPECT_EQ(chunks[1].heading, "Install");
  EXPECT_EQ(chunks[1].line_start, 3);
  EXPECT_EQ(chunks[1].line_end, 4);
  EXPECT_EQ(chunks[2].heading, "Install > From source");
  EXPECT_EQ(chunks[3].heading, "Install > From source > Options");
  EXPECT_EQ(chunks[4].heading, "Usage");
  EXPECT_EQ(chunks[4].content, "# Usage\nCall it.");
  ExpectConsistent(doc, chunks);
}

TEST(ChunkerTest, MarkdownMergesSmallSections) {
  const std::string doc = "# A\none\n# B\ntwo\n";
  auto chunks = ChunkDocument(doc, DocKind::kMarkdown, {});
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].heading, "A");
  EXPECT_EQ(chunks[0].line_start, 1);
  EXPECT_EQ(chunks[0].line_end, 4);
}

TEST(ChunkerTest, MarkdownNeverSplitsOnHashInsideFencedCode) {
  const std::string doc =
      "# Script\n"
      "```sh\n"
      "# not a heading\n"
      "echo hi\n"
      "~~~\n"
      "## still code\n"
      "```\n"
      "# Next\n"
      "text\n";
  auto chunks = ChunkDocument(doc, DocKind::kMarkdown, {70, 0});
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].heading, "Script");
  EXPECT_EQ(chunks[0].line_end, 7);
  EXPECT_EQ(chunks[1].heading, "Next");
  EXPECT_EQ(chunks[1].line_start, 8);
}

TEST(ChunkerTest, MarkdownHashWithoutSpaceIsNotAHeading) {
  auto chunks = ChunkDocument("#hashtag\n#\n# Real #\nbody\n", DocKind::kMarkdown, {10, 0});
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks.back().heading, "Real");
}

TEST(ChunkerTest, CodeSplitsOnTopLevelDefinitions) {
  const std::string cc =
      "#include <x>\n"
      "\n"
      "namespace a {\n"
      "\n"
      "// Adds.\n"
      "int Add(int x, int y) {\n"
      "  return x + y;\n"
      "}\n"
      "\n"
      "class Widget {\n"
      " public:\n"
      "  void Draw();\n"
      "};\n"
      "\n"
      "void Widget::Draw() {\n"
      "  if (x) {\n"
      "  }\n"
      "}\n";
  // 60 characters: each definition alone; the small preamble merges with "namespace".
  auto chunks = ChunkDocument(cc, DocKind::kCode, {60, 0});
  std::vector<std::string> headings;
  for (const Chunk& c : chunks) headings.push_back(c.heading);
  EXPECT_EQ(headings, (std::vector<std::string>{"namespace a", "int Add(int x, int y)",
                                                "class Widget", "void Widget::Draw()"}));
  EXPECT_EQ(chunks[0].line_start, 1);
  // The comment above a definition belongs to it.
  EXPECT_EQ(chunks[1].line_start, 5);
  EXPECT_EQ(chunks[1].line_end, 8);
  ExpectConsistent(cc, chunks);
}

TEST(ChunkerTest, CodeKnowsSeveralLanguages) {
  struct Case {
    std::string text;
    std::vector<std::string> headings;
  };
  std::vector<Case> cases = {
      {"import os\n\n@cache\ndef load(path):\n    return 1\n\nclass Config:\n    x = 1\n",
       {"", "def load(path):", "class Config:"}},
      {"package main\n\nfunc main() {\n}\n\ntype Server struct {\n}\n",
       {"", "func main()", "type Server struct"}},
      {"use std::io;\n\n#[derive(Debug)]\npub struct P {\n}\n\nimpl P {\n}\n\npub fn run() {\n}\n",
       {"", "pub struct P", "impl P", "pub fn run()"}},
      {"import x from 'y';\n\nexport function go(a) {\n}\n\nexport class K {\n}\n",
       {"", "export function go(a)", "export class K"}},
      {"#!/bin/sh\nset -e\n\nbuild() {\n  make\n}\n\nfunction clean {\n  rm -rf b\n}\n",
       {"", "build()", "function clean"}},
      {"package p;\n\npublic class Main {\n  void f() {}\n}\n", {"", "public class Main"}},
  };
  for (const Case& c : cases) {
    auto chunks = ChunkDocument(c.text, DocKind::kCode, {12, 0});
    std::vector<std::string> headings;
    for (const Chunk& ch : chunks) {
      if (headings.empty() || headings.back() != ch.heading) headings.push_back(ch.heading);
    }
    EXPECT_EQ(headings, c.headings) << c.text;
    ExpectConsistent(c.text, chunks);
  }
}

TEST(ChunkerTest, CodeWithoutDefinitionsFallsBackToLineWindows) {
  std::string text;
  for (int i = 0; i < 100; ++i)
    text += "  x" + std::to_string(i) + " = " + std::to_string(i) + "\n";
  auto chunks = ChunkDocument(text, DocKind::kCode, {200, 0});
  ASSERT_GT(chunks.size(), 4u);
  int next = 1;
  for (const Chunk& c : chunks) {
    EXPECT_LE(c.content.size(), 200u);
    EXPECT_EQ(c.line_start, next);  // no overlap asked: consecutive windows
    next = c.line_end + 1;
  }
  EXPECT_EQ(next, 101);
  ExpectConsistent(text, chunks);
}

TEST(ChunkerTest, TextSplitsOnParagraphs) {
  const std::string text = "First para\nstill first.\n\n\nSecond para.\n\nThird paragraph here.\n";
  auto chunks = ChunkDocument(text, DocKind::kText, {30, 0});
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].content, "First para\nstill first.");
  EXPECT_EQ(chunks[1].line_start, 5);
  EXPECT_EQ(chunks[1].line_end, 5);
  EXPECT_EQ(chunks[2].content, "Third paragraph here.");
  // With room, paragraphs merge (blank lines between them kept).
  auto merged = ChunkDocument(text, DocKind::kText, {});
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_EQ(merged[0].line_start, 1);
  EXPECT_EQ(merged[0].line_end, 7);
}

TEST(ChunkerTest, LongSectionsAreWindowedWithOverlap) {
  std::string text;
  for (int i = 1; i <= 200; ++i) text += "line number " + std::to_string(i) + " of the text\n";
  ChunkOptions o{300, 100};
  auto chunks = ChunkDocument(text, DocKind::kText, o);
  ASSERT_GT(chunks.size(), 5u);
  EXPECT_EQ(chunks.front().line_start, 1);
  EXPECT_EQ(chunks.back().line_end, 200);
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_LE(chunks[i].content.size(), 300u);
    if (i == 0) continue;
    // Each window starts inside the previous one (overlap) but further on.
    EXPECT_GT(chunks[i].line_start, chunks[i - 1].line_start);
    EXPECT_LE(chunks[i].line_start, chunks[i - 1].line_end);
    int overlap_lines = chunks[i - 1].line_end - chunks[i].line_start + 1;
    // Lines are ~27 characters: 100 characters of overlap is 3 lines.
    EXPECT_EQ(overlap_lines, 3);
  }
  ExpectConsistent(text, chunks);
}

TEST(ChunkerTest, ALineLongerThanChunkSizeIsCut) {
  std::string text = "short\n\n" + std::string(1000, 'a') + "\n\nafter\n";
  auto chunks = ChunkDocument(text, DocKind::kText, {300, 50});
  size_t long_pieces = 0;
  for (const Chunk& c : chunks) {
    EXPECT_LE(c.content.size(), 300u);
    if (c.line_start == 3) {
      ++long_pieces;
      EXPECT_EQ(c.line_end, 3);
    }
  }
  // 1000 characters in pieces of 300 stepping by 250: 4 pieces.
  EXPECT_EQ(long_pieces, 4u);
  EXPECT_EQ(chunks.front().content, "short");
  EXPECT_EQ(chunks.back().content, "after");
  ExpectConsistent(text, chunks);
}

TEST(ChunkerTest, CuttingALongLineKeepsUtf8SequencesWhole) {
  std::string line;
  for (int i = 0; i < 400; ++i) line += "é";  // 2 bytes each
  auto chunks = ChunkDocument(line, DocKind::kText, {101, 10});
  ASSERT_GT(chunks.size(), 1u);
  for (const Chunk& c : chunks) {
    EXPECT_EQ(c.content.size() % 2, 0u);
    EXPECT_NE(static_cast<unsigned char>(c.content[0]) & 0xC0, 0x80);
  }
}

TEST(ChunkerTest, CrlfGivesTheSameChunksAsLf) {
  const std::string lf = "# A\r\none\r\n\r\n# B\r\ntwo\r\n";
  std::string unix_text = lf;
  for (size_t p; (p = unix_text.find('\r')) != std::string::npos;) unix_text.erase(p, 1);
  auto a = ChunkDocument(lf, DocKind::kMarkdown, {8, 0});
  auto b = ChunkDocument(unix_text, DocKind::kMarkdown, {8, 0});
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].content, b[i].content);
    EXPECT_EQ(a[i].heading, b[i].heading);
    EXPECT_EQ(a[i].line_start, b[i].line_start);
    EXPECT_EQ(a[i].line_end, b[i].line_end);
    EXPECT_EQ(a[i].content.find('\r'), std::string::npos);
  }
}

TEST(ChunkerTest, InvalidUtf8AndBinaryNeverCrash) {
  std::string junk;
  uint32_t x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1103515245 + 12345;
    junk.push_back(static_cast<char>(x >> 16));
  }
  junk += "\xC3";  // a cut sequence at the very end
  for (DocKind k : {DocKind::kMarkdown, DocKind::kCode, DocKind::kText}) {
    for (ChunkOptions o : {ChunkOptions{}, ChunkOptions{1, 0}, ChunkOptions{5, 4},
                           ChunkOptions{0, -3}, ChunkOptions{64, 500}}) {
      auto chunks = ChunkDocument(junk, k, o);
      for (const Chunk& c : chunks) EXPECT_FALSE(c.content.empty());
    }
  }
}

TEST(ChunkerTest, Deterministic) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += (i % 17 == 0 ? "# H" : "word ") + std::to_string(i) + "\n";
  auto a = ChunkDocument(text, DocKind::kMarkdown, {200, 50});
  auto b = ChunkDocument(text, DocKind::kMarkdown, {200, 50});
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].content, b[i].content);
}

TEST(ChunkerTest, FastOnLargeInput) {
  // 20,000 chunks' worth of text (default chunk size), in Markdown sections;
  // bench/memory_bench measures 100,000.
  std::string doc;
  doc.reserve(25'000'000);
  std::string para;
  for (int i = 0; i < 20; ++i) para += "Some words of a sentence that goes on for a while here.\n";
  for (int i = 0; doc.size() < 20'000'000; ++i) {
    doc += "## Section " + std::to_string(i) + "\n" + para + "\n";
  }
  auto start = std::chrono::steady_clock::now();
  auto chunks = ChunkDocument(doc, DocKind::kMarkdown, {});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  EXPECT_GT(chunks.size(), 15'000u);
  // About 0.1 s on an idle machine; generous for shared cores and debug builds.
  EXPECT_LT(ms, 2000) << chunks.size() << " chunks";
  std::printf("chunked %zu MB into %zu chunks in %lld ms\n", doc.size() >> 20, chunks.size(),
              static_cast<long long>(ms));
}

}  // namespace
}  // namespace af
