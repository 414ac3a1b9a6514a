#pragma once
// Live events over server-sent events (docs/API.md): the EventHub tails the
// store's event table and fans each new event out to subscribed streams.
//
// The store is the source of truth: one poller thread reads
// ListEvents(after_seq = last seen) as soon as the store announces a commit
// of new events (Store::SetEventsListener), and every poll_interval anyway,
// so events appended by other processes appear too. PostgreSQL announces
// other processes' commits as well (LISTEN/NOTIFY); for a SQLite file the hub
// watches the file's directory (inotify) while someone is subscribed and
// reads when the database or its write-ahead log is written, so events that
// `worker` processes append on the same file arrive without waiting for the
// poll (which stays, for file systems without inotify and for a commit that
// becomes visible later than the read after its write). With nobody
// subscribed the hub reads nothing at all; its head is caught up with the
// store's latest seq when the first subscriber arrives.
//
// Each subscriber has a cursor (the last seq it has been sent or skipped
// past). The poller alone moves cursors and writes events, so replay and live
// delivery cannot race: a subscriber behind the hub's head (it asked to resume
// from an older Last-Event-ID) is served from the store page by page until it
// reaches the head, and from then on it gets the live events with seq >
// cursor. Every subscriber thus sees every matching event once, in seq order,
// with no gap and no duplicate.
//
// Wire format of one event (see FormatSseEvent):
//   id: <seq>\nevent: <type>\ndata: <Event::ToJson()>\n\n
// plus, on connect, "retry: <ms>\n\n" and, after keepalive_interval without
// output, the comment ": keep-alive\n\n".
//
// Thread safety: Subscribe(), subscribers() and Stop() may be called from any
// thread. Ownership: the hub borrows the Store (it must outlive the hub) and
// shares the streams with the HTTP server; a stream that closes (client gone
// or too slow, see ResponseStream) is dropped at the next write.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "af/api/auth.h"
#include "af/api/http_server.h"
#include "af/core/repeated_failure_log.h"
#include "af/core/status.h"
#include "af/store/store.h"

namespace af {

struct EventHubOptions {
  // How often the event table is polled for new rows.
  std::chrono::milliseconds poll_interval{50};  // default 50 ms
  // A SQLite store: watch its file for commits by other processes (see the
  // comment at the top). false: they wait for the poll (as before this was
  // added; the SSE bench compares the two).
  bool watch_file = true;  // default true
  // A subscriber that got nothing for this long gets ": keep-alive". Keep it
  // well under the server's 60 s idle limit for a response in progress.
  std::chrono::milliseconds keepalive_interval{15000};  // default 15 s
  // The reconnection delay suggested to clients ("retry:").
  std::chrono::milliseconds retry{3000};  // default 3 s
  // Events read per store query (live and replay pages), 1..10000.
  int page_size = 1000;  // default 1000
  // Pacing: the hub writes to a stream only while its unsent bytes stay under
  // this (one event is always allowed into an empty buffer). Events that do
  // not fit are not buffered: the subscriber falls behind and is served from
  // the store as it drains, so a burst costs no memory. (The stream's own
  // hard cap, see ResponseStream, is set to 2x this + 1 MiB.)
  size_t max_buffered_bytes = 1 << 20;  // default 1 MiB
  // A subscriber that cannot take a single pending event for this long (its
  // client stopped reading) is disconnected; it resumes with Last-Event-ID
  // when it reconnects.
  std::chrono::milliseconds max_stall{30000};  // default 30 s
  // Threads that write live events to subscribers, the poller included (1:
  // the poller alone). A write to a local socket costs a few microseconds,
  // mostly in the kernel, so with hundreds of clients the poller shares them
  // out (at least 64 clients a thread) and the last one waits less.
  int delivery_threads = 2;  // default 2, 1..16
  // TCP_NODELAY on the streams' connections (StreamOptions::tcp_no_delay);
  // false only to measure what Nagle's algorithm costs (the SSE bench).
  bool tcp_no_delay = true;  // default true
  // How often the key a stream was opened with is looked up again: a stream
  // whose key was revoked (or deleted) meanwhile is ended with an `error`
  // event, as a new request with it would be refused.
  std::chrono::milliseconds key_recheck_interval{5000};  // default 5 s
};

class ApiGate;

class EventHub {
 public:
  // `store` must outlive the hub.
  EventHub(Store* store, EventHubOptions options = {});
  ~EventHub();  // Stop()s
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Reads the current head (LatestEventSeq) and starts the poller. Errors:
  // the store's (nothing started); FailedPrecondition when already started.
  Status Start();
  // Stops the poller and closes every subscribed stream. Idempotent.
  void Stop();

  // Sends "retry:" and subscribes `stream` to events of `feature_id` (all
  // when empty). With `after_seq`, everything after it is replayed from the
  // store first; without, delivery starts after the store's latest event.
  // `close_at_head`: the stream is closed (ended normally) once it has been
  // sent everything up to the hub's head, e.g. the history of a finished
  // feature.
  // `key_hash`: the stored hash of the API key that opened the stream
  // (empty when none was needed), checked every key_recheck_interval.
  void Subscribe(std::shared_ptr<ResponseStream> stream, std::optional<int64_t> after_seq,
                 std::string feature_id = {}, bool close_at_head = false,
                 std::string key_hash = {});

  // Subscribed streams (including ones that closed since the last poll).
  size_t subscribers() const;
  // The last seq the poller has read (the head). Not kept up while nobody
  // subscribes.
  int64_t head() const { return head_.load(); }
  const EventHubOptions& options() const { return options_; }

