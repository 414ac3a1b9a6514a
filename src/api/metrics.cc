#include "af/api/metrics.h"

#include <charconv>
#include <chrono>
#include <cmath>

#include "af/agents/liveness.h"
#include "af/api/events_stream.h"
#include "af/bus/bus.h"
#include "af/core/utc_time.h"
#include "af/llm/llm_client.h"
#include "af/store/store.h"

namespace af {

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(value);
}

void PromWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PromWriter::Sample(std::string_view name, const MetricLabels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      out_ += EscapeLabelValue(v);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += FormatMetricValue(value);
  out_ += '\n';
}

HttpMetrics::HttpMetrics(std::vector<double> buckets) : bounds_(std::move(buckets)) {}

void HttpMetrics::Observe(const AccessLogEntry& entry) {
  const std::string route = entry.route.empty() ? "unmatched" : entry.route;
  const double seconds = static_cast<double>(entry.duration_us) / 1e6;
  size_t bucket = 0;
  while (bucket < bounds_.size() && seconds > bounds_[bucket]) ++bucket;
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{entry.method, route, entry.status}];
  Series& series = latency_[{entry.method, route}];
  if (series.buckets.empty()) series.buckets.assign(bounds_.size() + 1, 0);
  ++series.buckets[bucket];
  series.sum += seconds;
  ++series.count;
}

void HttpMetrics::Render(PromWriter& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out.Family("af_http_requests_total", "counter", "HTTP requests answered, by route and status.");
  for (const auto& [key, n] : requests_) {
    const auto& [method, route, status] = key;
    out.Sample("af_http_requests_total",
               {{"method", method}, {"route", route}, {"status", std::to_string(status)}},
               static_cast<double>(n));
  }
  out.Family("af_http_request_duration_seconds", "histogram",
             "Time from the request being read to the response being queued.");
  for (const auto& [key, series] : latency_) {
    const auto& [method, route] = key;
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      cumulative += series.buckets[i];
      std::string le = i < bounds_.size() ? FormatMetricValue(bounds_[i]) : "+Inf";
      out.Sample("af_http_request_duration_seconds_bucket",
                 {{"method", method}, {"route", route}, {"le", le}},
                 static_cast<double>(cumulative));
    }
    out.Sample("af_http_request_duration_seconds_sum", {{"method", method}, {"route", route}},
               series.sum);
    out.Sample("af_http_request_duration_seconds_count", {{"method", method}, {"route", route}},
               static_cast<double>(series.count));
  }
}

