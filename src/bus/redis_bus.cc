// Redis Streams Bus (hiredis, synchronous API).
//
// Layout in the selected database (every key starts with "af:"):
//   af:q:<queue>     a stream per work queue, read through one consumer group
//                    ("af"); the entry id is the Delivery id, so it stays the
//                    same on every redelivery.
//   af:dead:<queue>  the queue's dead letters (a stream, oldest first).
//   af:queues        a set of the queue names used (Queues()).
//   af:beats         a hash: agent_id -> the latest beat as JSON.
//   af:epoch         a random token, written by the first bus to connect to a
//                    server that has none: a different one later means the
//                    server lost its data (Generation).
//   af:sends         how many messages were ever sent: lower than what this
//                    process saw means the server went back in time (an old
//                    snapshot), losing what was sent since.
// Broadcast topics are Pub/Sub channels "af:<db>:t:<topic>" (channels are
// global to the server, not per database, hence the db number).
//
// Connections: a small pool. Every call leases a connection for its duration,
// so a Receive blocked in XREADGROUP never stalls a Send on another thread.
// A connection that failed (I/O error, e.g. Redis restarted) is dropped and
// the call retried once on a fresh one; if Redis cannot be reached the call
// returns Unavailable naming host:port. Close() shuts down the sockets of
// leased connections, which wakes blocked reads at once.
//
// Pub/Sub runs on its own connection and thread (RedisSubscriber), which
// reconnects and subscribes again after a failure.

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_internal.h"

namespace af::bus_internal {
namespace {

using std::chrono::milliseconds;

constexpr char kGroup[] = "af";
// Consumer that holds returned (nacked, reclaimed) deliveries until a Receive
// takes them over. It has a space, which no caller's consumer name may have.
constexpr char kReturnedConsumer[] = "af returned";
constexpr int64_t kCommandTimeoutMs = 10000;  // a reply slower than this = Redis is gone
constexpr int64_t kConnectTimeoutMs = 2000;
// A blocked Receive looks again at least this often, so a Nack or a reclaim
// made by another process is noticed without a new Send.
constexpr int64_t kMaxBlockSliceMs = 1000;
constexpr size_t kMaxIdleConnections = 16;
constexpr int kPendingScan = 512;  // pending entries looked at per Receive

constexpr char kHint[] = "is redis-server running? check REDIS_URL";
constexpr char kEpochKey[] = "af:epoch";
constexpr char kSendsKey[] = "af:sends";

// Moves a delivery to the dead-letter stream, atomically and only once: the
// XACK decides (0 = acked or dead-lettered by someone else meanwhile).
// KEYS: stream, dead stream. ARGV: group, id, attempts.
constexpr char kDeadLetterScript[] = R"lua(
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if #e == 1 then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'attempts', ARGV[3], unpack(e[1][2]))
end
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
)lua";

// Enqueues, records the queue's name and counts the send, in one step.
// KEYS: stream, queue set, send counter, epoch. ARGV: type, payload,
// enqueued_ms, queue. Returns [id, sends, epoch] (the count is only compared
// within one epoch).
constexpr char kSendScript[] = R"lua(
local id = redis.call('XADD', KEYS[1], '*', 'type', ARGV[1], 'payload', ARGV[2],
                      'enqueued_ms', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
return {id, redis.call('INCR', KEYS[3]), redis.call('GET', KEYS[4]) or ''}
)lua";

// What a fresh connection finds of the server's past (see af:epoch and
// af:sends above); writes the epoch token if the server has none.
// KEYS: epoch, send counter. ARGV: a new token. Returns [token, sends].
constexpr char kServerStateScript[] = R"lua(
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0'}
)lua";

// Acknowledges and deletes in one step (XDEL keeps the stream holding only
// unacknowledged entries; XTRIM cannot, since it cuts by position and acks
// come in any order). KEYS: stream. ARGV: group, id.
constexpr char kAckScript[] = R"lua(
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  return 1
end
return 0
)lua";

// DeleteQueue: the stream (with its group and pending entries), the dead
// letters and the name, at once.
constexpr char kDeleteQueueScript[] = R"lua(
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
)lua";

// Restarts a pending entry's idle time, only while `consumer` still holds it
// (XCLAIM alone would take it back from a consumer it was redelivered to);
// JUSTID leaves the delivery count alone. KEYS: stream. ARGV: group, id,
// consumer, ack_timeout in ms (an entry idle that long is expired already:
// Receive may be handing it to another consumer).
constexpr char kExtendScript[] = R"lua(
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] or p[1][3] >= tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
)lua";

struct Target {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string user;
  std::string password;
  std::string Where() const { return host + ":" + std::to_string(port); }
};

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// redis://[[user]:password@]host[:port][/db]. Errors never echo the URL: it
// may carry a password.
Result<Target> ParseUrl(const std::string& url) {
  const std::string_view kScheme = "redis://";
  const auto bad = [](const std::string& what) {
    return InvalidArgument("REDIS_URL is not a valid redis:// URL: " + what,
                           "use redis://[:password@]host[:port][/db], e.g. "
                           "redis://127.0.0.1:6379/0");
  };
  if (url.rfind(kScheme, 0) != 0) return bad("it does not start with redis://");
  std::string_view rest = std::string_view(url).substr(kScheme.size());
  Target t;
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = cred.find(':');
    if (colon == std::string_view::npos) {
      t.password = PercentDecode(cred);  // redis://password@host, as some clients allow
    } else {
      t.user = PercentDecode(cred.substr(0, colon));
      t.password = PercentDecode(cred.substr(colon + 1));
    }
  }
  std::string_view hostport = rest;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    if (size_t q = db.find('?'); q != std::string_view::npos) db = db.substr(0, q);
    if (!db.empty()) {
      int v = 0;
      auto [end, ec] = std::from_chars(db.data(), db.data() + db.size(), v);
      if (ec != std::errc() || end != db.data() + db.size() || v < 0) {
        return bad("the database after the host must be a number");
      }
      t.db = v;
    }
  }
  if (size_t colon = hostport.rfind(':');
      colon != std::string_view::npos && hostport.find(']') == std::string_view::npos) {
    std::string_view port = hostport.substr(colon + 1);
    int v = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || end != port.data() + port.size() || v <= 0 || v > 65535) {
      return bad("the port must be a number from 1 to 65535");
    }
    t.port = v;
    hostport = hostport.substr(0, colon);
  }
  if (!hostport.empty()) t.host = std::string(hostport);
  return t;
}