 private:
  struct Subscriber {
    std::shared_ptr<ResponseStream> stream;
    std::string feature_id;
    int64_t cursor = 0;
    std::chrono::steady_clock::time_point last_write;
    std::optional<std::chrono::steady_clock::time_point> stalled_since;
    bool close_at_head = false;
    std::string key_hash;
  };

  void Run();
  // SQLite only: wakes the poller when another process may have committed
  // (see the file comment). No-op for other stores or without inotify.
  void StartFileWatch();
  void WatchFiles();
  // The directory is watched while someone is subscribed, not otherwise:
  // every commit of this process's own work writes the log, and with nobody
  // to deliver to those wake-ups are waste. Adding the watch also asks for a
  // read (a commit made just before it). mu_ held.
  void UpdateWatchLocked();
  // Called by the store after events were committed: the poller reads at
  // once instead of at its next poll_interval.
  void Wake();
  // One poll: replay pages to subscribers behind the head, then the new events.
  void PollOnce();
  // Ends the streams of `subs` whose key was revoked since they were opened
  // (looked up at most once per key_recheck_interval); adds them to `dead`.
  void EndRevoked(const std::vector<std::shared_ptr<Subscriber>>& subs,
                  std::chrono::steady_clock::time_point now, std::vector<Subscriber*>& dead);
  // Runs job(0..shards-1) at once, shard 0 on the calling thread and the
  // others on the delivery helpers; returns when all are done.
  void RunSharded(size_t shards, const std::function<void(size_t)>& job);
  void HelperLoop(size_t shard);
  bool Send(Subscriber& sub, std::string_view text, std::chrono::steady_clock::time_point now);
  // Events read by one query, each put in SSE form once, on first use, for
  // every subscriber it goes to; and all of them in one text, for the
  // subscribers that take them all (the usual live case), so that one text
  // is written to each of them with no copy of their own.
  class Batch {
   public:
    explicit Batch(const std::vector<Event>& events) : events_(events), formatted_(events.size()) {}
    const std::vector<Event>& events() const { return events_; }
    const std::string& Formatted(size_t i);
    const std::string& Whole();
    // Formats everything now, so that several threads may then read it.
    void Prepare();

   private:
    const std::vector<Event>& events_;
    std::vector<std::optional<std::string>> formatted_;
    std::optional<std::string> whole_;
  };
  // Writes the events of `batch` with cursor < seq <= upto that match the
  // subscriber's filter, in one write, as far as its buffer allows, moving the
  // cursor past what was written. Returns false when the stream failed or
  // stalled too long (drop it); *all tells whether everything eligible was
  // written.
  bool Deliver(Subscriber& sub, Batch& batch, int64_t upto, bool* all,
               std::chrono::steady_clock::time_point now);

  Store* const store_;
  const EventHubOptions options_;
  std::atomic<int64_t> head_{0};
  bool head_stale_ = false;  // the poller's own: head_ was not kept while nobody subscribed
  // The poller's failures to read new events (only its thread uses it).
  RepeatedFailureLog read_failures_;
  std::chrono::steady_clock::time_point keys_checked_{};  // poller thread only

  mutable std::mutex mu_;  // guards the members below
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;
  bool started_ = false;
  bool stopping_ = false;
  bool wake_ = false;  // new events, or a new subscriber wants its replay now
  std::thread thread_;
  // Delivery helpers (delivery_threads - 1), driven by RunSharded.
  std::vector<std::thread> helpers_;
  std::mutex shard_mu_;  // guards the members below
  std::condition_variable shard_cv_;
  const std::function<void(size_t)>* shard_job_ = nullptr;
  size_t shard_count_ = 0;
  uint64_t shard_round_ = 0;
  size_t shards_left_ = 0;
  bool helpers_stop_ = false;
  // The file watch (StartFileWatch): inotify descriptor, an eventfd that
  // stops its thread, and the names in the directory that mean a commit.
  // Set under mu_; the watch itself (watch_wd_, -1 when off) changes only
  // under mu_.
  int watch_fd_ = -1;
  int watch_wd_ = -1;
  std::string watch_dir_;
  int watch_stop_fd_ = -1;
  std::vector<std::string> watch_names_;
  std::thread watch_thread_;
};

// "id: 7\nevent: feature.status\ndata: {...}\n\n" (data is Event::ToJson()
// on one line).
std::string FormatSseEvent(const Event& event);

// Parses a Last-Event-ID value ("" = none). InvalidArgument when it is not a
// non-negative integer.
Result<std::optional<int64_t>> ParseLastEventId(std::string_view value);

// Registers GET /api/v1/events, GET /events (root alias) and GET
// /api/v1/features/:id/events on `server`, plus their OPTIONS preflights.
// Each is admitted by `gate` with "features:read" like every JSON route
// (failed-auth throttle, key, permission, rate limit, CORS headers), the key
// may also come as ?access_token= (EventSource cannot send headers); then the
// resume point is read from the Last-Event-ID header or ?last_event_id= (400
// when not a number). An unknown feature, in the path or in ?feature_id= of
// /api/v1/events, is 404 NOT_FOUND. The stream of a finished feature
// (completed, failed, cancelled) opened without a resume point replays its
// whole history and then ends. `hub`, `store` and `gate` must outlive the
// server.
void AddEventRoutes(HttpServer& server, EventHub& hub, Store& store, ApiGate& gate);

}  // namespace af
