#include "af/api/events_stream.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <utility>

#include "af/agents/pipeline.h"
#include "af/api/errors.h"
#include "af/api/middleware.h"
#include "af/core/log.h"

namespace af {

std::string FormatSseEvent(const Event& event) {
  std::string out = "id: " + std::to_string(event.seq) + "\nevent: " + event.type + "\ndata: ";
  // dump() escapes control characters, so the JSON is one line and cannot
  // end the SSE field early.
  out += event.ToJson().dump();
  out += "\n\n";
  return out;
}

Result<std::optional<int64_t>> ParseLastEventId(std::string_view value) {
  if (value.empty()) return std::optional<int64_t>();
  int64_t seq = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seq);
  if (ec != std::errc() || end != value.data() + value.size() || seq < 0) {
    return InvalidArgument(
        "Last-Event-ID '" + std::string(value.substr(0, 40)) + "' is not an event sequence number",
        "send the id: of the last event received (a non-negative integer), "
        "or no Last-Event-ID to start with new events");
  }
  return std::optional<int64_t>(seq);
}

EventHub::EventHub(Store* store, EventHubOptions options)
    : store_(store),
      options_(std::move(options)),
      read_failures_(log::Get("api"), "event stream: reading new events") {}

EventHub::~EventHub() { Stop(); }

Status EventHub::Start() {
  if (options_.page_size < 1 || options_.page_size > 10000) {
    return InvalidArgument(
        "event hub page_size must be 1..10000, got " + std::to_string(options_.page_size),
        "use the default 1000");
  }
  if (options_.delivery_threads < 1 || options_.delivery_threads > 16) {
    return InvalidArgument("event hub delivery_threads must be 1..16, got " +
                               std::to_string(options_.delivery_threads),
                           "use the default 2");
  }
  // Read without mu_: the store calls Wake (which takes mu_) with its own
  // lock held, so mu_ is never held while calling the store.
  AF_ASSIGN_OR_RETURN(int64_t latest, store_->LatestEventSeq());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) {
      return FailedPrecondition("the event hub is already started", "call Start() once");
    }
    head_ = latest;
    started_ = true;
    for (int i = 1; i < options_.delivery_threads; ++i)
      helpers_.emplace_back([this, i] { HelperLoop(static_cast<size_t>(i)); });
    thread_ = std::thread([this] { Run(); });
  }
  store_->SetEventsListener([this] { Wake(); });
  StartFileWatch();
  return Status::Ok();
}

