#include "af/api/http_server.h"

// All RESTinio template code of the project lives in this file: RESTinio is
// header-only and heavy to compile, so it is instantiated exactly once.
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <restinio/all.hpp>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "af/api/errors.h"
#include "af/api/router.h"
#include "af/core/strings.h"

namespace af {
namespace {

// --- Answering requests the parser refuses ----------------------------------
// RESTinio checks its limits (URL, header count and size, body size) and the
// HTTP syntax inside its parser callbacks, and on a violation it only logs and
// closes the connection: the client sees a reset and never learns why. It has
// no hook for that, but both steps are visible from the traits: the error is
// logged through Traits::logger_t and the connection is then closed through
// Traits::stream_socket_t, synchronously on the same thread. So the logger
// notes the parser's verdict in a thread-local, and the socket, when asked to
// shut down right after, answers with the matching status (413, 414, 431 or
// 400, JSON error body, Connection: close) and lingers briefly so the answer
// is read before the connection goes.

// The server's limits, for the messages.
struct ParserLimits {
  size_t max_url = 0;
  size_t max_fields = 0;
  size_t max_field_bytes = 0;
  uint64_t max_body = 0;
};

// What the logger saw: the http_parser error name ("HPE_CB_url") and limits.
struct ParserVerdict {
  std::string error;
  ParserLimits limits;
};
thread_local ParserVerdict t_verdict;

class ParserErrorLogger {
 public:
  explicit ParserErrorLogger(ParserLimits limits = {}) : limits_(limits) {}
  template <typename Builder>
  void trace(Builder&&) const noexcept {}
  template <typename Builder>
  void info(Builder&&) const noexcept {}
  template <typename Builder>
  void warn(Builder&&) const noexcept {}
  template <typename Builder>
  void error(Builder&& builder) const {
    // "[connection:7] parser error HPE_CB_url: the on_url callback failed"
    static constexpr std::string_view kMark = "parser error ";
    const std::string message = builder();
    const size_t at = message.find(kMark);
    if (at == std::string::npos) return;
    std::string name = message.substr(at + kMark.size());
    t_verdict = {name.substr(0, name.find(':')), limits_};
  }

 private:
  ParserLimits limits_;
};

// The answer to a request the parser refused.
std::string RefusalFor(const ParserVerdict& v) {
  const std::string& e = v.error;
  ApiError error;
  if (e == "HPE_CB_url") {
    error = ApiError(InvalidArgument("the request URL is longer than " +
                                         std::to_string(v.limits.max_url) + " bytes",
                                     "send long inputs in a POST body, or shorten the query"),
                     ApiErrorCode::kUriTooLong);
  } else if (e == "HPE_CB_header_field" || e == "HPE_CB_header_value" ||
             e == "HPE_HEADER_OVERFLOW") {
    error =
        ApiError(InvalidArgument("the request headers are too large: at most " +
                                     std::to_string(v.limits.max_fields) + " headers of at most " +
                                     std::to_string(v.limits.max_field_bytes) +
                                     " bytes each are accepted, 80 KiB in all",
                                 "send fewer or smaller headers"),
                 ApiErrorCode::kHeadersTooLarge);
  } else if (e == "HPE_CB_headers_complete" || e == "HPE_CB_body") {
    error =
        ApiError(ResourceExhausted(
                     "request body is larger than the limit of " +
                         std::to_string(v.limits.max_body) + " bytes",
                     "send a smaller body (the limit is the server's api.max_body_bytes setting)"),
                 ApiErrorCode::kPayloadTooLarge);
    error.details = {{"max_body_bytes", v.limits.max_body}};
  } else if (e == "HPE_UNEXPECTED_CONTENT_LENGTH" || e == "HPE_INVALID_CONTENT_LENGTH") {
    error =
        // http_parser also says this of a chunk size past 2^64.
        ApiError(InvalidArgument("the request's Content-Length conflicts with its "
                                 "Transfer-Encoding, is given twice or is not a number, or a "
                                 "chunk's size is out of range",
                                 "send either Content-Length or Transfer-Encoding: chunked, "
                                 "once, with sizes that fit the body"));
  } else {
    error = ApiError(InvalidArgument("malformed HTTP request (" + e + ")",
                                     "send a well-formed HTTP/1.1 request"));
  }
  const std::string id = NewRequestId();
  HttpResponse r = ErrorResponse(error, id);
  std::string out =
      "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(ReasonPhrase(r.status)) +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(r.body.size()) +
      "\r\nConnection: close\r\nX-Request-Id: " + id;
  for (const auto& [name, value] : r.headers) out += "\r\n" + name + ": " + value;
  out += "\r\n\r\n" + r.body;
  return out;
}

// Writes the refusal on its own descriptor of the connection, then reads
// and discards what the client still sends (for at most 2 s and 64 MiB), so
// closing does not reset the connection before the client has read the
// answer (a close with unread input sends RST, which discards it).
class Lingerer : public std::enable_shared_from_this<Lingerer> {
 public:
  Lingerer(asio::any_io_executor executor, std::string answer)
      : strand_(asio::make_strand(executor)),
        socket_(strand_),
        timer_(strand_),
        answer_(std::move(answer)) {}