struct ReplyFree {
  void operator()(redisReply* r) const {
    if (r) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

bool IsError(const redisReply* r, std::string_view prefix = {}) {
  return r && r->type == REDIS_REPLY_ERROR &&
         std::string_view(r->str, r->len).substr(0, prefix.size()) == prefix;
}
std::string Str(const redisReply* r) {
  if (!r) return {};
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR) {
    return std::string(r->str, r->len);
  }
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  return {};
}
int64_t Int(const redisReply* r) {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  int64_t v = 0;
  const std::string s = Str(r);
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}
bool IsArray(const redisReply* r) { return r && r->type == REDIS_REPLY_ARRAY; }

// Stream ids are "<ms>-<seq>"; anything else cannot be a delivery of ours.
bool IsStreamId(std::string_view id) {
  const size_t dash = id.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash + 1 == id.size()) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i != dash && (id[i] < '0' || id[i] > '9')) return false;
  }
  return id.size() <= 41;
}

// One Redis connection. Only the thread that leased it uses it.
struct Conn {
  redisContext* ctx = nullptr;
  bool broken = false;  // an I/O error happened: never reuse
  int64_t timeout_ms = -1;
  ~Conn() {
    if (ctx) redisFree(ctx);
  }
};

Status LostError(const Target& t, const char* detail) {
  return Unavailable("lost the connection to Redis at " + t.Where() + ": " +
                         (detail && *detail ? detail : "connection closed"),
                     kHint);
}

bool SetTimeout(Conn& c, int64_t ms) {
  if (c.timeout_ms == ms) return true;
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  if (redisSetTimeout(c.ctx, tv) != REDIS_OK) return false;
  c.timeout_ms = ms;
  return true;
}

// Runs one command. Server errors come back as error replies (the caller
// decides); an I/O failure marks the connection broken and is Unavailable.
Result<Reply> Exec(const Target& t, Conn& c, const std::vector<std::string>& argv,
                   int64_t timeout_ms = kCommandTimeoutMs) {
  if (!SetTimeout(c, timeout_ms)) {
    c.broken = true;
    return LostError(t, c.ctx->errstr);
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  void* r = redisCommandArgv(c.ctx, static_cast<int>(args.size()), args.data(), lens.data());
  if (!r) {
    c.broken = true;
    return LostError(t, c.ctx->errstr);
  }
  return Reply(static_cast<redisReply*>(r));
}

Result<std::unique_ptr<Conn>> Connect(const Target& t) {
  timeval tv{kConnectTimeoutMs / 1000, 0};
  auto c = std::make_unique<Conn>();
  c->ctx = redisConnectWithTimeout(t.host.c_str(), t.port, tv);
  if (!c->ctx) return Unavailable("cannot reach Redis at " + t.Where() + ": out of memory", kHint);
  if (c->ctx->err) {
    return Unavailable("cannot reach Redis at " + t.Where() + ": " + c->ctx->errstr, kHint);
  }
  redisEnableKeepAlive(c->ctx);
  if (!t.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!t.user.empty()) auth.push_back(t.user);
    auth.push_back(t.password);
    AF_ASSIGN_OR_RETURN(Reply r, Exec(t, *c, auth));
    if (IsError(r.get())) {
      // Redis's own message never repeats the password.
      return Unauthenticated(
          "Redis at " + t.Where() + " refused the credentials in REDIS_URL: " + Str(r.get()),
          "check the user and password in REDIS_URL");
    }
  }
  AF_ASSIGN_OR_RETURN(Reply r, Exec(t, *c, {"SELECT", std::to_string(t.db)}));
  if (IsError(r.get(), "NOAUTH")) {
    return Unauthenticated("Redis at " + t.Where() + " requires a password",
                           "put it in REDIS_URL: redis://:password@host:port");
  }
  if (IsError(r.get())) {
    return InvalidArgument(
        "Redis at " + t.Where() + " has no database " + std::to_string(t.db) + ": " + Str(r.get()),
        "use a database number the server has (0-15 by default) in REDIS_URL");
  }
  return c;
}

BusMessage DecodeMessage(const std::string& s) {
  auto j = nlohmann::json::parse(s, nullptr, false);
  BusMessage m;
  if (j.is_object()) {
    m.type = j.value("type", "");
    if (auto it = j.find("payload"); it != j.end()) m.payload = *it;
  }
  return m;
}

// --- Pub/Sub -----------------------------------------------------------------

