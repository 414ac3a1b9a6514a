#include "af/api/http_server.h"

// All RESTinio template code of the project lives in this file: RESTinio is
// header-only and heavy to compile, so it is instantiated exactly once.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
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
        ApiError(InvalidArgument("the request's Content-Length conflicts with its "
                                 "Transfer-Encoding, or is given twice or is not a number",
                                 "send either Content-Length or Transfer-Encoding: chunked, "
                                 "once"));
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

// The shared state of one stream. The RESTinio builder is touched only by the
// holder of the write token (`inflight_`) on an I/O thread, and by Shutdown()
// once the I/O threads are joined, so it needs no lock of its own; `mu_`
// guards everything else and is never held while calling into RESTinio
// (a failed write may call OnWritten back inline on the same thread).
class ResponseStream::Impl : public std::enable_shared_from_this<ResponseStream::Impl> {
 public:
  using Builder = restinio::response_builder_t<restinio::chunked_output_t>;

  Impl(asio::io_context* io, size_t max_buffered) : io_(io), max_buffered_(max_buffered) {}

  bool Write(std::string_view chunk) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    if (pending_.size() + inflight_bytes_ + chunk.size() > max_buffered_) {
      // Too far behind: drop what is queued and end the connection rather
      // than grow without bound. The client may reconnect and resume.
      closed_ = true;
      abort_ = true;
      close_requested_ = true;
      pending_.clear();
      pending_.shrink_to_fit();
      ScheduleLocked();
      return false;
    }
    pending_.append(chunk);
    ScheduleLocked();
    return true;
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (close_requested_) return;
    closed_ = true;
    close_requested_ = true;
    ScheduleLocked();
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }
  bool open() const {
    std::lock_guard<std::mutex> lock(mu_);
    return opened_ && !closed_;
  }
  size_t buffered_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_.size() + inflight_bytes_;
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

  // Called on the I/O thread that handled the request: installs the builder
  // and sends the headers plus anything written so far.
  void Open(Builder builder) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    builder_.emplace(std::move(builder));
    opened_ = true;
    inflight_ = true;  // the headers always go out, even with no data yet
    asio::post(*io_, [self = shared_from_this()] { self->Pump(); });
  }

  // After the I/O threads are joined: the builder (which holds the
  // connection) must go before the io_context does.
  void Shutdown() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    close_requested_ = true;
    stopped_ = true;
    io_ = nullptr;
    pending_.clear();
    builder_.reset();
  }

 private:
  void ScheduleLocked() {
    if (!opened_ || inflight_ || stopped_) return;
    inflight_ = true;
    asio::post(*io_, [self = shared_from_this()] { self->Pump(); });
  }

  // Runs on an I/O thread holding the write token.
  void Pump() {
    std::string data;
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_ || !builder_) {
        inflight_ = false;
        return;
      }
      if (!abort_) data.swap(pending_);
      inflight_bytes_ = data.size();
      finish = close_requested_;
      finishing_ = finish;
    }
    auto on_written = [self = shared_from_this()](const asio::error_code& ec) {
      self->OnWritten(ec);
    };
    try {
      if (!data.empty()) builder_->append_chunk(std::move(data));
      if (finish) {
        builder_->done(std::move(on_written));
      } else {
        builder_->flush(std::move(on_written));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      inflight_ = false;
      inflight_bytes_ = 0;
      pending_.clear();
    }
  }

  void OnWritten(const asio::error_code& ec) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      inflight_bytes_ = 0;
      if (ec || finishing_ || stopped_) {
        closed_ = true;
        inflight_ = false;
        pending_.clear();
        return;
      }
      if (pending_.empty() && !close_requested_) {
        inflight_ = false;
        return;
      }
    }
    Pump();  // keep the token: more data (or the end) is waiting
  }

  asio::io_context* io_;  // null after Shutdown
  const size_t max_buffered_;
  std::optional<Builder> builder_;

  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> headers_;  // AddHeader, until sent
  std::string pending_;                                       // written, not yet handed to RESTinio
  size_t inflight_bytes_ = 0;                                 // handed to RESTinio, not yet written
  bool opened_ = false;
  bool inflight_ = false;  // the write token: a Pump is posted or a write is in progress
  bool closed_ = false;    // Write() refuses
  bool close_requested_ = false;
  bool abort_ = false;      // drop queued data when closing
  bool finishing_ = false;  // done() was called
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
    auto [it, inserted] = request.headers.emplace(name, field.value());
    if (!inserted) it->second += ", " + field.value();
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
  auto impl = std::make_shared<ResponseStream::Impl>(io_.get(), route.options.max_buffered_bytes);
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
  auto builder = req->create_response<restinio::chunked_output_t>(
      restinio::http_status_line_t{restinio::status_ok()});
  builder.append_header("X-Request-Id", request.request_id);
  builder.append_header(restinio::http_field::content_type, route.options.content_type);
  builder.append_header(restinio::http_field::cache_control, "no-cache");
  for (const auto& [name, value] : route.options.headers) {
    if (!IsReservedHeader(name) && Lower(name) != "cache-control")
      builder.append_header(name, value);
  }
  for (const auto& [name, value] : impl->TakeHeaders()) {
    if (!IsReservedHeader(name) && Lower(name) != "cache-control")
      builder.append_header(name, value);
  }
  // Never reused: closing is how a stream that fell behind is ended.
  builder.connection_close();
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live_.erase(std::remove_if(live_.begin(), live_.end(),
                               [](const auto& w) {
                                 auto p = w.lock();
                                 return !p || p->closed();
                               }),
                live_.end());
    live_.push_back(impl);
  }
  impl->Open(std::move(builder));
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
