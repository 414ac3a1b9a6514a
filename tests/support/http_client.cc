#include "support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

namespace af::testing {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

Status Errno(const std::string& what) {
  return Unavailable(what + ": " + std::strerror(errno), "is the server running?");
}

Result<std::string> Dechunk(const std::string& body) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) return Internal("chunked body: missing chunk size line");
    size_t size = 0;
    try {
      size = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
    } catch (...) {
      return Internal("chunked body: bad chunk size '" + body.substr(pos, eol - pos) + "'");
    }
    pos = eol + 2;
    if (size == 0) return out;
    if (pos + size > body.size()) return Internal("chunked body: truncated chunk");
    out.append(body, pos, size);
    pos += size + 2;  // the chunk's trailing CRLF
  }
}

}  // namespace

Result<HttpReply> ParseHttpResponse(const std::string& raw, bool no_body) {
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    return Internal("response has no end of headers (" + std::to_string(raw.size()) + " bytes)");
  }
  HttpReply reply;
  size_t line_end = raw.find("\r\n");
  std::string status_line = raw.substr(0, line_end);
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
    return Internal("bad status line '" + status_line + "'");
  }
  try {
    reply.status = std::stoi(status_line.substr(9, 3));
  } catch (...) {
    return Internal("bad status line '" + status_line + "'");
  }
  size_t pos = line_end + 2;
  while (pos < head_end) {
    size_t eol = raw.find("\r\n", pos);
    std::string line = raw.substr(pos, eol - pos);
    pos = eol + 2;
    size_t colon = line.find(':');
    if (colon == std::string::npos) return Internal("bad header line '" + line + "'");
    std::string name = Lower(Trim(line.substr(0, colon)));
    std::string value = Trim(line.substr(colon + 1));
    auto [it, inserted] = reply.headers.emplace(name, value);
    if (!inserted) it->second += ", " + value;
  }
  std::string body = raw.substr(head_end + 4);
  if (no_body) return reply;
  if (Lower(reply.Header("transfer-encoding")).find("chunked") != std::string::npos) {
    AF_ASSIGN_OR_RETURN(reply.body, Dechunk(body));
  } else if (std::string cl = reply.Header("content-length"); !cl.empty()) {
    size_t n = std::stoul(cl);
    if (body.size() < n) {
      return Internal("body truncated: " + std::to_string(body.size()) + " of " + cl + " bytes");
    }
    reply.body = body.substr(0, n);
  } else {
    reply.body = std::move(body);
  }
  return reply;
}

Result<HttpReply> HttpCall(int port, const std::string& method, const std::string& path,
                           const HttpCallOptions& options) {
  Socket sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock.fd() < 0) return Errno("socket");
  timeval tv{};
  tv.tv_sec = options.timeout.count() / 1000;
  tv.tv_usec = (options.timeout.count() % 1000) * 1000;
  setsockopt(sock.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(sock.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("not an IPv4 address: " + options.host);
  }
  if (connect(sock.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Errno("connect to " + options.host + ":" + std::to_string(port));
  }

  std::string request = method + " " + path + " HTTP/1.1\r\n";
  request += "Host: " + options.host + ":" + std::to_string(port) + "\r\n";
  request += "Connection: close\r\n";
  for (const auto& [name, value] : options.headers) request += name + ": " + value + "\r\n";
  if (!options.body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    request += "Content-Length: " + std::to_string(options.body.size()) + "\r\n";
  }
  request += "\r\n";
  request += options.body;
  size_t sent = 0;
  while (sent < request.size()) {
    // MSG_NOSIGNAL: a server that closes early must fail the call, not kill the test.
    ssize_t n = send(sock.fd(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("send");
    sent += static_cast<size_t>(n);
  }

  std::string raw;
  char buf[16384];
  while (true) {
    ssize_t n = recv(sock.fd(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("recv");
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  return ParseHttpResponse(raw, method == "HEAD");
}

}  // namespace af::testing
