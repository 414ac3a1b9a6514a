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
  const double best_fused = Rrf(options.text_weight, k, 1) + Rrf(options.vector_weight, k, 1);
  const double half_life = options.recency_half_life_days > 0 ? options.recency_half_life_days : 30;

  struct Row {
    Scored s;
    double fused_norm;  // fused / best possible, in [0, 1]
  };
  std::vector<Row> rows;
  rows.reserve(candidates.size());
  for (const Candidate& c : candidates) {
    double fused =
        Rrf(options.text_weight, k, c.text_rank) + Rrf(options.vector_weight, k, c.vector_rank);
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