void EventHub::StartFileWatch() {
  if (!options_.watch_file) return;
  // Describe() is "sqlite:/abs/path/file.db" for a SQLite file (see Store).
  const std::string where = store_->Describe();
  constexpr std::string_view kSqlite = "sqlite:";
  if (where.rfind(kSqlite, 0) != 0 || where == "sqlite::memory:") return;
  const std::filesystem::path file(where.substr(kSqlite.size()));
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return;  // the poll still finds everything
  // The directory, not the files: the -wal file comes and goes with the
  // last connection. A commit writes the -wal file (the main file in
  // rollback-journal mode, and at checkpoints).
  const std::string dir = file.has_parent_path() ? file.parent_path().string() : ".";
  int stop = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  // Tried once here, so a file system without inotify is found (and said)
  // at the start; from then on the directory is watched only while someone
  // is subscribed (UpdateWatchLocked).
  const int probe = stop < 0 ? -1 : inotify_add_watch(fd, dir.c_str(), IN_MODIFY);
  if (probe < 0) {
    log::Get("api")->debug("event stream: no file watch on {} ({}); polling every {} ms", dir,
                           std::strerror(errno), options_.poll_interval.count());
    close(fd);
    if (stop >= 0) close(stop);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  watch_fd_ = fd;
  watch_wd_ = probe;
  watch_dir_ = dir;
  watch_stop_fd_ = stop;
  watch_names_ = {file.filename().string() + "-wal", file.filename().string()};
  watch_thread_ = std::thread([this] { WatchFiles(); });
  UpdateWatchLocked();
}

void EventHub::UpdateWatchLocked() {
  if (watch_fd_ < 0) return;
  const bool wanted = !subscribers_.empty();
  if (wanted == (watch_wd_ >= 0)) return;
  if (!wanted) {
    inotify_rm_watch(watch_fd_, watch_wd_);
    watch_wd_ = -1;
    return;
  }
  watch_wd_ = inotify_add_watch(watch_fd_, watch_dir_.c_str(), IN_MODIFY);
  if (watch_wd_ < 0) {
    log::Get("api")->debug("event stream: no file watch on {} ({}); polling every {} ms",
                           watch_dir_, std::strerror(errno), options_.poll_interval.count());
    return;
  }
  // A commit by another process between the subscriber's start and the
  // watch is read now, not at the next poll.
  wake_ = true;
  cv_.notify_all();
}

void EventHub::WatchFiles() {
  alignas(inotify_event) char buf[16384];
  while (true) {
    pollfd fds[2] = {{watch_fd_, POLLIN, 0}, {watch_stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;  // the poll still finds everything
    }
    if (fds[1].revents != 0) return;
    bool commit = false;
    for (ssize_t n; (n = read(watch_fd_, buf, sizeof buf)) > 0;) {
      for (ssize_t off = 0; off < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
        commit |= (e->mask & IN_Q_OVERFLOW) != 0;  // events were lost: read to be sure
        if (e->len > 0) {
          const std::string_view name(e->name);  // NUL-padded to len
          for (const auto& w : watch_names_) commit |= name == w;
        }
        off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
      }
    }
    // Nobody subscribed: nothing to hurry for (the poll moves the head).
    if (commit && subscribers() > 0) {
      Wake();
      // At most one read per millisecond from file changes: every write to
      // the database (heartbeats, task updates, this process's own appends)
      // touches the file, and a burst of them needs one read, not hundreds.
      pollfd stop_only{watch_stop_fd_, POLLIN, 0};
      if (poll(&stop_only, 1, 1) > 0) return;
      // The file is written before the commit becomes visible to readers
      // (SQLite publishes it in the -shm index afterwards), so the read above
      // may have come too early: read once more after the pause. A commit
      // published later still is found by the next write or the poll.
      Wake();
    }
  }
}

void EventHub::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Nobody to deliver to: the poll keeps the head (PollOnce), and a new
    // subscriber starts from the store's latest event or replays from it.
    if (subscribers_.empty()) return;
    wake_ = true;
  }
  cv_.notify_one();
}

void EventHub::Stop() {
  std::vector<std::shared_ptr<Subscriber>> subs;
  bool started = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    started = started_;
  }
  if (started) store_->SetEventsListener({});  // before the hub goes away
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(shard_mu_);
    helpers_stop_ = true;
  }
  shard_cv_.notify_all();
  for (auto& h : helpers_) h.join();
  helpers_.clear();
  if (watch_thread_.joinable()) {
    const uint64_t one = 1;
    (void)!write(watch_stop_fd_, &one, sizeof one);
    watch_thread_.join();
  }
  if (watch_fd_ >= 0) close(watch_fd_);
  if (watch_stop_fd_ >= 0) close(watch_stop_fd_);
  watch_fd_ = watch_stop_fd_ = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    subs.swap(subscribers_);
  }
  for (auto& sub : subs) sub->stream->Close();
}

void EventHub::Subscribe(std::shared_ptr<ResponseStream> stream, std::optional<int64_t> after_seq,
                         std::string feature_id, bool close_at_head, std::string key_hash) {
  auto sub = std::make_shared<Subscriber>();
  sub->feature_id = std::move(feature_id);
  sub->close_at_head = close_at_head;
  sub->key_hash = std::move(key_hash);
  // Written before the poller can see the subscriber, so it comes first.
  stream->Write("retry: " + std::to_string(options_.retry.count()) + "\n\n");
  sub->stream = std::move(stream);
  sub->last_write = std::chrono::steady_clock::now();
  std::optional<int64_t> latest;
  if (!after_seq) {
    if (auto seq = store_->LatestEventSeq(); seq.ok()) latest = *seq;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    sub->stream->Close();
    return;
  }
  // Without a resume point: from the store's latest event now, so nothing
  // appended before the client connected is sent (the poller's head may lag
  // by a poll). If that read fails, the poller's head is close enough.
  sub->cursor = after_seq ? *after_seq : std::max(head_.load(), latest.value_or(0));
  subscribers_.push_back(std::move(sub));
  UpdateWatchLocked();
  if (after_seq || close_at_head) {
    wake_ = true;
    cv_.notify_all();
  }
}

size_t EventHub::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_.size();
}

bool EventHub::Send(Subscriber& sub, std::string_view text,
                    std::chrono::steady_clock::time_point now) {
  if (text.empty()) return !sub.stream->closed();
  sub.last_write = now;
  return sub.stream->Write(text);
}