  void Start(const asio::ip::tcp& protocol, int fd) {
    asio::error_code ec;
    socket_.assign(protocol, fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    auto self = shared_from_this();
    timer_.expires_after(std::chrono::seconds(2));
    timer_.async_wait([self](const asio::error_code& e) {
      if (!e) self->Finish();
    });
    asio::async_write(socket_, asio::buffer(answer_),
                      asio::bind_executor(strand_, [self](const asio::error_code& e, size_t) {
                        if (e) return self->Finish();
                        asio::error_code ignored;
                        self->socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                        self->Drain();
                      }));
  }

 private:
  void Drain() {
    auto self = shared_from_this();
    socket_.async_read_some(
        asio::buffer(scratch_),
        asio::bind_executor(strand_, [self](const asio::error_code& e, size_t n) {
          self->drained_ += n;
          if (e || self->drained_ > (64u << 20)) return self->Finish();
          self->Drain();
        }));
  }
  void Finish() {
    asio::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
  }

  asio::strand<asio::any_io_executor> strand_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::string answer_;
  std::array<char, 16384> scratch_{};
  size_t drained_ = 0;
};

// RESTinio's connection socket, with the refusal step on shutdown (above).
class AnsweringSocket : public asio::ip::tcp::socket {
 public:
  using Base = asio::ip::tcp::socket;
  using Base::Base;
  AnsweringSocket(AnsweringSocket&&) = default;
  AnsweringSocket& operator=(AnsweringSocket&&) = default;

  void shutdown(shutdown_type what, asio::error_code& ec) {
    if (!t_verdict.error.empty()) {
      ParserVerdict verdict = std::move(t_verdict);
      t_verdict = {};
      asio::error_code local_ec;
      auto local = local_endpoint(local_ec);
      const int fd = local_ec ? -1 : ::dup(native_handle());
      if (fd >= 0) {
        // RESTinio closes its descriptor next; the duplicate keeps the
        // connection open for the answer.
        std::make_shared<Lingerer>(get_executor(), RefusalFor(verdict))
            ->Start(local.protocol(), fd);
        return;
      }
    }
    Base::shutdown(what, ec);
  }
};

// Thread-safe connections (strands) and asio timers, which run on our own
// io_context; RESTinio's log is only read for parser errors (the app logs via
// the access-log hook instead).
using Traits = restinio::traits_t<restinio::asio_timer_manager_t, ParserErrorLogger,
                                  restinio::default_request_handler_t, restinio::default_strand_t,
                                  AnsweringSocket>;
using Server = restinio::http_server_t<Traits>;

// Limits checked by the parser before a handler runs (see RefusalFor). The
// URL limit leaves room for a full search text (routes.h bounds it at 1000
// bytes, up to 3x that percent-encoded).
constexpr size_t kMaxUrlBytes = 16 * 1024;
constexpr size_t kMaxHeaderFields = 100;
constexpr size_t kMaxHeaderFieldBytes = 16 * 1024;

// Headers a handler may not set: the server owns them.
bool IsReservedHeader(const std::string& name) {
  std::string n = Lower(name);
  return n == "x-request-id" || n == "content-length" || n == "content-type" ||
         n == "transfer-encoding";
}

}  // namespace

bool IsSaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok =
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string NewRequestId() {
  // One generator per thread: no lock on the request path, and seeding from
  // random_device keeps ids of concurrent servers (and restarts) apart.
  thread_local std::mt19937_64 rng{(uint64_t{std::random_device{}()} << 32) ^
                                   std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "req_";
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) id.push_back(kHex[(a >> (i * 4)) & 0xf]);
  for (int i = 0; i < 8; ++i) id.push_back(kHex[(b >> (i * 4)) & 0xf]);
  return id;
}

// The shared state of one stream. Once the handler has returned, the stream
// owns the connection's socket (taken from RESTinio, see HandleStream) and
// writes the chunked response itself: a Write() from any thread sends at once
// with one non-blocking sendmsg() (chunk-size line, the caller's bytes and
// CRLF gathered, nothing copied) when nothing is queued, and queues only what
// the socket does not take; an asio wait for writability on an I/O thread
// sends the rest. So a delivery to an SSE client costs one system call and
// no allocation, no hop through an I/O thread and no RESTinio bookkeeping.
//
// `mu_` guards everything, the socket included: every call on it (send,
// wait, close) is made under the lock, so the hub's thread and the I/O
// threads never use it at once. The socket (and its timer) is destroyed as
// soon as the stream ends, and by Shutdown() at the latest, always before the
// io_context that owns it.
class ResponseStream::Impl : public std::enable_shared_from_this<ResponseStream::Impl> {
 public:
  Impl(size_t max_buffered, bool no_delay) : max_buffered_(max_buffered), no_delay_(no_delay) {}

