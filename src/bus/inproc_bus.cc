// In-process Bus: one mutex guards all queue and heartbeat state; each queue
// has its own condition variable so a Send wakes only that queue's receivers.
// Broadcasts go through a separate Broadcaster with its own mutex and a
// dispatch thread, so handlers never run under the queue mutex.

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_internal.h"

namespace af::bus_internal {
namespace {

// Delivers published messages to subscribers on one thread, in publish order.
// Shared with the Subscription handles (through weak_ptr) and with its own
// thread, so a Subscription may outlive the bus.
class Broadcaster {
 public:
  static std::shared_ptr<Broadcaster> Start() {
    auto b = std::make_shared<Broadcaster>();
    b->thread_ = std::thread([b] { b->Run(); });
    return b;
  }

  // Stops delivery, drops undelivered messages and waits for a running
  // handler. Safe to call concurrently and repeatedly.
  void Stop() {
    std::call_once(stop_once_, [this] {
      std::thread::id dispatcher;
      {
        std::lock_guard lock(mu_);
        stop_ = true;
        items_.clear();
        dispatcher = dispatcher_id_;
      }
      work_cv_.notify_all();
      JoinUnlessSelf(thread_, dispatcher);
    });
  }

  Result<uint64_t> Subscribe(std::string_view topic, Handler handler) {
    std::lock_guard lock(mu_);
    if (stop_) return ClosedError();
    const uint64_t id = next_id_++;
    subs_.emplace(id, Sub{std::string(topic), std::make_shared<Handler>(std::move(handler))});
    return id;
  }

  void Unsubscribe(uint64_t id) {
    std::shared_ptr<Handler> doomed;  // destroyed unlocked: its captures may call back
    std::unique_lock lock(mu_);
    if (auto it = subs_.find(id); it != subs_.end()) {
      doomed = std::move(it->second.handler);
      subs_.erase(it);
    }
    // From inside the handler itself, waiting would never end.
    if (std::this_thread::get_id() != dispatcher_id_) {
      idle_cv_.wait(lock, [&] { return running_ != id; });
    }
    lock.unlock();
  }

  Status Publish(std::string_view topic, BusMessage message) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return ClosedError();
      // Targets are fixed now: a subscriber added later must not get it.
      Item item{std::move(message), {}};
      for (const auto& [id, sub] : subs_) {
        if (sub.topic == topic) item.targets.push_back(id);
      }
      if (item.targets.empty()) return Status::Ok();
      items_.push_back(std::move(item));
    }
    work_cv_.notify_one();
    return Status::Ok();
  }

 private:
  struct Sub {
    std::string topic;
    std::shared_ptr<Handler> handler;
  };
  struct Item {
    BusMessage message;
    std::vector<uint64_t> targets;
  };

  void Run() {
    std::unique_lock lock(mu_);
    dispatcher_id_ = std::this_thread::get_id();
    while (true) {
      work_cv_.wait(lock, [&] { return stop_ || !items_.empty(); });
      if (stop_) break;
      Item item = std::move(items_.front());
      items_.pop_front();
      for (uint64_t id : item.targets) {
        if (stop_) break;
        auto it = subs_.find(id);
        if (it == subs_.end()) continue;  // unsubscribed since publish
        std::shared_ptr<Handler> handler = it->second.handler;
        running_ = id;
        lock.unlock();
        CallHandler(*handler, item.message);
        handler.reset();
        lock.lock();
        running_ = 0;
        idle_cv_.notify_all();
      }
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_;  // items_ grew or stop_
  std::condition_variable idle_cv_;  // a handler call ended
  bool stop_ = false;
  uint64_t next_id_ = 1;
  uint64_t running_ = 0;  // subscription whose handler runs now; 0 = none
  std::thread::id dispatcher_id_;
  std::map<uint64_t, Sub> subs_;
  std::deque<Item> items_;
  std::thread thread_;
  std::once_flag stop_once_;
};

class InProcBus final : public Bus {
 public:
  explicit InProcBus(const BusOptions& options)
      : options_(options), broadcaster_(Broadcaster::Start()) {}
  ~InProcBus() override { Close(); }

  Result<std::string> Send(std::string_view queue, BusMessage message) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateType(message));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    Queue& q = GetQueueLocked(queue);
    const uint64_t seq = next_seq_++;
    q.ready.emplace(seq,
                    Message{seq, std::move(message.type), std::move(message.payload), 0, Now()});
    q.cv.notify_one();
    return std::to_string(seq);
  }

