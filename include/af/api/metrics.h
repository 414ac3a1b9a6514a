#pragma once
// GET /metrics in the Prometheus text exposition format (version 0.0.4),
// written by hand: a handful of counters, gauges and one histogram do not
// need a library.
//
// Metrics (all prefixed af_):
//   http_requests_total{method,route,status}            counter
//   http_request_duration_seconds{method,route}          histogram
//     route is the matched pattern ("/api/v1/features/:id"), "unmatched" for
//     404s, so raw ids never become label values.
//   features{status}, tasks{role,status}                 gauges (store, at scrape)
//   llm_calls_total{provider,model,status},
//   llm_tokens_total{provider,model,direction="input|output"},
//   llm_cost_usd_total{provider,model}                   counters (llm_calls table)
//   agents{role,state}                                   gauge (store's agents, the
//                                                        liveness rule applied)
//   worker_up{host,pid,roles}                            gauge, 1 while the process
//                                                        has a live agent, else 0
//   worker_agents{host,pid,roles}                        gauge, its agent records
//     (one series per process running agents: serve and each worker; roles
//     comma-separated in pipeline order)
//   llm_circuit_state{provider,state="closed|open|half_open"}  gauge, 1 for the
//                                                        current state, else 0
//   llm_circuit_consecutive_failures{provider}           gauge
//   llm_rate_limit_pauses_total{provider}                counter (shared pauses)
//     (the three llm_ families: the HTTP providers only, not replay)
//   bus_queue_messages{queue,state="ready|pending|dead"} gauge (Bus::Stats)
//   sse_clients                                          gauge (EventHub subscribers)
//   scrape_errors_total                                  counter of failed source reads
// A source that fails is left out of that scrape (and counted), the rest is
// still served: monitoring must not go dark because one part is down.
//
// Thread safety: HttpMetrics::Observe and every Render may be called
// concurrently from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "af/api/http_server.h"

namespace af {

class Store;
class Bus;
class EventHub;
class LlmClient;

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Builds exposition text. Each family gets its # HELP and # TYPE once, before
// its first sample; samples of one family must be written together.
class PromWriter {
 public:
  // type: "counter", "gauge" or "histogram".
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, const MetricLabels& labels, double value);
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// A label value escaped for the text format (\\, \", \n).
std::string EscapeLabelValue(std::string_view value);
// A sample value: integers without a fraction, "+Inf", "-Inf", "NaN", else
// shortest round-trip decimal.
std::string FormatMetricValue(double value);

// Request counters and latency histograms, fed from the server's access log.
class HttpMetrics {
 public:
  // Upper bounds in seconds, ascending.
  explicit HttpMetrics(std::vector<double> buckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5, 1, 2.5, 5, 10});
  void Observe(const AccessLogEntry& entry);
  // Appends the two http families.
  void Render(PromWriter& out) const;

 private:
  struct Series {
    std::vector<uint64_t> buckets;  // non-cumulative counts per bucket (+Inf last)
    double sum = 0;
    uint64_t count = 0;
  };
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;  // method, route, status
  std::map<std::pair<std::string, std::string>, Series> latency_;           // method, route
};

struct MetricsSources {
  Store* store = nullptr;         // features, tasks, LLM usage, agents; null: left out
  Bus* bus = nullptr;             // queue depths; null: left out
  const EventHub* hub = nullptr;  // SSE clients; null: left out
  const HttpMetrics* http = nullptr;
  const LlmClient* llm = nullptr;  // circuit breaker and rate-limit pauses; null: left out
  // Heartbeat age at which an agent shows offline (OfflineAfter(config)).
  std::chrono::milliseconds offline_after{90000};
};

// The whole exposition text, read from the sources now.
std::string RenderMetrics(const MetricsSources& sources);

// GET /metrics (public, like /health) serving RenderMetrics with
// Content-Type "text/plain; version=0.0.4; charset=utf-8". The sources must
// outlive the server.
void AddMetricsRoute(HttpServer& server, MetricsSources sources);

}  // namespace af