const std::string& EventHub::Batch::Formatted(size_t i) {
  if (!formatted_[i]) formatted_[i] = FormatSseEvent(events_[i]);
  return *formatted_[i];
}

const std::string& EventHub::Batch::Whole() {
  if (events_.size() == 1) return Formatted(0);
  if (!whole_) {
    size_t size = 0;
    for (size_t i = 0; i < events_.size(); ++i) size += Formatted(i).size();
    whole_.emplace();
    whole_->reserve(size);
    for (size_t i = 0; i < events_.size(); ++i) whole_->append(Formatted(i));
  }
  return *whole_;
}

void EventHub::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_ = false;
    lock.unlock();
    PollOnce();
    lock.lock();
    cv_.wait_for(lock, options_.poll_interval, [this] { return stopping_ || wake_; });
  }
}

void EventHub::Batch::Prepare() {
  for (size_t i = 0; i < events_.size(); ++i) Formatted(i);
  Whole();
}

void EventHub::RunSharded(size_t shards, const std::function<void(size_t)>& job) {
  shards = std::min(shards, helpers_.size() + 1);
  if (shards > 1) {
    std::lock_guard<std::mutex> lock(shard_mu_);
    shard_job_ = &job;
    shard_count_ = shards;
    shards_left_ = shards - 1;
    ++shard_round_;
    shard_cv_.notify_all();
  }
  job(0);
  if (shards > 1) {
    std::unique_lock<std::mutex> lock(shard_mu_);
    shard_cv_.wait(lock, [this] { return shards_left_ == 0; });
    shard_job_ = nullptr;
  }
}

void EventHub::HelperLoop(size_t shard) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(shard_mu_);
  while (true) {
    shard_cv_.wait(lock, [&] { return helpers_stop_ || shard_round_ != seen; });
    if (helpers_stop_) return;
    seen = shard_round_;
    if (shard >= shard_count_) continue;  // not needed this round
    const auto* job = shard_job_;
    lock.unlock();
    (*job)(shard);
    lock.lock();
    if (--shards_left_ == 0) shard_cv_.notify_all();
  }
}

bool EventHub::Deliver(Subscriber& sub, Batch& batch, int64_t upto, bool* all,
                       std::chrono::steady_clock::time_point now) {
  const std::vector<Event>& events = batch.events();
  const size_t buffered = sub.stream->buffered_bytes();
  const size_t cap = options_.max_buffered_bytes;
  const size_t budget = buffered >= cap ? 0 : cap - buffered;
  *all = true;
  // Every event of the batch is for this subscriber: the shared text, if it
  // fits (or goes into an empty buffer, as a single event always may).
  if (sub.feature_id.empty() && !events.empty() && sub.cursor < events.front().seq &&
      events.back().seq <= upto) {
    const std::string& whole = batch.Whole();
    if (whole.size() <= budget || (buffered == 0 && events.size() == 1)) {
      if (!Send(sub, whole, now)) return false;
      sub.stalled_since.reset();
      sub.cursor = events.back().seq;
      return true;
    }
  }
  std::string text;
  int64_t cursor = sub.cursor;
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    if (e.seq <= sub.cursor) continue;
    if (e.seq > upto) break;
    if (!sub.feature_id.empty() && e.feature_id != sub.feature_id) continue;
    // Formatted lazily: a paced subscriber takes only what fits its buffer.
    const std::string& f = batch.Formatted(i);
    const bool first_into_empty = buffered == 0 && text.empty();
    if (text.size() + f.size() > budget && !first_into_empty) {
      *all = false;
      break;
    }
    text += f;
    cursor = e.seq;
  }
  if (!text.empty()) {
    if (!Send(sub, text, now)) return false;
    sub.stalled_since.reset();
  } else if (!*all) {
    // Nothing fits: the client is not reading. Give it max_stall to recover.
    if (!sub.stalled_since) sub.stalled_since = now;
    if (now - *sub.stalled_since >= options_.max_stall) {
      sub.stream->Close();
      return false;
    }
  }
  sub.cursor = cursor;
  return !sub.stream->closed();
}

