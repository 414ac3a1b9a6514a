#include "af/api/http_server.h"

// All RESTinio template code of the project lives in this file: RESTinio is
// header-only and heavy to compile, so it is instantiated exactly once.
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

namespace af {
namespace {

// default_traits_t: thread-safe connections (strands) and asio timers, which
// run on our own io_context; no RESTinio logging (the app logs via the
// access-log hook instead).
using Traits = restinio::default_traits_t;
using Server = restinio::http_server_t<Traits>;

constexpr uint64_t kMiB = uint64_t{1} << 20;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

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
            HttpResponse response, std::chrono::steady_clock::time_point started);
  Status BindError(const std::system_error& e) const;

  const HttpServerOptions options_;
  Router router_;
  std::atomic<int> bound_port_;

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

  // Bodies a bit over the limit are read so the client gets a proper 413;
  // beyond the hard cap RESTinio drops the connection without reading on.
  const uint64_t limit = options_.max_body_bytes;
  const uint64_t hard_cap = std::max<uint64_t>(limit * 4, limit + kMiB);

  auto io = std::make_unique<asio::io_context>(options_.threads);
  restinio::server_settings_t<Traits> settings;
  settings.address(address)
      .port(static_cast<uint16_t>(options_.port))
      .request_handler([this](const restinio::request_handle_t& req) { return Handle(req); })
      .read_next_http_message_timelimit(options_.idle_timeout)
      .write_http_response_timelimit(std::chrono::seconds(30))
      .handle_request_timeout(std::chrono::seconds(60))
      .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}.max_body_size(hard_cap))
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
  try {
    request = Convert(req);
    if (req->body().size() > options_.max_body_bytes) {
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
      response = router_.Dispatch(request);
    }
  } catch (const std::exception& e) {
    // Only reached on a failure in this glue (e.g. out of memory): the router
    // already turns handler exceptions into 500s.
    if (request.request_id.empty()) request.request_id = NewRequestId();
    response = ErrorResponse(Internal(std::string("failed to handle the request: ") + e.what()),
                             request.request_id);
  }
  try {
    Send(req, request, std::move(response), started);
  } catch (...) {
    return restinio::request_rejected();  // RESTinio answers 501 and closes
  }
  return restinio::request_accepted();
}

void HttpServer::Impl::Send(const restinio::request_handle_t& req, const HttpRequest& request,
                            HttpResponse response, std::chrono::steady_clock::time_point started) {
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
      if (!IsReservedHeader(name)) builder.append_header(name, value);
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
  if (options_.access_log) {
    AccessLogEntry entry;
    entry.method = request.method;
    entry.path = request.path;
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
}

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpServer::~HttpServer() = default;

void HttpServer::Route(std::string method, std::string pattern, Handler handler) {
  impl_->Route(std::move(method), std::move(pattern), std::move(handler));
}
Status HttpServer::Start() { return impl_->Start(); }
void HttpServer::Stop() { impl_->Stop(); }
int HttpServer::port() const { return impl_->port(); }
const HttpServerOptions& HttpServer::options() const { return impl_->options(); }
bool HttpServer::running() const { return impl_->running(); }

}  // namespace af