  Result<std::optional<Delivery>> Receive(std::string_view queue, std::string_view consumer,
                                          std::chrono::milliseconds wait) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateName("consumer", consumer));
    const auto deadline = std::chrono::steady_clock::now() + std::max(wait, wait.zero());
    std::unique_lock lock(mu_);
    if (closed_) return ClosedError();
    Queue& q = GetQueueLocked(queue);
    ++receivers_;
    ++q.receivers;
    // Close() waits for receivers_ to reach 0 before the bus may be destroyed.
    struct Leave {
      InProcBus* bus;
      Queue& q;
      ~Leave() {
        --q.receivers;
        if (--bus->receivers_ == 0) bus->drained_cv_.notify_all();
      }
    } leave{this, q};

    while (true) {
      if (closed_) return ClosedError();
      const int64_t now = Now();
      ExpireLocked(q, now);
      if (!q.ready.empty()) {
        auto node = q.ready.extract(q.ready.begin());
        Message& m = node.mapped();
        ++m.attempts;
        Delivery d{std::to_string(m.seq), std::string(queue), m.type, m.payload, m.attempts,
                   m.enqueued_ms};
        q.pending.emplace(m.seq,
                          Pending{std::move(m), std::string(consumer), now + AckTimeoutMs()});
        return std::optional<Delivery>(std::move(d));
      }
      const auto steady_now = std::chrono::steady_clock::now();
      if (steady_now >= deadline) return std::optional<Delivery>();
      // Wake when the earliest pending delivery expires, so redelivery does
      // not depend on another Send arriving. Under a fake clock that does not
      // move this just re-checks periodically until `wait` is over.
      auto wake = deadline;
      if (!q.pending.empty()) {
        int64_t earliest = std::numeric_limits<int64_t>::max();
        for (const auto& [seq, p] : q.pending) earliest = std::min(earliest, p.deadline_ms);
        const auto until_expiry = std::chrono::milliseconds(std::max<int64_t>(1, earliest - now));
        wake = std::min(wake, steady_now + until_expiry);
      }
      q.cv.wait_until(lock, wake);
    }
  }

  Status Ack(std::string_view queue, std::string_view id) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    Queue* q = FindQueueLocked(queue);
    const std::optional<uint64_t> seq = ParseId(id);
    if (q && seq) {
      if (q->pending.erase(*seq) > 0) return Status::Ok();
      // Expired and returned to ready but not redelivered yet: the late ack
      // still counts, which saves a useless redelivery.
      auto it = q->ready.find(*seq);
      if (it != q->ready.end() && it->second.attempts > 0) {
        q->ready.erase(it);
        return Status::Ok();
      }
    }
    return NotDelivered(queue, id);
  }

  Status Nack(std::string_view queue, std::string_view id) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    Queue* q = FindQueueLocked(queue);
    const std::optional<uint64_t> seq = ParseId(id);
    if (q && seq) {
      if (auto node = q->pending.extract(*seq)) {
        GiveBackLocked(*q, std::move(node.mapped().message));
        return Status::Ok();
      }
      auto it = q->ready.find(*seq);
      if (it != q->ready.end() && it->second.attempts > 0) return Status::Ok();  // already back
    }
    return NotDelivered(queue, id);
  }

  Status Extend(std::string_view queue, std::string_view id, std::string_view consumer) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateName("consumer", consumer));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    Queue* q = FindQueueLocked(queue);
    const std::optional<uint64_t> seq = ParseId(id);
    if (q && seq) {
      ExpireLocked(*q, Now());  // an expired delivery is no longer the consumer's
      auto it = q->pending.find(*seq);
      if (it != q->pending.end() && it->second.consumer == consumer) {
        it->second.deadline_ms = Now() + AckTimeoutMs();
        return Status::Ok();
      }
    }
    return NotDelivered(queue, id);
  }

  Result<int> ReclaimFrom(std::string_view queue, std::string_view consumer) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateName("consumer", consumer));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    Queue* q = FindQueueLocked(queue);
    if (!q) return 0;
    int count = 0;
    for (auto it = q->pending.begin(); it != q->pending.end();) {
      if (it->second.consumer == consumer) {
        auto node = q->pending.extract(it++);
        GiveBackLocked(*q, std::move(node.mapped().message));
        ++count;
      } else {
        ++it;
      }
    }
    return count;
  }

  Result<Subscription> Subscribe(std::string_view topic,
                                 std::function<void(const BusMessage&)> handler) override {
    AF_RETURN_IF_ERROR(ValidateName("topic", topic));
    if (!handler) return InvalidArgument("subscription handler is empty", "pass a callable");
    AF_ASSIGN_OR_RETURN(uint64_t id, broadcaster_->Subscribe(topic, std::move(handler)));
    std::weak_ptr<Broadcaster> weak = broadcaster_;
    return Subscription([weak, id] {
      if (auto b = weak.lock()) b->Unsubscribe(id);
    });
  }

  Status Publish(std::string_view topic, BusMessage message) override {
    AF_RETURN_IF_ERROR(ValidateName("topic", topic));
    AF_RETURN_IF_ERROR(ValidateType(message));
    return broadcaster_->Publish(topic, std::move(message));
  }

  Status Heartbeat(const AgentBeat& beat) override {
    AF_RETURN_IF_ERROR(ValidateName("agent_id", beat.agent_id));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    AgentBeat& slot = beats_[beat.agent_id];
    slot = beat;
    if (slot.ts_ms == 0) slot.ts_ms = Now();
    return Status::Ok();
  }

  Result<std::vector<AgentBeat>> Beats() override {
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    std::vector<AgentBeat> out;
    out.reserve(beats_.size());
    for (const auto& [id, beat] : beats_) out.push_back(beat);
    return out;
  }

  Result<QueueStats> Stats(std::string_view queue) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    QueueStats s;
    if (const Queue* q = FindQueueLocked(queue)) {
      s.ready = static_cast<int64_t>(q->ready.size());
      s.pending = static_cast<int64_t>(q->pending.size());
      s.dead = static_cast<int64_t>(q->dead.size());
    }
    return s;
  }

  Result<std::vector<std::string>> Queues() override {
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    std::vector<std::string> out;
    for (const auto& [name, q] : queues_) out.push_back(name);
    return out;
  }

  Status DeleteQueue(std::string_view queue) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    auto it = queues_.find(queue);
    if (it == queues_.end()) return Status::Ok();
    if (it->second.receivers > 0) {
      return FailedPrecondition("queue " + std::string(queue) + " has a receiver waiting on it",
                                "stop its consumers before deleting it");
    }
    queues_.erase(it);
    return Status::Ok();
  }

  Result<std::vector<Delivery>> DeadLetters(std::string_view queue) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    std::lock_guard lock(mu_);
    if (closed_) return ClosedError();
    std::vector<Delivery> out;
    if (const Queue* q = FindQueueLocked(queue)) {
      for (const Message& m : q->dead) {
        out.push_back(Delivery{std::to_string(m.seq), std::string(queue), m.type, m.payload,
                               m.attempts, m.enqueued_ms});
      }
    }
    return out;
  }

  Status Check() override {
    std::lock_guard lock(mu_);
    return closed_ ? ClosedError() : Status::Ok();
  }

  std::string Describe() const override { return "in-process"; }

  void Close() override {
    {
      std::unique_lock lock(mu_);
      closed_ = true;
      for (auto& [name, q] : queues_) q.cv.notify_all();
      drained_cv_.wait(lock, [&] { return receivers_ == 0; });
    }
    broadcaster_->Stop();
  }

 private:
  struct Message {
    uint64_t seq = 0;
    std::string type;
    nlohmann::json payload;
    int attempts = 0;  // deliveries made so far
    int64_t enqueued_ms = 0;
  };
  struct Pending {
    Message message;
    std::string consumer;
    int64_t deadline_ms = 0;  // options_.now_ms() value at which it expires
  };
  struct Queue {
    // Keyed by sequence number: first deliveries go out in Send order, and a
    // returned message (older sequence) goes out before newer ones.
    std::map<uint64_t, Message> ready;
    std::map<uint64_t, Pending> pending;
    std::vector<Message> dead;
    std::condition_variable cv;  // ready grew or the bus closed
    int receivers = 0;           // Receive calls waiting on it (they hold a reference)
  };

  static std::optional<uint64_t> ParseId(std::string_view id) {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
    if (ec != std::errc() || end != id.data() + id.size() || id.empty()) return std::nullopt;
    return v;
  }

  int64_t Now() const {
    if (options_.now_ms) return options_.now_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t AckTimeoutMs() const { return options_.ack_timeout.count(); }

  Queue& GetQueueLocked(std::string_view name) {
    auto it = queues_.find(name);
    if (it == queues_.end()) it = queues_.try_emplace(std::string(name)).first;
    return it->second;
  }
  Queue* FindQueueLocked(std::string_view name) {
    auto it = queues_.find(name);
    return it == queues_.end() ? nullptr : &it->second;
  }

  // A delivery ended without an ack: deliver again, or dead-letter once it
  // has had its max_attempts deliveries.
  void GiveBackLocked(Queue& q, Message m) {
    if (m.attempts >= options_.max_attempts) {
      q.dead.push_back(std::move(m));
      return;
    }
    const uint64_t seq = m.seq;
    q.ready.emplace(seq, std::move(m));
    q.cv.notify_one();
  }

  void ExpireLocked(Queue& q, int64_t now) {
    for (auto it = q.pending.begin(); it != q.pending.end();) {
      if (now >= it->second.deadline_ms) {
        auto node = q.pending.extract(it++);
        GiveBackLocked(q, std::move(node.mapped().message));
      } else {
        ++it;
      }
    }
  }

  const BusOptions options_;
  std::mutex mu_;  // guards everything below
  bool closed_ = false;
  int receivers_ = 0;  // threads inside Receive
  std::condition_variable drained_cv_;
  uint64_t next_seq_ = 1;
  std::map<std::string, Queue, std::less<>> queues_;
  std::map<std::string, AgentBeat, std::less<>> beats_;
  std::shared_ptr<Broadcaster> broadcaster_;
};

}  // namespace

std::unique_ptr<Bus> NewInProcBus(const BusOptions& options) {
  return std::make_unique<InProcBus>(options);
}

}  // namespace af::bus_internal