// Owns the subscriber connection and the thread that reads it and calls the
// handlers, one at a time, in publish order. Shared with the Subscription
// handles (through weak_ptr) so a Subscription may outlive the bus.
//
// Commands (SUBSCRIBE/UNSUBSCRIBE, one channel each) are queued by any thread
// and written by the reader thread, which a pipe wakes. Each command gets a
// sequence number; Redis answers them in order, so Subscribe waits until the
// answer to its command (or a later one) came: from then on its handler sees
// every message published.
class RedisSubscriber {
 public:
  static std::shared_ptr<RedisSubscriber> Start(Target target, std::string channel_prefix) {
    auto s = std::make_shared<RedisSubscriber>();
    s->target_ = std::move(target);
    s->prefix_ = std::move(channel_prefix);
    if (pipe2(s->wake_, O_CLOEXEC | O_NONBLOCK) != 0) s->wake_[0] = s->wake_[1] = -1;
    s->thread_ = std::thread([s] { s->Run(); });
    return s;
  }
  ~RedisSubscriber() {
    for (int fd : wake_) {
      if (fd >= 0) close(fd);
    }
  }

  void Stop() {
    std::call_once(stop_once_, [this] {
      std::thread::id dispatcher;
      {
        std::lock_guard lock(mu_);
        stop_ = true;
        dispatcher = dispatcher_id_;
      }
      Wake();
      cv_.notify_all();
      JoinUnlessSelf(thread_, dispatcher);
    });
  }

  Result<uint64_t> Subscribe(std::string_view topic, Handler handler) {
    std::unique_lock lock(mu_);
    if (stop_) return ClosedError();
    const uint64_t id = next_id_++;
    const std::string channel = prefix_ + std::string(topic);
    subs_.emplace(id, Sub{channel, std::make_shared<Handler>(std::move(handler))});
    Topic& t = topics_[channel];
    if (t.refs++ == 0) t.seq = EnqueueLocked("SUBSCRIBE", channel);
    const uint64_t seq = t.seq;
    if (std::this_thread::get_id() == dispatcher_id_) return id;  // cannot wait for itself
    Wake();
    const bool ok = cv_.wait_for(lock, milliseconds(kCommandTimeoutMs),
                                 [&] { return stop_ || done_seq_ >= seq; });
    if (stop_) {
      RemoveLocked(id);
      return ClosedError();
    }
    if (!ok) {
      RemoveLocked(id);
      return Unavailable("cannot subscribe at Redis " + target_.Where() + ": " +
                             (last_error_.empty() ? "no answer" : last_error_),
                         kHint);
    }
    return id;
  }

  void Unsubscribe(uint64_t id) {
    std::shared_ptr<Handler> doomed;  // destroyed unlocked: its captures may call back
    std::unique_lock lock(mu_);
    doomed = RemoveLocked(id);
    if (std::this_thread::get_id() != dispatcher_id_) {
      idle_cv_.wait(lock, [&] { return running_ != id; });
    }
    lock.unlock();
  }

 private:
  struct Sub {
    std::string channel;
    std::shared_ptr<Handler> handler;
  };
  struct Topic {
    int refs = 0;
    uint64_t seq = 0;  // the SUBSCRIBE that made it active
  };
  struct Command {
    const char* verb;
    std::string channel;
    uint64_t seq;
  };

  uint64_t EnqueueLocked(const char* verb, const std::string& channel) {
    const uint64_t seq = next_seq_++;
    commands_.push_back(Command{verb, channel, seq});
    return seq;
  }

  std::shared_ptr<Handler> RemoveLocked(uint64_t id) {
    auto it = subs_.find(id);
    if (it == subs_.end()) return nullptr;
    std::shared_ptr<Handler> h = std::move(it->second.handler);
    auto t = topics_.find(it->second.channel);
    if (t != topics_.end() && --t->second.refs == 0) {
      EnqueueLocked("UNSUBSCRIBE", t->first);
      topics_.erase(t);
      Wake();
    }
    subs_.erase(it);
    return h;
  }

  void Wake() {
    if (wake_[1] >= 0) {
      const char b = 1;
      (void)!write(wake_[1], &b, 1);
    }
  }
  void DrainWake() {
    char buf[64];
    while (wake_[0] >= 0 && read(wake_[0], buf, sizeof buf) > 0) {
    }
  }

  // Waits for the wake pipe (Stop) up to `ms`.
  void Pause(int ms) {
    pollfd p{wake_[0], POLLIN, 0};
    (void)poll(&p, 1, ms);
    DrainWake();
  }

  void Run() {
    {
      std::lock_guard lock(mu_);
      dispatcher_id_ = std::this_thread::get_id();
    }
    int backoff_ms = 50;
    while (!IsStopping()) {
      auto conn = Connect(target_);
      if (!conn.ok()) {
        {
          std::lock_guard lock(mu_);
          last_error_ = conn.status().message();
        }
        Pause(backoff_ms);
        backoff_ms = std::min(backoff_ms * 2, 2000);
        continue;
      }
      backoff_ms = 50;
      Serve(**conn);
    }
  }

  bool IsStopping() {
    std::lock_guard lock(mu_);
    return stop_;
  }

  // Reads one connection until it fails or Stop.
  void Serve(Conn& c) {
    std::deque<uint64_t> in_flight;  // sequence numbers awaiting their answer
    {
      // A fresh connection listens to nothing: subscribe again to every topic
      // wanted. These sequence numbers are above any waiting Subscribe's, so
      // those waits end once the server has them all.
      std::lock_guard lock(mu_);
      commands_.clear();
      for (auto& [channel, t] : topics_) t.seq = EnqueueLocked("SUBSCRIBE", channel);
      last_error_.clear();
    }
    redisContext* ctx = c.ctx;
    SetTimeout(c, 0);  // blocking reads are guarded by poll()
    while (true) {
      std::deque<Command> batch;
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
        batch.swap(commands_);
      }
      for (const Command& cmd : batch) {
        const char* argv[2] = {cmd.verb, cmd.channel.c_str()};
        size_t lens[2] = {std::strlen(cmd.verb), cmd.channel.size()};
        redisAppendCommandArgv(ctx, 2, argv, lens);
        in_flight.push_back(cmd.seq);
      }
      if (!batch.empty()) {
        int done = 0;
        while (!done) {
          if (redisBufferWrite(ctx, &done) != REDIS_OK) return Lost(ctx);
        }
      }
      pollfd fds[2] = {{ctx->fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) return Lost(ctx);
      if (fds[1].revents) DrainWake();
      if (!fds[0].revents) continue;
      if (redisBufferRead(ctx) != REDIS_OK) return Lost(ctx);
      void* raw = nullptr;
      while (redisGetReplyFromReader(ctx, &raw) == REDIS_OK && raw) {
        Reply r(static_cast<redisReply*>(raw));
        raw = nullptr;
        Handle(r.get(), in_flight);
        if (IsStopping()) return;
      }
      if (ctx->err) return Lost(ctx);
    }
  }

