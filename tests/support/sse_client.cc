#include "support/sse_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
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

}  // namespace

void SseBlockParser::Feed(std::string_view text) {
  buffer_.append(text);
  size_t end;
  while ((end = buffer_.find("\n\n")) != std::string::npos) {
    std::string block = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    SseMessage m;
    size_t pos = 0;
    while (pos <= block.size()) {
      size_t eol = block.find('\n', pos);
      if (eol == std::string::npos) eol = block.size();
      std::string line = block.substr(pos, eol - pos);
      pos = eol + 1;
      if (line.empty()) continue;
      if (line[0] == ':') {
        std::string c = line.substr(1);
        if (!c.empty() && c[0] == ' ') c.erase(0, 1);
        m.comment += (m.comment.empty() ? "" : "\n") + c;
        continue;
      }
      size_t colon = line.find(':');
      std::string field = line.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      if (field == "id") {
        m.id = value;
      } else if (field == "event") {
        m.event = value;
      } else if (field == "data") {
        m.data += (m.data.empty() ? "" : "\n") + value;
      } else if (field == "retry") {
        m.retry = std::stoll(value);
      }
    }
    ready_.push_back(std::move(m));
  }
}

std::optional<SseMessage> SseBlockParser::Pop() {
  if (next_ >= ready_.size()) {
    ready_.clear();
    next_ = 0;
    return std::nullopt;
  }
  return std::move(ready_[next_++]);
}

Result<std::unique_ptr<SseClient>> SseClient::Connect(
    int port, const std::string& path, const std::map<std::string, std::string>& headers,
    std::chrono::milliseconds timeout, int receive_buffer) {
  std::unique_ptr<SseClient> c(new SseClient());
  c->fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd_ < 0) return Unavailable(std::string("socket: ") + std::strerror(errno));
  if (receive_buffer > 0) {
    setsockopt(c->fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Unavailable(std::string("connect: ") + std::strerror(errno));
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  req += "\r\n";
  if (send(c->fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return Unavailable(std::string("send: ") + std::strerror(errno));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t head_end;
  while ((head_end = c->raw_.find("\r\n\r\n")) == std::string::npos) {
    if (!c->ReadSome(deadline)) return Unavailable("no response head from the server");
  }
  std::string head = c->raw_.substr(0, head_end);
  c->raw_.erase(0, head_end + 4);
  size_t eol = head.find("\r\n");
  std::string status_line = head.substr(0, eol);
  size_t sp = status_line.find(' ');
  if (sp == std::string::npos) return Internal("bad status line: " + status_line);
  c->status_ = std::atoi(status_line.c_str() + sp + 1);
  size_t pos = eol == std::string::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string::npos) e = head.size();
    std::string line = head.substr(pos, e - pos);
    pos = e + 2;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    c->headers_[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
  }
  c->chunked_ = Lower(c->Header("transfer-encoding")) == "chunked";
  c->Decode();
  return c;
}

SseClient::~SseClient() {
  if (fd_ >= 0) close(fd_);
}

std::string SseClient::Header(const std::string& lower_name) const {
  auto it = headers_.find(lower_name);
  return it == headers_.end() ? std::string() : it->second;
}

bool SseClient::ReadSome(std::chrono::steady_clock::time_point deadline) {
  if (eof_) return false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char buf[16384];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }
}

void SseClient::Decode() {
  if (!chunked_) {
    parser_.Feed(raw_);
    raw_.clear();
    return;
  }
  for (;;) {
    size_t eol = raw_.find("\r\n");
    if (eol == std::string::npos) return;
    size_t size = std::strtoul(raw_.substr(0, eol).c_str(), nullptr, 16);
    if (size == 0) {
      raw_.clear();  // the final chunk: the response is over
      return;
    }
    if (raw_.size() < eol + 2 + size + 2) return;
    parser_.Feed(std::string_view(raw_).substr(eol + 2, size));
    raw_.erase(0, eol + 2 + size + 2);
  }
}

Result<std::string> SseClient::ReadAll(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t want = std::string::npos;
  if (!Header("content-length").empty()) want = std::stoul(Header("content-length"));
  while (!eof_ && (want == std::string::npos || raw_.size() < want)) {
    if (!ReadSome(deadline) && !eof_) return DeadlineExceeded("body did not arrive in time");
  }
  return raw_;
}

Result<SseMessage> SseClient::Next(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto m = parser_.Pop()) return *m;
    if (!ReadSome(deadline)) {
      if (eof_) return Unavailable("the server closed the stream");
      return DeadlineExceeded("no SSE block within " + std::to_string(timeout.count()) + " ms");
    }
    Decode();
  }
}

Result<SseMessage> SseClient::NextEvent(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return DeadlineExceeded("no SSE event in time");
    AF_ASSIGN_OR_RETURN(SseMessage m, Next(left));
    if (!m.id.empty() || !m.event.empty() || !m.data.empty()) return m;
  }
}

bool SseClient::WaitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    if (!ReadSome(deadline) && !eof_) return false;
    raw_.clear();
  }
  return true;
}

}  // namespace af::testing
