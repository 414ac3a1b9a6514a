#pragma once
// The bus carries work between agents; it holds no state that matters. The
// store owns every feature and task; on restart the coordinator re-reads the
// store and re-dispatches what is not terminal. A lost or repeated bus message
// therefore costs time, never correctness.
//
// Two kinds of traffic:
//  - Work queues (Send / Receive / Ack / Nack): each message goes to exactly
//    one consumer among those receiving from the queue (competing consumers),
//    at least once. Maps onto Redis Streams: one stream per queue, one
//    consumer group, XADD / XREADGROUP / XACK / XAUTOCLAIM / XPENDING.
//  - Broadcast topics (Publish / Subscribe): every current subscriber gets
//    every message, at most once. Maps onto Redis PUBLISH / SUBSCRIBE.
// Plus agent heartbeats (latest beat per agent; a Redis hash).
//
// Thread safety: every Bus method may be called from any thread concurrently.
// After Close() every method returns Cancelled (Describe() still works).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af {

// What a producer sends or publishes. `type` must not be empty; it tells the
// consumer how to read `payload` (e.g. "task.assign").
struct BusMessage {
  std::string type;
  nlohmann::json payload;
};

// One delivery of a queued message to a consumer.
struct Delivery {
  std::string id;     // opaque; identifies the message and stays the same on redelivery
  std::string queue;  // the queue it came from
  std::string type;
  nlohmann::json payload;
  int attempts = 0;         // 1 on the first delivery, +1 on each redelivery
  int64_t enqueued_ms = 0;  // options.now_ms() when Send accepted it
};

struct QueueStats {
  int64_t ready = 0;    // waiting to be delivered (new or returned for redelivery)
  int64_t pending = 0;  // delivered and not yet acknowledged
  int64_t dead = 0;     // moved to the dead-letter list after max_attempts
};

// A liveness report from one agent. The bus keeps the latest per agent_id;
// deciding "offline" (beat older than 90 s) is the reader's job.
struct AgentBeat {
  std::string agent_id;  // required, e.g. "coder-1"
  std::string role;      // e.g. "coder"
  std::string state;     // e.g. "idle", "busy"
  std::string current_task;
  int64_t ts_ms = 0;  // 0 = stamped by the bus with options.now_ms()
};

struct BusOptions {
  // Empty = in-process bus (one process only).
  // "redis://[[user]:password@]host[:port][/db]" = Redis Streams, shared by
  // every process using the same server and database. "rediss://" (TLS) is
  // not supported (InvalidArgument). Any other scheme is InvalidArgument.
  std::string url;
  // A delivery not acknowledged within this time becomes deliverable again,
  // to any consumer. Must be > 0. Default 5 min.
  std::chrono::milliseconds ack_timeout{300000};
  // A message whose max_attempts-th delivery times out, is nacked or is
  // reclaimed goes to the queue's dead-letter list instead of being delivered
  // again. Must be >= 1. Default 5.
  int max_attempts = 5;
  // Clock seam, milliseconds since the Unix epoch; used for enqueued_ms,
  // heartbeat stamps and ack_timeout expiry. Empty = the system clock.
  // Receive's `wait` is always real time, independent of this clock.
  std::function<int64_t()> now_ms;
};

// Move-only RAII handle for a Subscribe. Destroying it (or Reset) unsubscribes
// and guarantees that once it returns the handler is neither running nor will
// be called again; called from inside the handler itself it returns at once
// (the running call finishes normally). Safe to destroy after the Bus.
class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(std::function<void()> unsubscribe) : unsubscribe_(std::move(unsubscribe)) {}
  ~Subscription() { Reset(); }
  Subscription(Subscription&& other) noexcept : unsubscribe_(std::move(other.unsubscribe_)) {
    other.unsubscribe_ = nullptr;
  }
  Subscription& operator=(Subscription&& other) noexcept {
    if (this != &other) {
      Reset();
      unsubscribe_ = std::move(other.unsubscribe_);
      other.unsubscribe_ = nullptr;
    }
    return *this;
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  bool active() const { return static_cast<bool>(unsubscribe_); }
  void Reset() {
    if (auto f = std::move(unsubscribe_)) {
      unsubscribe_ = nullptr;
      f();
    }
  }

 private:
  std::function<void()> unsubscribe_;
};

// Names: queues, consumers and topics must be 1..200 printable ASCII
// characters without spaces (e.g. "role:coder", "agent:coder-1", "events");
// otherwise InvalidArgument.
class Bus {
 public:
  // Builds the backend chosen by options.url; a Redis bus connects before
  // returning. Errors: InvalidArgument for bad options, a malformed URL or an
  // unsupported scheme; Unavailable when Redis cannot be reached (the message
  // names host:port, never the password); Unauthenticated when Redis refuses
  // the credentials. Once open, a Redis bus whose server went away returns
  // Unavailable from each call until the server is back (calls then succeed
  // again: connections are replaced as needed).
  static Result<std::unique_ptr<Bus>> Open(const BusOptions& options);

  virtual ~Bus() = default;
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // --- Work queues -------------------------------------------------------
  // Enqueues `message` on `queue` and returns its delivery id. Queues need no
  // creation. Messages are delivered for the first time in Send order (FIFO
  // per queue); redeliveries may overtake new messages. Delivery is
  // at-least-once: consumers must be idempotent (the system makes side
  // effects idempotent by keying them on task ids).
  virtual Result<std::string> Send(std::string_view queue, BusMessage message) = 0;