void EventHub::PollOnce() {
  bool idle = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle = subscribers_.empty();
  }
  if (idle) {
    // Nobody to deliver to: nothing is read (most of a server's life, and
    // all of a batch run's). The head is caught up once someone subscribes.
    head_stale_ = true;
    return;
  }
  if (head_stale_) {
    // Subscribers that arrived meanwhile start at or before the store's
    // latest event: those before it are served from the store, as any
    // subscriber behind the head is.
    auto latest = store_->LatestEventSeq();
    if (!latest.ok()) {
      read_failures_.Failed(latest.status());
      return;
    }
    head_ = std::max(head_.load(), *latest);
    head_stale_ = false;
  }
  const int64_t head = head_.load();
  auto fresh = store_->ListEvents({head, std::nullopt, options_.page_size});
  if (!fresh.ok()) {
    // Transient (the database locked by a writer, or restarting): try again
    // next poll, which during an outage is many times a second.
    read_failures_.Failed(fresh.status());
    return;
  }
  read_failures_.Succeeded();

  std::vector<std::shared_ptr<Subscriber>> subs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    subs = subscribers_;
  }
  const auto now = std::chrono::steady_clock::now();
  std::vector<Subscriber*> dead;
  auto is_dead = [&](Subscriber* s) {
    return std::find(dead.begin(), dead.end(), s) != dead.end();
  };

  // Behind the head (resumed from an older id, or paced by a full buffer):
  // served from the store, one page per poll each, so one long replay does
  // not starve live delivery to others.
  for (auto& sub : subs) {
    if (sub->cursor >= head) continue;
    EventFilter filter{sub->cursor, std::nullopt, options_.page_size};
    if (!sub->feature_id.empty()) filter.feature_id = sub->feature_id;
    auto page = store_->ListEvents(filter);
    if (!page.ok()) continue;  // retried next poll from the same cursor
    Batch batch(*page);
    bool all = false;
    if (!Deliver(*sub, batch, head, &all, now)) {
      dead.push_back(sub.get());
      continue;
    }
    if (all) {
      const bool short_page = static_cast<int>(page->size()) < options_.page_size;
      const bool past_head = !page->empty() && page->back().seq >= head;
      if (short_page || past_head) {
        sub->cursor = head;
      } else if (!page->empty()) {
        sub->cursor = std::max(sub->cursor, page->back().seq);
      }
    }
  }

  // Live: each new event formatted once, shared by every subscriber at the head.
  if (!fresh->empty()) {
    const int64_t new_head = fresh->back().seq;
    Batch batch(*fresh);
    std::vector<Subscriber*> at_head;
    for (auto& sub : subs)
      if (sub->cursor >= head && !is_dead(sub.get())) at_head.push_back(sub.get());
    // Shared out among the delivery threads, each subscriber to exactly one.
    const size_t shards = std::max<size_t>(1, at_head.size() / 64);
    if (shards > 1) batch.Prepare();  // read-only from here on
    std::vector<std::vector<Subscriber*>> shard_dead(shards);
    RunSharded(shards, [&](size_t k) {
      const size_t step = std::min(shards, helpers_.size() + 1);
      for (size_t i = k; i < at_head.size(); i += step) {
        Subscriber* sub = at_head[i];
        bool all = false;
        if (!Deliver(*sub, batch, new_head, &all, now)) {
          shard_dead[k].push_back(sub);
          continue;
        }
        if (all) sub->cursor = std::max(sub->cursor, new_head);
      }
    });
    for (const auto& d : shard_dead) dead.insert(dead.end(), d.begin(), d.end());
    head_ = new_head;
  }

  // Histories of finished features end once they are sent: Close() ends the
  // response after the queued events, and the client sees the stream finish.
  for (auto& sub : subs) {
    if (sub->close_at_head && !is_dead(sub.get()) && sub->cursor >= head_.load()) {
      sub->stream->Close();
      dead.push_back(sub.get());
    }
  }

  for (auto& sub : subs) {
    if (is_dead(sub.get())) continue;
    if (sub->stream->closed()) {
      dead.push_back(sub.get());
      continue;
    }
    if (now - sub->last_write < options_.keepalive_interval) continue;
    if (!Send(*sub, ": keep-alive\n\n", now)) dead.push_back(sub.get());
  }
  EndRevoked(subs, now, dead);

  bool again = static_cast<int>(fresh->size()) == options_.page_size;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dead.empty()) {
      subscribers_.erase(
          std::remove_if(subscribers_.begin(), subscribers_.end(),
                         [&](const std::shared_ptr<Subscriber>& s) { return is_dead(s.get()); }),
          subscribers_.end());
    }
    // A full page means more are waiting: poll again at once.
    if (again) wake_ = true;
    UpdateWatchLocked();
  }
}