namespace {

void RenderStore(Store& store, std::chrono::milliseconds offline_after, PromWriter& out,
                 int* errors) {
  auto stats = store.Stats();
  if (stats.ok()) {
    out.Family("af_features", "gauge", "Features by status.");
    for (const auto& c : stats->features_by_status)
      out.Sample("af_features", {{"status", c.key}}, static_cast<double>(c.count));
    out.Family("af_tasks", "gauge", "Tasks by role and status.");
    for (const auto& c : stats->tasks_by_role_status) {
      size_t slash = c.key.rfind('/');
      std::string role = slash == std::string::npos ? c.key : c.key.substr(0, slash);
      std::string status = slash == std::string::npos ? "" : c.key.substr(slash + 1);
      out.Sample("af_tasks", {{"role", role}, {"status", status}}, static_cast<double>(c.count));
    }
    out.Family("af_llm_calls_total", "counter", "LLM calls by provider, model and outcome.");
    for (const auto& u : stats->llm_usage)
      out.Sample("af_llm_calls_total",
                 {{"provider", u.provider}, {"model", u.model}, {"status", u.status}},
                 static_cast<double>(u.calls));
    // Tokens and cost do not depend on the outcome label: sum over it.
    std::map<std::pair<std::string, std::string>, StoreStats::LlmUsage> by_model;
    for (const auto& u : stats->llm_usage) {
      auto& t = by_model[{u.provider, u.model}];
      t.input_tokens += u.input_tokens;
      t.output_tokens += u.output_tokens;
      t.cost_usd += u.cost_usd;
    }
    out.Family("af_llm_tokens_total", "counter", "LLM tokens by provider, model and direction.");
    for (const auto& [key, t] : by_model) {
      out.Sample("af_llm_tokens_total",
                 {{"provider", key.first}, {"model", key.second}, {"direction", "input"}},
                 static_cast<double>(t.input_tokens));
      out.Sample("af_llm_tokens_total",
                 {{"provider", key.first}, {"model", key.second}, {"direction", "output"}},
                 static_cast<double>(t.output_tokens));
    }
    out.Family("af_llm_cost_usd_total", "counter", "LLM cost in US dollars by provider and model.");
    for (const auto& [key, t] : by_model)
      out.Sample("af_llm_cost_usd_total", {{"provider", key.first}, {"model", key.second}},
                 t.cost_usd);
  } else {
    ++*errors;
  }

  // Cost per role (all time) and since midnight UTC (against budget.daily_usd).
  auto usage = store.UsageBreakdown({});
  if (usage.ok()) {
    auto cost_today = store.CostSince(StartOfUtcDayMs(UnixNowMs()));
    std::map<std::string, double> by_role;
    for (const auto& row : *usage) by_role[row.role] += row.totals.cost_usd;
    out.Family("af_llm_cost_usd_by_role_total", "counter", "LLM cost in US dollars by agent role.");
    for (const auto& [role, cost] : by_role)
      out.Sample("af_llm_cost_usd_by_role_total", {{"role", role}}, cost);
    out.Family("af_llm_cost_usd_today", "gauge", "LLM cost in US dollars since 00:00 UTC.");
    out.Sample("af_llm_cost_usd_today", {}, cost_today.ok() ? *cost_today : 0.0);
    if (!cost_today.ok()) ++*errors;
  } else {
    ++*errors;
  }

  auto agents = store.ListAgents();
  if (agents.ok()) {
    // The liveness rule of every view (af/agents/liveness.h).
    const int64_t now = UnixNowMs();
    std::map<std::pair<std::string, std::string>, int64_t> counts;
    for (const auto& a : *agents) ++counts[{a.role, DisplayedAgentState(a, now, offline_after)}];
    out.Family("af_agents", "gauge", "Agents by role and state.");
    for (const auto& [key, n] : counts)
      out.Sample("af_agents", {{"role", key.first}, {"state", key.second}}, static_cast<double>(n));
    // Per process that runs agents (serve, workers); roles joined by commas.
    const auto workers = WorkerStatuses(*agents, now, offline_after);
    auto labels = [](const WorkerStatus& w) {
      std::string roles;
      for (const auto& r : w.roles) roles += (roles.empty() ? "" : ",") + r;
      return MetricLabels{{"host", w.host}, {"pid", std::to_string(w.pid)}, {"roles", roles}};
    };
    out.Family("af_worker_up", "gauge",
               "1 when a process running agents has a live agent (a heartbeat within three "
               "intervals), else 0.");
    for (const auto& w : workers) out.Sample("af_worker_up", labels(w), w.live > 0 ? 1 : 0);
    out.Family("af_worker_agents", "gauge", "Agent records per process running agents.");
    for (const auto& w : workers)
      out.Sample("af_worker_agents", labels(w), static_cast<double>(w.agents));
  } else {
    ++*errors;
  }
}

void RenderBus(Bus& bus, PromWriter& out, int* errors) {
  auto queues = bus.Queues();
  if (!queues.ok()) {
    ++*errors;
    return;
  }
  out.Family("af_bus_queue_messages", "gauge", "Messages per work queue and state.");
  for (const std::string& q : *queues) {
    auto stats = bus.Stats(q);
    if (!stats.ok()) {
      ++*errors;
      continue;
    }
    out.Sample("af_bus_queue_messages", {{"queue", q}, {"state", "ready"}},
               static_cast<double>(stats->ready));
    out.Sample("af_bus_queue_messages", {{"queue", q}, {"state", "pending"}},
               static_cast<double>(stats->pending));
    out.Sample("af_bus_queue_messages", {{"queue", q}, {"state", "dead"}},
               static_cast<double>(stats->dead));
  }
}

void RenderLlm(const LlmClient& llm, PromWriter& out) {
  const LlmHealth h = llm.Health();
  if (!h.breaker) return;
  const std::string provider(llm.provider());
  out.Family("af_llm_circuit_state", "gauge",
             "LLM provider circuit breaker: 1 for the current state, 0 for the others.");
  for (const char* state : {"closed", "open", "half_open"}) {
    out.Sample("af_llm_circuit_state", {{"provider", provider}, {"state", state}},
               h.state == state ? 1 : 0);
  }
  out.Family("af_llm_circuit_consecutive_failures", "gauge",
             "LLM calls in a row that failed with an outage.");
  out.Sample("af_llm_circuit_consecutive_failures", {{"provider", provider}},
             static_cast<double>(h.consecutive_failures));
  out.Family("af_llm_rate_limit_pauses_total", "counter",
             "Times all calls to the LLM provider were paused after a rate-limit answer.");
  out.Sample("af_llm_rate_limit_pauses_total", {{"provider", provider}},
             static_cast<double>(h.rate_limit_pauses));
}

}  // namespace

std::string RenderMetrics(const MetricsSources& sources) {
  static std::atomic<uint64_t> scrape_errors{0};
  PromWriter out;
  int errors = 0;
  if (sources.http) sources.http->Render(out);
  if (sources.store) RenderStore(*sources.store, sources.offline_after, out, &errors);
  if (sources.bus) RenderBus(*sources.bus, out, &errors);
  if (sources.llm) RenderLlm(*sources.llm, out);
  if (sources.hub) {
    out.Family("af_sse_clients", "gauge", "Connected server-sent-event clients.");
    out.Sample("af_sse_clients", {}, static_cast<double>(sources.hub->subscribers()));
  }
  scrape_errors += static_cast<uint64_t>(errors);
  out.Family("af_scrape_errors_total", "counter",
             "Metric sources that could not be read during scrapes.");
  out.Sample("af_scrape_errors_total", {}, static_cast<double>(scrape_errors.load()));
  return out.text();
}

void AddMetricsRoute(HttpServer& server, MetricsSources sources) {
  server.Route("GET", "/metrics", [sources](const HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = RenderMetrics(sources);
    response.headers.emplace_back("Cache-Control", "no-store");
    return response;
  });
}

}  // namespace af