  void Lost(redisContext* ctx) {
    std::lock_guard lock(mu_);
    last_error_ = "lost the connection to Redis at " + target_.Where() + ": " +
                  (ctx->errstr[0] ? ctx->errstr : "connection closed");
  }

  void Handle(const redisReply* r, std::deque<uint64_t>& in_flight) {
    if (!IsArray(r) || r->elements < 3) return;
    const std::string kind = Str(r->element[0]);
    if (kind == "subscribe" || kind == "unsubscribe") {
      if (in_flight.empty()) return;
      {
        std::lock_guard lock(mu_);
        done_seq_ = std::max(done_seq_, in_flight.front());
      }
      in_flight.pop_front();
      cv_.notify_all();
      return;
    }
    if (kind != "message") return;
    const std::string channel = Str(r->element[1]);
    const BusMessage message = DecodeMessage(Str(r->element[2]));
    std::vector<uint64_t> targets;
    std::unique_lock lock(mu_);
    for (const auto& [id, sub] : subs_) {
      if (sub.channel == channel) targets.push_back(id);
    }
    for (uint64_t id : targets) {
      if (stop_) break;
      auto it = subs_.find(id);
      if (it == subs_.end()) continue;  // unsubscribed by an earlier handler
      std::shared_ptr<Handler> handler = it->second.handler;
      running_ = id;
      lock.unlock();
      CallHandler(*handler, message);
      handler.reset();
      lock.lock();
      running_ = 0;
      idle_cv_.notify_all();
    }
  }

  Target target_;
  std::string prefix_;
  int wake_[2] = {-1, -1};
  std::mutex mu_;                    // guards everything below
  std::condition_variable cv_;       // done_seq_ grew or stop_
  std::condition_variable idle_cv_;  // a handler call ended
  bool stop_ = false;
  uint64_t next_id_ = 1;
  uint64_t next_seq_ = 1;
  uint64_t done_seq_ = 0;
  uint64_t running_ = 0;
  std::string last_error_;
  std::thread::id dispatcher_id_;
  std::map<uint64_t, Sub> subs_;
  std::map<std::string, Topic> topics_;
  std::deque<Command> commands_;
  std::thread thread_;
  std::once_flag stop_once_;
};

// --- The bus -------------------------------------------------------------------

class RedisBus final : public Bus {
 public:
  RedisBus(const BusOptions& options, Target target)
      : options_(options),
        target_(std::move(target)),
        subscriber_(RedisSubscriber::Start(target_, "af:" + std::to_string(target_.db) + ":t:")) {}
  ~RedisBus() override { Close(); }

