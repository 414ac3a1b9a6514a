#pragma once
// How the knowledge base orders search results: the full-text (BM25) and
// vector results are fused, then importance and recency are applied. A pure
// function, so the rules are tested without a database. Two fusions:
//
//   scores (default): a convex combination of the two scores, each divided
//   by the best of its kind among the candidates:
//     fused = text_share * text_score / max(text_score)
//           + (1 - text_share) * similarity / max(similarity)
//     (a term is 0 when the candidate has no such score: not matched by
//      words, or no similarity known; negative similarities count as 0)
//   rrf: reciprocal rank fusion, which looks at positions only:
//     fused = w_text / (k + text_rank) + w_vector / (k + vector_rank)
//     (a term is 0 when the candidate is absent from that ranking; ranks
//      are 1-based)
// then, for both:
//   score = fused / fused_max_possible       (in [0, 1])
//           * (1 + importance_weight * (importance - 5) / 5)
//           * (1 + recency_weight * 0.5 ^ (age_days / recency_half_life_days))
// then normalised so the best result scores 1.0 only when it was first in
// both rankings. Ties break by label (stable, deterministic).

#include <cstdint>
#include <vector>

namespace af {

enum class FusionMethod { kScores, kRrf };

// Defaults chosen on half of the retrieval evaluation's queries (bench/kb_eval.cc,
// bench/RESULTS.md): the local embedder's ranking is weaker than BM25's, so it
// refines BM25's order rather than voting as an equal. Score fusion beats rank
// fusion there because how far apart two results are matters, not only their
// order: a chunk far ahead on words keeps its lead.
struct FusionOptions {
  FusionMethod method = FusionMethod::kScores;
  double text_share = 0.65;        // scores: share of the BM25 score, in [0, 1]
  double k = 10;                   // rrf: constant
  double text_weight = 4.0;        // rrf: weight of the BM25 ranking
  double vector_weight = 1.0;      // rrf: weight of the vector ranking
  double importance_weight = 0.2;  // 0 = importance ignored
  double recency_weight = 0.1;     // 0 = recency ignored
  double recency_half_life_days = 30;
};

struct Candidate {
  int64_t label = 0;
  int text_rank = 0;       // 1-based; 0 = not found by full-text search
  double text_score = 0;   // BM25 (higher = better); used by score fusion and shown
  int vector_rank = 0;     // 1-based; 0 = not found by vector search
  double similarity = 0;   // cosine (0 = unknown); score fusion, display, similarity_threshold
  int importance = 5;      // 1..10 (chunks: 5)
  int64_t updated_ms = 0;  // 0 = unknown (no recency boost)
};

struct Scored {
  int64_t label = 0;
  double score = 0;  // in [0, 1], higher = better
  double similarity = 0;
  double text_score = 0;
};

// Best first. `now_ms` is the clock for recency.
std::vector<Scored> FuseRankings(const std::vector<Candidate>& candidates,
                                 const FusionOptions& options, int64_t now_ms);

}  // namespace af