  bool Write(std::string_view chunk) {
    if (chunk.empty()) return !closed();  // a zero-size chunk would end the body
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    if (QueuedLocked() + chunk.size() > max_buffered_) {
      // Too far behind: drop what is queued and end the connection rather
      // than grow without bound. The client may reconnect and resume.
      closed_ = true;
      close_requested_ = true;
      abort_ = true;
      pending_.clear();
      pending_.shrink_to_fit();
      pending_off_ = 0;
      DestroySocketLocked();
      return false;
    }
    char size_line[24];
    const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
    if (socket_ && !waiting_ && QueuedLocked() == 0) {
      // The usual case: nothing queued, so the chunk goes out now, in one
      // system call, straight from the caller's memory.
      iovec iov[3] = {{size_line, static_cast<size_t>(n)},
                      {const_cast<char*>(chunk.data()), chunk.size()},
                      {const_cast<char*>("\r\n"), 2}};
      const size_t total = iov[0].iov_len + iov[1].iov_len + iov[2].iov_len;
      ssize_t sent = SendLocked(iov, 3);
      if (sent == static_cast<ssize_t>(total)) return true;
      if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          FailLocked();
          return false;
        }
        sent = 0;
      }
      // The socket took part of it: queue the rest and wait for room.
      size_t skip = static_cast<size_t>(sent);
      for (const iovec& v : iov) {
        const size_t take = std::min(skip, v.iov_len);
        pending_.append(static_cast<const char*>(v.iov_base) + take, v.iov_len - take);
        skip -= take;
      }
      ArmWaitLocked();
      return true;
    }
    pending_.append(size_line, static_cast<size_t>(n)).append(chunk).append("\r\n", 2);
    if (socket_ && !waiting_) FlushLocked();
    return !closed_;
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (close_requested_) return;
    closed_ = true;
    close_requested_ = true;
    pending_.append("0\r\n\r\n");  // the last chunk, then the connection ends
    if (socket_ && !waiting_) FlushLocked();
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }
  bool open() const {
    std::lock_guard<std::mutex> lock(mu_);
    return opened_ && !closed_;
  }
  // Opened, and its connection is gone (or was never taken): nothing of it
  // needs the server's io_context any more.
  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return opened_ && !socket_;
  }
  size_t buffered_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return QueuedLocked();
  }

  void AddHeader(std::string name, std::string value) {
    std::lock_guard<std::mutex> lock(mu_);
    headers_.emplace_back(std::move(name), std::move(value));
  }
  std::vector<std::pair<std::string, std::string>> TakeHeaders() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(headers_);
  }

  // The handler chose not to stream: writes are refused from now on.
  void Abandon() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    close_requested_ = true;
    pending_.clear();
  }

  // Called on the I/O thread that handled the request, with the connection's
  // socket and the response head: sends the head plus anything written so far.
  void Open(AnsweringSocket socket, std::string head) {
    std::lock_guard<std::mutex> lock(mu_);
    opened_ = true;
    if (stopped_ || abort_) return;  // `socket` closes as it goes
    socket_.emplace(std::move(socket));
    asio::error_code ec;
    // Small writes go out at once instead of waiting for the previous one's
    // acknowledgement (Nagle): each is a batch of events someone waits for.
    if (no_delay_) socket_->set_option(asio::ip::tcp::no_delay(true), ec);
    timer_.emplace(socket_->get_executor());
    pending_.insert(0, head);
    FlushLocked();
  }

  // After the I/O threads are joined: the socket must go before the
  // io_context does.
  void Shutdown() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    close_requested_ = true;
    stopped_ = true;
    pending_.clear();
    pending_off_ = 0;
    DestroySocketLocked();
  }

 private:
  size_t QueuedLocked() const { return pending_.size() - pending_off_; }

  ssize_t SendLocked(iovec* iov, int count) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n;
    do {
      n = ::sendmsg(socket_->native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) last_progress_ = std::chrono::steady_clock::now();
    return n;
  }

  // Sends what is queued as far as the socket takes it; waits for room when
  // it is full; ends the connection once the last chunk is out.
  void FlushLocked() {
    while (socket_ && QueuedLocked() > 0) {
      iovec iov{pending_.data() + pending_off_, QueuedLocked()};
      ssize_t n = SendLocked(&iov, 1);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return ArmWaitLocked();
        return FailLocked();
      }
      pending_off_ += static_cast<size_t>(n);
    }
    if (!socket_) return;
    pending_.clear();
    pending_off_ = 0;
    // A slow client's backlog may have grown the buffer to a megabyte.
    if (pending_.capacity() > (64u << 10)) pending_.shrink_to_fit();
    if (close_requested_) {
      asio::error_code ec;
      socket_->Base::shutdown(asio::ip::tcp::socket::shutdown_send, ec);
      DestroySocketLocked();
    }
  }

  void ArmWaitLocked() {
    waiting_ = true;
    socket_->async_wait(asio::socket_base::wait_write,
                        [self = shared_from_this()](const asio::error_code& ec) {
                          std::lock_guard<std::mutex> lock(self->mu_);
                          self->waiting_ = false;
                          if (!self->socket_) return;
                          if (ec) return self->FailLocked();
                          self->FlushLocked();
                        });
    if (!timer_running_) ArmTimerLocked(kWriteTimeout);
  }

  // A client that takes nothing for kWriteTimeout while data waits for it is
  // cut off (the hub also stops writing to it long before its buffer fills).
  void ArmTimerLocked(std::chrono::steady_clock::duration after) {
    timer_running_ = true;
    timer_->expires_after(after);
    timer_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->timer_running_ = false;
      if (ec || !self->socket_ || !self->waiting_) return;
      const auto idle = std::chrono::steady_clock::now() - self->last_progress_;
      if (idle >= kWriteTimeout) return self->FailLocked();
      self->ArmTimerLocked(kWriteTimeout - idle);
    });
  }

  // The client is gone (or too slow): nothing more is sent.
  void FailLocked() {
    closed_ = true;
    close_requested_ = true;
    pending_.clear();
    pending_off_ = 0;
    DestroySocketLocked();
  }

  void DestroySocketLocked() {
    // Pending waits complete with operation_aborted; their handlers find no
    // socket and return.
    timer_.reset();
    if (socket_) {
      asio::error_code ec;
      socket_->Base::close(ec);
      socket_.reset();
    }
  }

  static constexpr std::chrono::seconds kWriteTimeout{30};

  const size_t max_buffered_;
  const bool no_delay_;

  mutable std::mutex mu_;
  std::optional<AnsweringSocket> socket_;    // ours once opened, until the stream ends
  std::optional<asio::steady_timer> timer_;  // the write timeout, while socket_ lives
  std::vector<std::pair<std::string, std::string>> headers_;  // AddHeader, until sent
  std::string pending_;  // framed bytes not yet sent, from pending_off_
  size_t pending_off_ = 0;
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
  bool opened_ = false;
  bool waiting_ = false;  // an async wait for room is armed
  bool timer_running_ = false;
  bool closed_ = false;  // Write() refuses
  bool close_requested_ = false;
  bool abort_ = false;  // overflowed: the connection is dropped, nothing more sent
  bool stopped_ = false;
};