  // Takes the next deliverable message of `queue` for `consumer` (a stable
  // name of the receiving agent instance, used by ReclaimFrom). Blocks up to
  // `wait` (0 = do not block) and returns nullopt if nothing came. Messages
  // whose ack_timeout expired are returned for redelivery before looking, so
  // a Receive with wait 0 notices expiry under a fake clock. Returns
  // Cancelled if the bus is closed, also while blocked.
  virtual Result<std::optional<Delivery>> Receive(std::string_view queue, std::string_view consumer,
                                                  std::chrono::milliseconds wait) = 0;

  // Acknowledges a delivered message: it is removed for good. Any consumer may
  // ack, also after the ack_timeout expired as long as the message was not
  // acked or dead-lettered since. NotFound if `id` is not a delivered,
  // unacknowledged message of `queue` (unknown, never delivered, acked, dead).
  virtual Status Ack(std::string_view queue, std::string_view id) = 0;

  // Gives a delivered message back: deliverable again at once (attempts + 1
  // on that delivery), or dead-lettered if it had max_attempts deliveries.
  // NotFound as for Ack.
  virtual Status Nack(std::string_view queue, std::string_view id) = 0;

  // `consumer` still works on a message it received and keeps it: the
  // delivery's ack_timeout starts again now, so a job that runs longer than
  // ack_timeout is not handed to a second consumer while the first is alive.
  // NotFound if `id` is not a delivery of `queue` pending with `consumer`
  // (acked, given back, dead, or expired and taken back meanwhile).
  virtual Status Extend(std::string_view queue, std::string_view id, std::string_view consumer) = 0;

  // `consumer` is known to be dead: all its pending deliveries on `queue` are
  // given back as by Nack. Returns how many (0 for an unknown consumer).
  virtual Result<int> ReclaimFrom(std::string_view queue, std::string_view consumer) = 0;

  // --- Broadcast -----------------------------------------------------------
  // Registers `handler` for `topic`. Once Subscribe returns, the handler gets
  // every message published to the topic afterwards, in publish order, at most
  // once (not persisted: notifications only, never state). Handlers run on a
  // bus-owned thread, one call at a time across all subscriptions, so a slow
  // handler delays other handlers but never blocks Publish; keep them short.
  // An exception thrown by a handler is swallowed. A handler must not call
  // Close.
  virtual Result<Subscription> Subscribe(std::string_view topic,
                                         std::function<void(const BusMessage&)> handler) = 0;

  // Queues `message` for every current subscriber of `topic` and returns
  // without waiting for handlers. Publishing to a topic nobody listens to is
  // OK (the message is dropped).
  virtual Status Publish(std::string_view topic, BusMessage message) = 0;

  // --- Heartbeats ----------------------------------------------------------
  // Records `beat` as the latest of beat.agent_id (replaces the previous one).
  virtual Status Heartbeat(const AgentBeat& beat) = 0;
  // The latest beat of every agent that ever beat, sorted by agent_id.
  virtual Result<std::vector<AgentBeat>> Beats() = 0;

  // --- Introspection (metrics, /health) ------------------------------------
  // Counts for `queue` (all zero for a queue never used).
  virtual Result<QueueStats> Stats(std::string_view queue) = 0;
  // Names of the queues that have been used, sorted.
  virtual Result<std::vector<std::string>> Queues() = 0;
  // The dead-lettered messages of `queue`, oldest first; `attempts` is the
  // number of deliveries made. They stay until the bus goes away (or the
  // queue is deleted).
  virtual Result<std::vector<Delivery>> DeadLetters(std::string_view queue) = 0;
  // Removes `queue`: its messages, deliveries in progress, dead letters and
  // its name in Queues(). For a queue only one process reads (a
  // coordinator's replies), once that process is gone; a later Send makes it
  // again. Ok when there is no such queue. FailedPrecondition while a
  // Receive of this process waits on it (the in-process bus).
  virtual Status DeleteQueue(std::string_view queue) = 0;
  // OK when the bus can carry messages; Cancelled after Close, Unavailable
  // when a remote backend cannot be reached.
  virtual Status Check() = 0;
  // Short human description of the backend, e.g. "in-process".
  virtual std::string Describe() const = 0;

  // --- Lost queues -----------------------------------------------------------
  // A number that grows when this bus notices that the server lost messages
  // it held (a Redis restarted without persistence, or flushed): a message
  // sent before the change may never be delivered, and a reply to it may be
  // gone. Whoever waits for the reply to a message it sent reads this before
  // sending, and sends again when it differs (consumers are idempotent). The
  // loss is noticed when a connection is replaced, so before the next call
  // that reaches the server returns. Starts at 0. The in-process bus never
  // changes it: its queues live as long as the process.
  virtual uint64_t Generation() const { return 0; }

  // Wakes every blocked Receive (they return Cancelled), stops subscription
  // delivery (broadcasts not yet handled are dropped) and waits for a running
  // handler to finish. Queued work is dropped with the bus (in-process) or
  // stays in the server (Redis). Idempotent; the destructor calls it.
  virtual void Close() = 0;

 protected:
  Bus() = default;
};

}  // namespace af