void EventHub::EndRevoked(const std::vector<std::shared_ptr<Subscriber>>& subs,
                          std::chrono::steady_clock::time_point now,
                          std::vector<Subscriber*>& dead) {
  if (now - keys_checked_ < options_.key_recheck_interval) return;
  keys_checked_ = now;
  std::map<std::string, bool> allowed;  // by key hash: each key looked up once
  for (const auto& sub : subs) {
    if (sub->key_hash.empty() || std::find(dead.begin(), dead.end(), sub.get()) != dead.end())
      continue;
    auto [it, fresh] = allowed.try_emplace(sub->key_hash, true);
    if (fresh) {
      // A store that cannot answer ends nothing: an outage is not a revocation.
      auto key = store_->FindApiKeyByHash(sub->key_hash);
      it->second = key.ok() ? !key->revoked : key.status().code() != Code::kNotFound;
    }
    if (it->second) continue;
    Send(*sub,
         "event: error\ndata: " +
             nlohmann::json{{"code", "UNAUTHORIZED"},
                            {"message", "the API key of this stream was revoked"},
                            {"hint", "reconnect with a valid key"}}
                 .dump() +
             "\n\n",
         now);
    sub->stream->Close();
    dead.push_back(sub.get());
  }
}

void AddEventRoutes(HttpServer& server, EventHub& hub, Store& store, ApiGate& gate) {
  auto handler = [&hub, &store, &gate](
                     const HttpRequest& request,
                     const std::shared_ptr<ResponseStream>& stream) -> std::optional<HttpResponse> {
    // The same admission as every JSON route (throttle, key, permission, rate
    // limit, CORS); only here may the key come as ?access_token=.
    ApiGate::Admission admission = gate.Admit(request, "features:read", /*query_token=*/true);
    auto answer = [&](HttpResponse response) {
      gate.Decorate(request, admission, response);
      return response;
    };
    if (admission.refusal) return answer(std::move(*admission.refusal));
    std::string last = request.Header("last-event-id");
    if (last.empty()) last = request.Query("last_event_id");
    auto after = ParseLastEventId(last);
    if (!after.ok()) return answer(ErrorResponse(after.status(), request.request_id));
    if (*after) {
      // An id beyond the newest event is from before a reset (the numbers
      // start again at 1): the stream starts as if none was given instead of
      // waiting for an event that far ahead.
      auto latest = store.LatestEventSeq();
      if (latest.ok() && **after > *latest) *after = std::nullopt;
    }
    std::string feature_id;
    bool finished = false;
    auto it = request.path_params.find("id");
    const std::string wanted =
        it != request.path_params.end() ? it->second : request.Query("feature_id");
    if (!wanted.empty()) {
      // An unknown feature is a 404 on both routes, not a silent empty stream.
      auto feature = store.GetFeature(wanted);
      if (!feature.ok()) return answer(ErrorResponse(feature.status(), request.request_id));
      feature_id = feature->id;
      finished = IsTerminalFeatureStatus(feature->status);
    }
    std::optional<int64_t> from = *after;
    bool close_at_head = false;
    if (finished && !from && it != request.path_params.end()) {
      // A finished feature has no live events to wait for: someone opening
      // its stream wants its history, so replay it all and end the stream.
      from = 0;
      close_at_head = true;
    }
    for (auto& [name, value] : gate.Headers(request, admission)) {
      stream->AddHeader(name, value);
    }
    hub.Subscribe(stream, from, std::move(feature_id), close_at_head,
                  admission.key ? admission.key->key_hash : std::string());
    return std::nullopt;
  };
  StreamOptions options;
  options.headers = {{"X-Accel-Buffering", "no"}};
  // Above the hub's pacing limit, so only a single oversized event or a
  // writer other than the hub can reach it.
  options.max_buffered_bytes = 2 * hub.options().max_buffered_bytes + (1 << 20);
  options.tcp_no_delay = hub.options().tcp_no_delay;
  for (const char* pattern : {"/api/v1/events", "/events", "/api/v1/features/:id/events"}) {
    server.RouteStream("GET", pattern, handler, options);
    // Preflights need no key: browsers send them without credentials.
    server.Route("OPTIONS", pattern,
                 [&gate](const HttpRequest& r) { return gate.Preflight(r, "GET, OPTIONS"); });
  }
}

}  // namespace af