ResponseStream::ResponseStream(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
ResponseStream::~ResponseStream() { impl_->Close(); }
bool ResponseStream::Write(std::string_view chunk) { return impl_->Write(chunk); }
void ResponseStream::Close() { impl_->Close(); }
bool ResponseStream::closed() const { return impl_->closed(); }
size_t ResponseStream::buffered_bytes() const { return impl_->buffered_bytes(); }
void ResponseStream::AddHeader(std::string name, std::string value) {
  impl_->AddHeader(std::move(name), std::move(value));
}

namespace {

// Stands in the router for a streaming route, so matching, 404 and 405 stay
// the router's job; Handle() recognises it and streams instead.
struct StreamMarker {
  size_t index;
  HttpResponse operator()(const HttpRequest& request) const {
    return ErrorResponse(Internal("a streaming route was dispatched without the server",
                                  "this is a bug in the server"),
                         request.request_id);
  }
};

}  // namespace

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options)
      : options_(std::move(options)), bound_port_(options_.port) {}
  ~Impl() { Stop(); }

  void Route(std::string method, std::string pattern, Handler handler) {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kNew) {
      // Routes are read by I/O threads without a lock once running.
      throw std::logic_error("HttpServer::Route(" + method + " " + pattern +
                             ") called after Start()");
    }
    router_.Add(std::move(method), std::move(pattern), std::move(handler));
  }

  void RouteStream(std::string method, std::string pattern, StreamHandler handler,
                   StreamOptions stream_options) {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kNew) {
      throw std::logic_error("HttpServer::RouteStream(" + method + " " + pattern +
                             ") called after Start()");
    }
    if (!handler) throw std::invalid_argument("stream route " + pattern + " has no handler");
    router_.Add(std::move(method), std::move(pattern), StreamMarker{streams_.size()});
    streams_.push_back({std::move(handler), std::move(stream_options)});
  }

  size_t open_streams() const {
    std::lock_guard<std::mutex> lock(live_mu_);
    size_t n = 0;
    for (const auto& weak : live_)
      if (auto impl = weak.lock(); impl && impl->open()) ++n;
    return n;
  }

  Status Start();
  void Stop();

  int port() const { return bound_port_.load(); }
  const HttpServerOptions& options() const { return options_; }
  bool running() const {
    std::lock_guard<std::mutex> lock(mu_);
    return state_ == State::kRunning;
  }

 private:
  enum class State { kNew, kRunning, kStopped };

  restinio::request_handling_status_t Handle(const restinio::request_handle_t& req);
  HttpRequest Convert(const restinio::request_handle_t& req);
  void Send(const restinio::request_handle_t& req, const HttpRequest& request,
            HttpResponse response, std::chrono::steady_clock::time_point started,
            const std::string& route);
  void HandleStream(const restinio::request_handle_t& req, HttpRequest& request,
                    Router::Match match, size_t index,
                    std::chrono::steady_clock::time_point started);
  void LogAccess(const HttpRequest& request, int status, const std::string& route,
                 std::chrono::steady_clock::time_point started);

  struct StreamRoute {
    StreamHandler handler;
    StreamOptions options;
  };
  Status BindError(const std::system_error& e) const;

  const HttpServerOptions options_;
  Router router_;
  std::vector<StreamRoute> streams_;  // indexed by StreamMarker::index; fixed once started
  std::atomic<int> bound_port_;

  mutable std::mutex live_mu_;  // guards live_
  // Streams handed out, so Stop() can close them; pruned as they close.
  std::vector<std::weak_ptr<ResponseStream::Impl>> live_;

  mutable std::mutex mu_;  // guards state_ and the members below it
  State state_ = State::kNew;
  // Declared before server_ so it is destroyed after it: the server's sockets
  // and timers must go before the io_context that owns their services.
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<Server> server_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