  // Connects once so a wrong URL or a stopped server is reported at Open.
  Status Ping() {
    return Run<bool>([&](Conn& c) -> Result<bool> {
             AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c, {"PING"}));
             if (IsError(r.get())) return Unavailable("Redis at " + Where() + ": " + Str(r.get()));
             return true;
           })
        .status();
  }

  Result<std::string> Send(std::string_view queue, BusMessage message) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateType(message));
    const std::string payload =
        message.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::string enqueued = std::to_string(Now());
    return Run<std::string>([&](Conn& c) -> Result<std::string> {
      AF_ASSIGN_OR_RETURN(Reply r,
                          Exec(target_, c,
                               {"EVAL", kSendScript, "4", StreamKey(queue), "af:queues", kSendsKey,
                                kEpochKey, message.type, payload, enqueued, std::string(queue)}));
      if (IsError(r.get())) return ServerError("XADD", r.get());
      if (!IsArray(r.get()) || r->elements < 3) return ServerError("XADD", r.get());
      std::lock_guard lock(state_mu_);
      if (Str(r->element[2]) == epoch_) sends_seen_ = std::max(sends_seen_, Int(r->element[1]));
      return Str(r->element[0]);
    });
  }

  Result<std::optional<Delivery>> Receive(std::string_view queue, std::string_view consumer,
                                          milliseconds wait) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateName("consumer", consumer));
    const auto deadline = std::chrono::steady_clock::now() + std::max(wait, wait.zero());
    const std::string q(queue), who(consumer);
    while (true) {
      if (IsClosed()) return ClosedError();
      int64_t next_expiry_ms = -1;
      AF_ASSIGN_OR_RETURN(std::optional<Delivery> d, Run<std::optional<Delivery>>([&](Conn& c) {
                            return TakeExpired(c, q, who, &next_expiry_ms);
                          }));
      if (d) return d;
      const auto left =
          std::chrono::ceil<milliseconds>(deadline - std::chrono::steady_clock::now());
      int64_t block = std::max<int64_t>(0, left.count());
      if (block > 0) {
        block = std::min(block, kMaxBlockSliceMs);
        if (next_expiry_ms >= 0) block = std::max<int64_t>(1, std::min(block, next_expiry_ms));
      }
      AF_ASSIGN_OR_RETURN(
          d, Run<std::optional<Delivery>>([&](Conn& c) { return ReadNew(c, q, who, block); }));
      if (d) return d;
      if (std::chrono::steady_clock::now() >= deadline) return std::optional<Delivery>();
    }
  }

  Status Ack(std::string_view queue, std::string_view id) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    if (!IsStreamId(id)) return NotDelivered(queue, id);
    return Run<bool>([&](Conn& c) -> Result<bool> {
             AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c,
                                               {"EVAL", kAckScript, "1", StreamKey(queue), kGroup,
                                                std::string(id)}));
             if (IsError(r.get()) && !IsGroupMissing(r.get())) {
               return ServerError("XACK", r.get());
             }
             if (Int(r.get()) != 1) return NotDelivered(queue, id);
             return true;
           })
        .status();
  }

  Status Nack(std::string_view queue, std::string_view id) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    if (!IsStreamId(id)) return NotDelivered(queue, id);
    const std::string q(queue);
    return Run<bool>([&](Conn& c) -> Result<bool> {
             const std::string sid(id);
             AF_ASSIGN_OR_RETURN(
                 Reply r, Exec(target_, c, {"XPENDING", StreamKey(q), kGroup, sid, sid, "1"}));
             if (IsError(r.get()) && !IsGroupMissing(r.get())) {
               return ServerError("XPENDING", r.get());
             }
             if (!IsArray(r.get()) || r->elements == 0 || !IsArray(r->element[0]) ||
                 r->element[0]->elements < 4) {
               return NotDelivered(q, id);
             }
             AF_ASSIGN_OR_RETURN(bool given, GiveBack(c, q, sid, Int(r->element[0]->element[3])));
             if (!given) return NotDelivered(q, id);
             return true;
           })
        .status();
  }

  Status Extend(std::string_view queue, std::string_view id, std::string_view consumer) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateName("consumer", consumer));
    if (!IsStreamId(id)) return NotDelivered(queue, id);
    return Run<bool>([&](Conn& c) -> Result<bool> {
             AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c,
                                               {"EVAL", kExtendScript, "1", StreamKey(queue),
                                                kGroup, std::string(id), std::string(consumer),
                                                std::to_string(options_.ack_timeout.count())}));
             if (IsError(r.get()) && !IsGroupMissing(r.get())) {
               return ServerError("XCLAIM", r.get());
             }
             if (Int(r.get()) != 1) return NotDelivered(queue, id);
             return true;
           })
        .status();
  }

  Result<int> ReclaimFrom(std::string_view queue, std::string_view consumer) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    AF_RETURN_IF_ERROR(ValidateName("consumer", consumer));
    const std::string q(queue), who(consumer);
    return Run<int>([&](Conn& c) -> Result<int> {
      AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c,
                                        {"XPENDING", StreamKey(q), kGroup, "-", "+",
                                         std::to_string(kPendingScan), who}));
      if (IsGroupMissing(r.get())) return 0;
      if (IsError(r.get())) return ServerError("XPENDING", r.get());
      int count = 0;
      for (size_t i = 0; IsArray(r.get()) && i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        if (!IsArray(e) || e->elements < 4) continue;
        AF_ASSIGN_OR_RETURN(bool given, GiveBack(c, q, Str(e->element[0]), Int(e->element[3])));
        if (given) ++count;
      }
      return count;
    });
  }

  Result<Subscription> Subscribe(std::string_view topic, Handler handler) override {
    AF_RETURN_IF_ERROR(ValidateName("topic", topic));
    if (!handler) return InvalidArgument("subscription handler is empty", "pass a callable");
    if (IsClosed()) return ClosedError();
    AF_ASSIGN_OR_RETURN(uint64_t id, subscriber_->Subscribe(topic, std::move(handler)));
    std::weak_ptr<RedisSubscriber> weak = subscriber_;
    return Subscription([weak, id] {
      if (auto s = weak.lock()) s->Unsubscribe(id);
    });
  }

  Status Publish(std::string_view topic, BusMessage message) override {
    AF_RETURN_IF_ERROR(ValidateName("topic", topic));
    AF_RETURN_IF_ERROR(ValidateType(message));
    const std::string body =
        nlohmann::json{{"type", message.type}, {"payload", message.payload}}.dump(
            -1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::string channel = "af:" + std::to_string(target_.db) + ":t:" + std::string(topic);
    return Run<bool>([&](Conn& c) -> Result<bool> {
             AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c, {"PUBLISH", channel, body}));
             if (IsError(r.get())) return ServerError("PUBLISH", r.get());
             return true;
           })
        .status();
  }

  Status Heartbeat(const AgentBeat& beat) override {
    AF_RETURN_IF_ERROR(ValidateName("agent_id", beat.agent_id));
    const nlohmann::json j{{"role", beat.role},
                           {"state", beat.state},
                           {"current_task", beat.current_task},
                           {"ts_ms", beat.ts_ms == 0 ? Now() : beat.ts_ms}};
    const std::string body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return Run<bool>([&](Conn& c) -> Result<bool> {
             AF_ASSIGN_OR_RETURN(Reply r,
                                 Exec(target_, c, {"HSET", "af:beats", beat.agent_id, body}));
             if (IsError(r.get())) return ServerError("HSET", r.get());
             return true;
           })
        .status();
  }

  Result<std::vector<AgentBeat>> Beats() override {
    return Run<std::vector<AgentBeat>>([&](Conn& c) -> Result<std::vector<AgentBeat>> {
      AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c, {"HGETALL", "af:beats"}));
      if (IsError(r.get())) return ServerError("HGETALL", r.get());
      std::vector<AgentBeat> out;
      for (size_t i = 0; IsArray(r.get()) && i + 1 < r->elements; i += 2) {
        auto j = nlohmann::json::parse(Str(r->element[i + 1]), nullptr, false);
        if (!j.is_object()) continue;
        AgentBeat b;
        b.agent_id = Str(r->element[i]);
        b.role = j.value("role", "");
        b.state = j.value("state", "");
        b.current_task = j.value("current_task", "");
        b.ts_ms = j.value("ts_ms", int64_t{0});
        out.push_back(std::move(b));
      }
      std::sort(out.begin(), out.end(),
                [](const AgentBeat& a, const AgentBeat& b) { return a.agent_id < b.agent_id; });
      return out;
    });
  }

  Result<QueueStats> Stats(std::string_view queue) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    const std::string q(queue);
    return Run<QueueStats>([&](Conn& c) -> Result<QueueStats> {
      QueueStats s;
      AF_ASSIGN_OR_RETURN(Reply len, Exec(target_, c, {"XLEN", StreamKey(q)}));
      AF_ASSIGN_OR_RETURN(Reply pending, Exec(target_, c, {"XPENDING", StreamKey(q), kGroup}));
      AF_ASSIGN_OR_RETURN(Reply dead, Exec(target_, c, {"XLEN", DeadKey(q)}));
      if (IsError(len.get())) return ServerError("XLEN", len.get());
      if (IsArray(pending.get()) && pending->elements > 0) s.pending = Int(pending->element[0]);
      // Acked and dead-lettered entries are deleted, so the stream holds
      // exactly the waiting and the pending ones.
      s.ready = std::max<int64_t>(0, Int(len.get()) - s.pending);
      s.dead = Int(dead.get());
      return s;
    });
  }

  Status DeleteQueue(std::string_view queue) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    const std::string q(queue);
    return Run<bool>([&](Conn& c) -> Result<bool> {
             AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c,
                                               {"EVAL", kDeleteQueueScript, "3", StreamKey(q),
                                                DeadKey(q), "af:queues", q}));
             if (IsError(r.get())) return ServerError("DEL", r.get());
             return true;
           })
        .status();
  }

  Result<std::vector<std::string>> Queues() override {
    return Run<std::vector<std::string>>([&](Conn& c) -> Result<std::vector<std::string>> {
      AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c, {"SMEMBERS", "af:queues"}));
      if (IsError(r.get())) return ServerError("SMEMBERS", r.get());
      std::vector<std::string> out;
      for (size_t i = 0; IsArray(r.get()) && i < r->elements; ++i) {
        out.push_back(Str(r->element[i]));
      }
      std::sort(out.begin(), out.end());
      return out;
    });
  }

  Result<std::vector<Delivery>> DeadLetters(std::string_view queue) override {
    AF_RETURN_IF_ERROR(ValidateName("queue", queue));
    const std::string q(queue);
    return Run<std::vector<Delivery>>([&](Conn& c) -> Result<std::vector<Delivery>> {
      AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c, {"XRANGE", DeadKey(q), "-", "+"}));
      if (IsError(r.get())) return ServerError("XRANGE", r.get());
      std::vector<Delivery> out;
      for (size_t i = 0; IsArray(r.get()) && i < r->elements; ++i) {
        auto fields = Fields(r->element[i]);
        if (!fields) continue;
        Delivery d = ToDelivery(q, (*fields)["id"], *fields, 0);
        d.attempts = static_cast<int>(std::atoll((*fields)["attempts"].c_str()));
        out.push_back(std::move(d));
      }
      return out;
    });
  }

  Status Check() override {
    if (IsClosed()) return ClosedError();
    return Ping();
  }

  std::string Describe() const override {
    return "redis " + Where() + " db " + std::to_string(target_.db);
  }

  uint64_t Generation() const override { return generation_.load(); }

  void Close() override {
    std::vector<std::unique_ptr<Conn>> idle;
    {
      std::unique_lock lock(pool_mu_);
      closed_ = true;
      // Wakes reads blocked in XREADGROUP: their call fails at once and
      // returns Cancelled because the bus is closed.
      for (Conn* c : leased_) shutdown(c->ctx->fd, SHUT_RDWR);
      drained_cv_.wait(lock, [&] { return leased_.empty(); });
      idle.swap(idle_);
    }
    subscriber_->Stop();
  }

 private:
  // A connection leased from the pool; given back (or dropped if broken) on
  // destruction.
  class Lease {
   public:
    Lease(RedisBus* bus, std::unique_ptr<Conn> c) : bus_(bus), conn_(std::move(c)) {}
    Lease(Lease&& o) noexcept : bus_(o.bus_), conn_(std::move(o.conn_)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_) bus_->GiveBackConn(std::move(conn_));
    }
    Conn& conn() { return *conn_; }

   private:
    RedisBus* bus_;
    std::unique_ptr<Conn> conn_;
  };

  Result<Lease> Acquire() {
    {
      std::lock_guard lock(pool_mu_);
      if (closed_) return ClosedError();
      if (!idle_.empty()) {
        std::unique_ptr<Conn> c = std::move(idle_.back());
        idle_.pop_back();
        leased_.insert(c.get());
        return Lease(this, std::move(c));
      }
    }
    AF_ASSIGN_OR_RETURN(std::unique_ptr<Conn> c, Connect(target_));
    // Every connection after the first one replaces one that failed or is
    // one more for concurrent calls: either way, see whether the server is
    // still the one this bus wrote to before using it.
    AF_RETURN_IF_ERROR(NoteServerState(*c));
    std::lock_guard lock(pool_mu_);
    if (closed_) return ClosedError();
    leased_.insert(c.get());
    return Lease(this, std::move(c));
  }

  void GiveBackConn(std::unique_ptr<Conn> c) {
    std::unique_ptr<Conn> doomed;
    std::vector<std::unique_ptr<Conn>> stale;  // freed unlocked
    {
      std::lock_guard lock(pool_mu_);
      leased_.erase(c.get());
      if (c->broken) {
        // The server probably went away: the idle connections are dead too,
        // and the retry must get a fresh one.
        stale.swap(idle_);
        doomed = std::move(c);
      } else if (closed_ || idle_.size() >= kMaxIdleConnections) {
        doomed = std::move(c);
      } else {
        idle_.push_back(std::move(c));
      }
      if (leased_.empty()) drained_cv_.notify_all();
    }
  }

  bool IsClosed() {
    std::lock_guard lock(pool_mu_);
    return closed_;
  }

  // Compares what the server remembers (af:epoch, af:sends) with what this
  // bus saw of it and bumps the generation when the server lost data.
  Status NoteServerState(Conn& c) {
    AF_ASSIGN_OR_RETURN(
        Reply r,
        Exec(target_, c, {"EVAL", kServerStateScript, "2", kEpochKey, kSendsKey, NewToken()}));
    if (IsError(r.get()) || !IsArray(r.get()) || r->elements < 2) {
      return ServerError("reading af:epoch", r.get());
    }
    const std::string epoch = Str(r->element[0]);
    const int64_t sends = Int(r->element[1]);
    std::lock_guard lock(state_mu_);
    const bool lost = !epoch_.empty() && (epoch != epoch_ || sends < sends_seen_);
    epoch_ = epoch;
    sends_seen_ = sends;
    if (lost) ++generation_;
    return Status::Ok();
  }

  // Unique enough across processes and restarts: only compared for equality.
  static std::string NewToken() {
    static std::mutex mu;
    static std::mt19937_64 rng{
        std::random_device{}() ^
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
        (static_cast<uint64_t>(getpid()) << 32)};
    std::lock_guard lock(mu);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    return buf;
  }

  // Runs `op` on a leased connection; if that connection broke (e.g. Redis
  // restarted since it was opened) runs it once more on a fresh one. The
  // retry may repeat a write (at-least-once allows it).
  template <typename T, typename Op>
  Result<T> Run(Op&& op) {
    for (int attempt = 0;; ++attempt) {
      AF_ASSIGN_OR_RETURN(Lease lease, Acquire());
      Result<T> r = op(lease.conn());
      if (IsClosed()) return ClosedError();
      if (!lease.conn().broken || attempt == 1) return r;
    }
  }

  // Expired deliveries of `queue` (no ack within ack_timeout, or given back)
  // are taken over for `consumer`, or dead-lettered once they had
  // max_attempts deliveries. Sets *next_expiry_ms to the time until the
  // earliest other pending delivery expires (-1: none).
  Result<std::optional<Delivery>> TakeExpired(Conn& c, const std::string& q,
                                              const std::string& consumer,
                                              int64_t* next_expiry_ms) {
    const int64_t ack_ms = options_.ack_timeout.count();
    AF_ASSIGN_OR_RETURN(
        Reply r, Exec(target_, c,
                      {"XPENDING", StreamKey(q), kGroup, "-", "+", std::to_string(kPendingScan)}));
    if (IsGroupMissing(r.get())) {
      AF_RETURN_IF_ERROR(CreateGroup(c, q));
      return std::optional<Delivery>();
    }
    if (IsError(r.get())) return ServerError("XPENDING", r.get());
    for (size_t i = 0; IsArray(r.get()) && i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (!IsArray(e) || e->elements < 4) continue;
      const std::string id = Str(e->element[0]);
      const int64_t idle = Int(e->element[2]);
      const int64_t count = Int(e->element[3]);
      if (idle < ack_ms) {
        const int64_t left = ack_ms - idle;
        if (*next_expiry_ms < 0 || left < *next_expiry_ms) *next_expiry_ms = left;
        continue;
      }
      if (count >= options_.max_attempts) {
        AF_RETURN_IF_ERROR(DeadLetter(c, q, id, count).status());
        continue;
      }
      // XCLAIM re-checks the idle time, so of two processes racing for the
      // same entry only one gets it; it also adds one to the delivery count.
      AF_ASSIGN_OR_RETURN(
          Reply claimed,
          Exec(target_, c, {"XCLAIM", StreamKey(q), kGroup, consumer, std::to_string(ack_ms), id}));
      if (IsError(claimed.get())) return ServerError("XCLAIM", claimed.get());
      if (!IsArray(claimed.get()) || claimed->elements == 0) continue;
      auto fields = Fields(claimed->element[0]);
      if (!fields) continue;  // deleted meanwhile
      return std::optional<Delivery>(ToDelivery(q, id, *fields, static_cast<int>(count + 1)));
    }
    return std::optional<Delivery>();
  }

  // XREADGROUP for a message never delivered, blocking up to `block_ms`
  // (0 = do not block).
  Result<std::optional<Delivery>> ReadNew(Conn& c, const std::string& q,
                                          const std::string& consumer, int64_t block_ms) {
    std::vector<std::string> argv{"XREADGROUP", "GROUP", kGroup, consumer, "COUNT", "1"};
    if (block_ms > 0) {
      argv.push_back("BLOCK");
      argv.push_back(std::to_string(block_ms));
    }
    argv.insert(argv.end(), {"STREAMS", StreamKey(q), ">"});
    AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c, argv, block_ms + kCommandTimeoutMs));
    if (IsGroupMissing(r.get())) {
      // First use, or a restarted server that lost the group.
      AF_RETURN_IF_ERROR(CreateGroup(c, q));
      AF_ASSIGN_OR_RETURN(r, Exec(target_, c, argv, block_ms + kCommandTimeoutMs));
    }
    if (IsError(r.get())) return ServerError("XREADGROUP", r.get());
    // [[key, [[id, [field, value, ...]]]]]; nil when nothing came.
    if (!IsArray(r.get()) || r->elements == 0) return std::optional<Delivery>();
    const redisReply* stream = r->element[0];
    if (!IsArray(stream) || stream->elements < 2 || !IsArray(stream->element[1]) ||
        stream->element[1]->elements == 0) {
      return std::optional<Delivery>();
    }
    const redisReply* entry = stream->element[1]->element[0];
    auto fields = Fields(entry);
    if (!fields) return std::optional<Delivery>();
    return std::optional<Delivery>(ToDelivery(q, Str(entry->element[0]), *fields, 1));
  }

  // A delivery ended without an ack (`count` deliveries so far): dead-letter
  // it, or make it deliverable at once by parking it with the returned
  // consumer, idle for ack_timeout, its count unchanged. False if it is no
  // longer pending.
  Result<bool> GiveBack(Conn& c, const std::string& q, const std::string& id, int64_t count) {
    if (count >= options_.max_attempts) return DeadLetter(c, q, id, count);
    AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c,
                                      {"XCLAIM", StreamKey(q), kGroup, kReturnedConsumer, "0", id,
                                       "IDLE", std::to_string(options_.ack_timeout.count()),
                                       "RETRYCOUNT", std::to_string(count), "JUSTID"}));
    if (IsError(r.get())) return ServerError("XCLAIM", r.get());
    return IsArray(r.get()) && r->elements > 0;
  }

  Result<bool> DeadLetter(Conn& c, const std::string& q, const std::string& id, int64_t count) {
    AF_ASSIGN_OR_RETURN(Reply r, Exec(target_, c,
                                      {"EVAL", kDeadLetterScript, "2", StreamKey(q), DeadKey(q),
                                       kGroup, id, std::to_string(count)}));
    if (IsError(r.get())) return ServerError("dead-lettering", r.get());
    return Int(r.get()) == 1;
  }

  Status CreateGroup(Conn& c, const std::string& q) {
    // From id 0: messages sent before the first Receive are delivered too.
    AF_ASSIGN_OR_RETURN(
        Reply r, Exec(target_, c, {"XGROUP", "CREATE", StreamKey(q), kGroup, "0", "MKSTREAM"}));
    if (IsError(r.get()) && !IsError(r.get(), "BUSYGROUP")) {
      return ServerError("XGROUP CREATE", r.get());
    }
    AF_ASSIGN_OR_RETURN(Reply s, Exec(target_, c, {"SADD", "af:queues", q}));
    return Status::Ok();
  }

  static bool IsGroupMissing(const redisReply* r) {
    return IsError(r, "NOGROUP") ||
           (IsError(r) && std::string_view(r->str, r->len).find("NOGROUP") != std::string::npos);
  }

  // [id, [field, value, ...]] -> fields; nullopt for a nil (deleted) entry.
  static std::optional<std::map<std::string, std::string>> Fields(const redisReply* entry) {
    if (!IsArray(entry) || entry->elements < 2 || !IsArray(entry->element[1])) {
      return std::nullopt;
    }
    std::map<std::string, std::string> out;
    const redisReply* kv = entry->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
      out[Str(kv->element[i])] = Str(kv->element[i + 1]);
    }
    return out;
  }

  static Delivery ToDelivery(const std::string& q, const std::string& id,
                             std::map<std::string, std::string>& f, int attempts) {
    Delivery d;
    d.id = id;
    d.queue = q;
    d.type = f["type"];
    d.payload = nlohmann::json::parse(f["payload"], nullptr, false);
    if (d.payload.is_discarded()) d.payload = nullptr;
    d.attempts = attempts;
    d.enqueued_ms = std::atoll(f["enqueued_ms"].c_str());
    return d;
  }

  Status ServerError(const std::string& what, const redisReply* r) const {
    return Unavailable("Redis at " + Where() + " refused " + what + ": " + Str(r),
                       "check the server's log; " + std::string(kHint));
  }

  static std::string StreamKey(std::string_view q) { return "af:q:" + std::string(q); }
  static std::string DeadKey(std::string_view q) { return "af:dead:" + std::string(q); }
  std::string Where() const { return target_.Where(); }

  int64_t Now() const {
    if (options_.now_ms) return options_.now_ms();
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  const BusOptions options_;
  const Target target_;
  std::shared_ptr<RedisSubscriber> subscriber_;
  std::mutex pool_mu_;  // guards the three below
  bool closed_ = false;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::set<Conn*> leased_;
  std::condition_variable drained_cv_;  // leased_ became empty
  std::mutex state_mu_;                 // guards the two below
  std::string epoch_;                   // the server's af:epoch when last seen; empty before
  int64_t sends_seen_ = 0;              // the highest af:sends seen
  std::atomic<uint64_t> generation_{0};
};

}  // namespace

Result<std::unique_ptr<Bus>> NewRedisBus(const BusOptions& options) {
  AF_ASSIGN_OR_RETURN(Target target, ParseUrl(options.url));
  // hiredis writes with plain write(): a server that went away would raise
  // SIGPIPE and kill the process. Only a default disposition is changed.
  static std::once_flag sigpipe_once;
  std::call_once(sigpipe_once, [] {
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
  });
  auto bus = std::make_unique<RedisBus>(options, std::move(target));
  AF_RETURN_IF_ERROR(bus->Ping());
  return std::unique_ptr<Bus>(std::move(bus));
}

}  // namespace af::bus_internal
