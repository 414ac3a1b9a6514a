#include "af/memory/ranking.h"

#include <algorithm>
#include <cmath>

namespace af {
namespace {

// Reciprocal rank term of one ranking; absent (rank <= 0) contributes nothing.
double Rrf(double weight, double k, int rank) {
  if (rank <= 0 || weight <= 0) return 0;
  return weight / (k + rank);
}

}  // namespace

std::vector<Scored> FuseRankings(const std::vector<Candidate>& candidates,
                                 const FusionOptions& options, int64_t now_ms) {
  std::vector<Scored> out;
  if (candidates.empty()) return out;
  // A non-positive k would divide by zero at rank 1; treat it as the usual 60.
  const double k = options.k > 0 ? options.k : 60;
  const bool by_scores = options.method == FusionMethod::kScores;
  // Out-of-range shares are clamped rather than refused: a config typo should
  // not break search. NaN counts as the default.
  const double share = std::isnan(options.text_share) ? FusionOptions{}.text_share
                                                      : std::clamp(options.text_share, 0.0, 1.0);
  double max_text = 0, max_sim = 0;
  for (const Candidate& c : candidates) {
    if (c.text_rank > 0 && std::isfinite(c.text_score)) max_text = std::max(max_text, c.text_score);
    if (std::isfinite(c.similarity)) max_sim = std::max(max_sim, c.similarity);
  }
  // The best possible: first (best score) in both.
  const double best_fused =
      by_scores ? 1.0 : Rrf(options.text_weight, k, 1) + Rrf(options.vector_weight, k, 1);
  auto fuse = [&](const Candidate& c) {
    if (!by_scores)
      return Rrf(options.text_weight, k, c.text_rank) +
             Rrf(options.vector_weight, k, c.vector_rank);
    double t = (c.text_rank > 0 && max_text > 0 && std::isfinite(c.text_score))
                   ? std::max(0.0, c.text_score) / max_text
                   : 0;
    double v =
        (max_sim > 0 && std::isfinite(c.similarity)) ? std::max(0.0, c.similarity) / max_sim : 0;
    return share * t + (1 - share) * v;
  };
  const double half_life = options.recency_half_life_days > 0 ? options.recency_half_life_days : 30;

  struct Row {
    Scored s;
    double fused_norm;  // fused / best possible, in [0, 1]
  };
  std::vector<Row> rows;
  rows.reserve(candidates.size());
  for (const Candidate& c : candidates) {
    double fused = fuse(c);
    double fused_norm = best_fused > 0 ? fused / best_fused : 0;
    int importance = std::clamp(c.importance, 1, 10);
    double score = fused_norm * (1 + options.importance_weight * (importance - 5) / 5.0);
    if (c.updated_ms > 0 && options.recency_weight != 0) {
      // A timestamp from the future counts as brand new.
      double age_days =
          std::max<double>(0, static_cast<double>(now_ms - c.updated_ms)) / 86400000.0;
      score *= 1 + options.recency_weight * std::pow(0.5, age_days / half_life);
    }
    if (!std::isfinite(score) || score < 0) score = 0;
    rows.push_back({{c.label, score, c.similarity, c.text_score}, fused_norm});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.s.score != b.s.score) return a.s.score > b.s.score;
    return a.s.label < b.s.label;
  });
  // Importance and recency can push the raw score past 1. Rescale so the best
  // result keeps its own fusion score: it is 1.0 exactly when it was first in
  // every ranking that counts, and every other score keeps its ratio to it.
  const double top = rows.front().s.score;
  const double scale = top > 0 ? std::min(1.0, rows.front().fused_norm) / top : 0;
  out.reserve(rows.size());
  for (Row& r : rows) {
    r.s.score = std::clamp(r.s.score * scale, 0.0, 1.0);
    out.push_back(r.s);
  }
  return out;
}

}  // namespace af