Status HttpServer::Impl::BindError(const std::system_error& e) const {
  const std::string where = "port " + std::to_string(options_.port) + " on " + options_.host;
  const std::error_code& ec = e.code();
  // asio reports errno values in its own category, which does not compare
  // equal to std::errc conditions: match the errno value instead.
  const bool is_errno =
      ec.category() == asio::system_category() || ec.category() == std::system_category();
  const int err = is_errno ? ec.value() : 0;
  if (err == EADDRINUSE) {
    return FailedPrecondition(
        where + " is already in use",
        "stop the other process (e.g. 'ss -ltnp | grep :" + std::to_string(options_.port) +
            "') or choose another port with --port or AF_PORT");
  }
  if (err == EACCES || err == EPERM) {
    return FailedPrecondition("not allowed to listen on " + where + ": " + ec.message(),
                              "ports below 1024 need privileges; choose a port above 1023 with "
                              "--port or AF_PORT");
  }
  if (err == EADDRNOTAVAIL) {
    return FailedPrecondition(
        "cannot listen on " + where + ": " + options_.host + " is not an address of this machine",
        "use 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces) "
        "with --host, or an address shown by 'ip addr'");
  }
  return FailedPrecondition("cannot listen on " + where + ": " + ec.message(),
                            "check --host and --port (or AF_PORT)");
}

Status HttpServer::Impl::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kRunning) {
    return FailedPrecondition(
        "the HTTP server is already running on port " + std::to_string(bound_port_.load()),
        "call Start() once");
  }
  if (state_ == State::kStopped) {
    return FailedPrecondition("the HTTP server was stopped and cannot be started again",
                              "create a new HttpServer");
  }
  if (options_.port < 0 || options_.port > 65535) {
    return InvalidArgument("port " + std::to_string(options_.port) + " is out of range",
                           "choose a port between 1 and 65535 with --port or AF_PORT");
  }
  if (options_.threads < 1) {
    return InvalidArgument(
        "the HTTP server needs at least 1 thread, got " + std::to_string(options_.threads),
        "set api threads to 1 or more");
  }
  if (options_.max_body_bytes == 0) {
    return InvalidArgument("max_body_bytes must be positive", "set a body limit such as 1048576");
  }
  // RESTinio would map "localhost" itself, but parsing here turns a bad host
  // into a clear message instead of an exception from inside the library.
  std::string host = options_.host == "localhost" ? "127.0.0.1" : options_.host;
  std::error_code ec;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return InvalidArgument("host '" + options_.host + "' is not an IP address",
                           "use 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces) "
                           "with --host");
  }

  // A body over the limit is refused from its Content-Length, before it is
  // read (a chunked one as soon as it grows past it): see RefusalFor.
  const uint64_t limit = options_.max_body_bytes;
  const ParserLimits parser_limits{kMaxUrlBytes, kMaxHeaderFields, kMaxHeaderFieldBytes, limit};

  auto io = std::make_unique<asio::io_context>(options_.threads);
  restinio::server_settings_t<Traits> settings;
  settings.address(address)
      .port(static_cast<uint16_t>(options_.port))
      .request_handler([this](const restinio::request_handle_t& req) { return Handle(req); })
      .read_next_http_message_timelimit(options_.idle_timeout)
      .write_http_response_timelimit(std::chrono::seconds(30))
      .handle_request_timeout(std::chrono::seconds(60))
      .logger(parser_limits)
      .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}
                                    .max_url_size(kMaxUrlBytes)
                                    .max_field_count(kMaxHeaderFields)
                                    .max_field_name_size(kMaxHeaderFieldBytes)
                                    .max_field_value_size(kMaxHeaderFieldBytes)
                                    .max_body_size(limit))
      // One accept at a time: RESTinio 0.6.16 runs accept completions on the
      // plain (non-strand) executor, so parallel accepts race inside its
      // connection factory (seen with ThreadSanitizer).
      .concurrent_accepts_count(1)
      .acceptor_post_bind_hook([this](asio::ip::tcp::acceptor& acceptor) {
        bound_port_ = acceptor.local_endpoint().port();
      });
  auto server = std::make_unique<Server>(restinio::external_io_context(*io), std::move(settings));

  // Opening on this thread before any I/O thread runs: nothing else touches
  // the server yet, and a bind failure comes back here as an exception.
  try {
    server->open_sync();
  } catch (const std::system_error& e) {
    bound_port_ = options_.port;
    return BindError(e);
  } catch (const std::exception& e) {
    bound_port_ = options_.port;
    return FailedPrecondition("cannot listen on port " + std::to_string(options_.port) + " on " +
                                  options_.host + ": " + e.what(),
                              "check --host and --port (or AF_PORT)");
  }

  io_ = std::move(io);
  server_ = std::move(server);
  work_.emplace(asio::make_work_guard(*io_));
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([io = io_.get()] {
      // An exception escaping a completion handler would end the thread (and
      // the process); keep serving instead. run() returns normally on stop().
      for (;;) {
        try {
          io->run();
          return;
        } catch (...) {
        }
      }
    });
  }
  state_ = State::kRunning;
  return Status::Ok();
}

void HttpServer::Impl::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kRunning) {
    state_ = State::kStopped;
    return;
  }
  state_ = State::kStopped;
  // The acceptor is closed on the loop so it cannot race an accept completing
  // on an I/O thread.
  std::promise<void> closed;
  asio::post(*io_, [this, &closed] {
    try {
      server_->close_sync();
    } catch (...) {
    }
    closed.set_value();
  });
  closed.get_future().wait();
  // Open keep-alive connections would keep run() busy until their idle
  // timeout; stop the loop instead and let the io_context's destruction
  // close their sockets.
  work_.reset();
  io_->stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  {
    std::lock_guard<std::mutex> live_lock(live_mu_);
    for (auto& weak : live_)
      if (auto impl = weak.lock()) impl->Shutdown();
    live_.clear();
  }
  server_.reset();
  io_.reset();
}

HttpRequest HttpServer::Impl::Convert(const restinio::request_handle_t& req) {
  HttpRequest request;
  const auto& header = req->header();
  request.method = header.method().c_str();
  std::string_view target = header.request_target();
  if (size_t hash = target.find('#'); hash != target.npos) target = target.substr(0, hash);
  size_t qmark = target.find('?');
  request.path = std::string(target.substr(0, qmark));
  if (qmark != target.npos) request.query = std::string(target.substr(qmark + 1));
  if (request.path.empty()) request.path = "/";
  header.for_each_field([&request](const restinio::http_header_field_t& field) {
    std::string name = Lower(field.name());
    // Spaces and tabs around a value are not part of it (RFC 9110 5.5).
    const std::string value(Trim(field.value()));
    auto [it, inserted] = request.headers.emplace(name, value);
    if (!inserted) it->second += ", " + value;
  });
  request.query_params = ParseQueryString(request.query);
  request.remote_address = req->remote_endpoint().address().to_string();
  auto id = request.headers.find("x-request-id");
  request.request_id =
      id != request.headers.end() && IsSaneRequestId(id->second) ? id->second : NewRequestId();
  return request;
}

restinio::request_handling_status_t HttpServer::Impl::Handle(
    const restinio::request_handle_t& req) {
  const auto started = std::chrono::steady_clock::now();
  HttpRequest request;
  HttpResponse response;
  std::string route;
  try {
    request = Convert(req);
    if (request.headers.count("transfer-encoding") && request.headers.count("content-length")) {
      // Request smuggling's favourite ambiguity: which one delimits the body?
      response =
          ErrorResponse(InvalidArgument("the request has both Content-Length and Transfer-Encoding",
                                        "send either Content-Length or Transfer-Encoding: chunked"),
                        request.request_id);
      response.headers.emplace_back("Connection", "close");
    } else if (req->body().size() > options_.max_body_bytes) {
      ApiError error(ResourceExhausted("request body is " + std::to_string(req->body().size()) +
                                           " bytes; the limit is " +
                                           std::to_string(options_.max_body_bytes) + " bytes",
                                       "send a smaller body (the limit is the server's max "
                                       "body size setting)"),
                     ApiErrorCode::kPayloadTooLarge);
      error.details = {{"max_body_bytes", options_.max_body_bytes},
                       {"body_bytes", req->body().size()}};
      response = ErrorResponse(error, request.request_id);
    } else {
      request.body = req->body();
      Router::Match match = router_.Find(request.method, request.path);
      route = match.pattern;
      if (match.outcome == Router::Outcome::kFound) {
        if (const auto* marker = match.handler->target<StreamMarker>()) {
          HandleStream(req, request, std::move(match), marker->index, started);
          return restinio::request_accepted();
        }
      }
      response = router_.Dispatch(request, std::move(match));
    }
  } catch (const std::exception& e) {
    // Only reached on a failure in this glue (e.g. out of memory): the router
    // already turns handler exceptions into 500s.
    if (request.request_id.empty()) request.request_id = NewRequestId();
    response = ErrorResponse(Internal(std::string("failed to handle the request: ") + e.what()),
                             request.request_id);
  }
  try {
    Send(req, request, std::move(response), started, route);
  } catch (...) {
    return restinio::request_rejected();  // RESTinio answers 501 and closes
  }
  return restinio::request_accepted();
}

void HttpServer::Impl::Send(const restinio::request_handle_t& req, const HttpRequest& request,
                            HttpResponse response, std::chrono::steady_clock::time_point started,
                            const std::string& route) {
  int status = response.status;
  if (status < 100 || status > 599) {
    response =
        ErrorResponse(Internal("handler returned invalid HTTP status " + std::to_string(status)),
                      request.request_id);
    status = response.status;
  }
  restinio::http_status_line_t status_line{
      restinio::http_status_code_t{static_cast<uint16_t>(status)},
      std::string(ReasonPhrase(status))};
  auto add_headers = [&](auto& builder) {
    builder.append_header("X-Request-Id", request.request_id);
    if (!response.content_type.empty()) {
      builder.append_header(restinio::http_field::content_type, response.content_type);
    }
    for (auto& [name, value] : response.headers) {
      if (Lower(name) == "connection") {
        // RESTinio owns this header; "close" ends the connection after this answer.
        if (Lower(value) == "close") builder.connection_close();
      } else if (!IsReservedHeader(name)) {
        builder.append_header(name, value);
      }
    }
  };
  if (request.method == "HEAD") {
    // Same headers as GET, Content-Length of the body that is not sent.
    auto builder = req->create_response<restinio::user_controlled_output_t>(status_line);
    add_headers(builder);
    builder.set_content_length(response.body.size());
    builder.done();
  } else {
    auto builder = req->create_response(status_line);
    add_headers(builder);
    builder.set_body(std::move(response.body));
    builder.done();
  }
  LogAccess(request, status, route, started);
}

void HttpServer::Impl::LogAccess(const HttpRequest& request, int status, const std::string& route,
                                 std::chrono::steady_clock::time_point started) {
  if (!options_.access_log) return;
  AccessLogEntry entry;
  entry.method = request.method;
  entry.path = request.path;
  entry.route = route;
  entry.status = status;
  entry.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
  entry.request_id = request.request_id;
  try {
    options_.access_log(entry);
  } catch (...) {
  }
}

void HttpServer::Impl::HandleStream(const restinio::request_handle_t& req, HttpRequest& request,
                                    Router::Match match, size_t index,
                                    std::chrono::steady_clock::time_point started) {
  const StreamRoute& route = streams_[index];
  request.path_params = std::move(match.params);
  auto impl = std::make_shared<ResponseStream::Impl>(route.options.max_buffered_bytes,
                                                     route.options.tcp_no_delay);
  std::shared_ptr<ResponseStream> stream(new ResponseStream(impl));
  std::optional<HttpResponse> answer;
  try {
    answer = route.handler(request, stream);
  } catch (const std::exception& e) {
    answer = ErrorResponse(Internal("unexpected error while handling " + request.method + " " +
                                        request.path + ": " + e.what(),
                                    "this is a bug in the server; report it with the request id"),
                           request.request_id);
  }
  if (!answer && request.method == "HEAD") {
    answer = HttpResponse{200, route.options.content_type, "", route.options.headers};
  }
  if (answer) {
    impl->Abandon();
    Send(req, request, std::move(*answer), started, match.pattern);
    return;
  }
  // From here on the handler may already have handed the stream to writers:
  // a failure must close it, or they would queue into a stream never sent.
  struct AbandonOnThrow {
    ResponseStream::Impl* impl;
    bool armed = true;
    ~AbandonOnThrow() {
      if (armed) impl->Abandon();
    }
  } guard{impl.get()};
  // The response head, written by the stream itself (see ResponseStream::Impl).
  std::string head = "HTTP/1.1 200 OK\r\nConnection: close\r\n";
  auto add = [&head](std::string_view name, std::string_view value) {
    head.append(name).append(": ");
    // A value is one line: CR and LF could start a header of their own.
    for (char c : value) head.push_back(c == '\r' || c == '\n' ? ' ' : c);
    head.append("\r\n");
  };
  add("X-Request-Id", request.request_id);
  add("Content-Type", route.options.content_type);
  add("Cache-Control", "no-cache");
  for (const auto& [name, value] : route.options.headers) {
    if (!IsReservedHeader(name) && Lower(name) != "cache-control" && Lower(name) != "connection")
      add(name, value);
  }
  for (const auto& [name, value] : impl->TakeHeaders()) {
    if (!IsReservedHeader(name) && Lower(name) != "cache-control" && Lower(name) != "connection")
      add(name, value);
  }
  head.append("Transfer-Encoding: chunked\r\n\r\n");
  // The stream takes the connection's socket from RESTinio, as RESTinio's
  // own WebSocket upgrade does: the response is one-way from here on and
  // never reuses the connection ("Connection: close"; closing is how a
  // stream that fell behind is ended). RESTinio's connection object, left
  // without a socket, ends itself when it next tries to read.
  auto& connection = restinio::impl::access_req_connection(*req);
  auto* plain = dynamic_cast<restinio::impl::connection_t<Traits>*>(connection.get());
  if (!plain) throw std::logic_error("a stream's connection is not a plain HTTP connection");
  AnsweringSocket socket = std::move(plain->move_upgrade_internals().m_socket);
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live_.erase(std::remove_if(live_.begin(), live_.end(),
                               [](const auto& w) {
                                 auto p = w.lock();
                                 return !p || p->finished();
                               }),
                live_.end());
    live_.push_back(impl);
  }
  impl->Open(std::move(socket), std::move(head));
  guard.armed = false;
  LogAccess(request, 200, match.pattern, started);
}

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpServer::~HttpServer() = default;

void HttpServer::Route(std::string method, std::string pattern, Handler handler) {
  impl_->Route(std::move(method), std::move(pattern), std::move(handler));
}
void HttpServer::RouteStream(std::string method, std::string pattern, StreamHandler handler,
                             StreamOptions options) {
  impl_->RouteStream(std::move(method), std::move(pattern), std::move(handler), std::move(options));
}
size_t HttpServer::open_streams() const { return impl_->open_streams(); }
Status HttpServer::Start() { return impl_->Start(); }
void HttpServer::Stop() { impl_->Stop(); }
int HttpServer::port() const { return impl_->port(); }
const HttpServerOptions& HttpServer::options() const { return impl_->options(); }
bool HttpServer::running() const { return impl_->running(); }

}  // namespace af
