#include "support/ws_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <deque>
#include <random>
#include <stdexcept>
#include <utility>

#include <rapidjson/document.h>

namespace mesh::test {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::chrono::milliseconds kCloseWait{1000};

std::string errnoText(int err) {
  return std::string(std::strerror(err));
}

std::mt19937_64& rng() {
  thread_local std::mt19937_64 engine{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }()};
  return engine;
}

std::string randomBytes(std::size_t n) {
  std::string out(n, '\0');
  std::uniform_int_distribution<int> dist(0, 255);
  for (auto& c : out) c = static_cast<char>(dist(rng()));
  return out;
}

// Milliseconds left until deadline for poll(): never negative, rounded up so
// a short remaining time does not turn into a busy loop.
int pollTimeout(Clock::time_point deadline) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<std::int64_t>(ms, 1'000'000'000));
}

// Waits for `events` on fd; false on timeout.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{};
    p.fd = fd;
    p.events = events;
    int rc = ::poll(&p, 1, pollTimeout(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) throw std::runtime_error("poll: " + errnoText(errno));
  }
}

// Writes everything; returns 0 or the errno of a peer-gone error (EPIPE,
// ECONNRESET). Throws on timeout and on any other error.
int writeAllFd(int fd, std::string_view bytes, Clock::time_point deadline) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(fd, POLLOUT, deadline)) {
        throw std::runtime_error("send timed out after " + std::to_string(off) + " of " +
                                 std::to_string(bytes.size()) + " bytes");
      }
      continue;
    }
    int err = errno;
    if (err == EPIPE || err == ECONNRESET) return err;
    throw std::runtime_error("send: " + errnoText(err));
  }
  return 0;
}

enum class ReadStatus { Data, Timeout, Eof };

// Appends whatever arrives before deadline to `buf`.
ReadStatus readInto(int fd, std::string& buf, Clock::time_point deadline) {
  for (;;) {
    if (!waitFor(fd, POLLIN, deadline)) return ReadStatus::Timeout;
    char chunk[kReadChunk];
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buf.append(chunk, static_cast<std::size_t>(n));
      return ReadStatus::Data;
    }
    if (n == 0) return ReadStatus::Eof;
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    if (errno == ECONNRESET) return ReadStatus::Eof;
    throw std::runtime_error("recv: " + errnoText(errno));
  }
}

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { ::freeaddrinfo(ai); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

AddrInfoPtr resolve(const std::string& host, const char* service, int family, int flags) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), service, &hints, &res);
  if (rc != 0) {
    throw std::runtime_error("cannot resolve '" + host + "': " + ::gai_strerror(rc));
  }
  return AddrInfoPtr(res);
}

// Non-blocking TCP connection to host:port, optionally from bindAddress and
// with a receive buffer of its own (0: the kernel's default).
int connectTcp(const std::string& host, std::uint16_t port, const std::string& bindAddress,
               Clock::time_point deadline, int receiveBuffer = 0) {
  std::string service = std::to_string(port);
  auto addrs = resolve(host, service.c_str(), AF_UNSPEC, AI_NUMERICSERV);
  std::string lastError = "no address";
  for (addrinfo* ai = addrs.get(); ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      lastError = "socket: " + errnoText(errno);
      continue;
    }
    try {
      if (!bindAddress.empty()) {
        auto local = resolve(bindAddress, "0", ai->ai_family, AI_NUMERICSERV | AI_PASSIVE);
        if (::bind(fd, local->ai_addr, local->ai_addrlen) != 0) {
          throw std::runtime_error("bind " + bindAddress + ": " + errnoText(errno));
        }
      }
      // Before connect, so the window the peer sees is small from the start.
      if (receiveBuffer > 0 &&
          ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, sizeof receiveBuffer) != 0) {
        throw std::runtime_error("SO_RCVBUF: " + errnoText(errno));
      }
      int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
      if (rc != 0 && errno != EINPROGRESS) {
        throw std::runtime_error("connect: " + errnoText(errno));
      }
      if (rc != 0) {
        if (!waitFor(fd, POLLOUT, deadline)) throw std::runtime_error("connect timed out");
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) throw std::runtime_error("connect: " + errnoText(err));
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    } catch (const std::runtime_error& e) {
      ::close(fd);
      lastError = e.what();
    }
  }
  throw std::runtime_error("cannot connect to " + host + ":" + service + ": " + lastError);
}

std::string hostHeader(const std::string& host, std::uint16_t port) {
  bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Name part of "Name: value".
std::string_view headerName(std::string_view line) {
  auto colon = line.find(':');
  return trim(line.substr(0, colon == std::string_view::npos ? line.size() : colon));
}

bool hasHeader(const std::vector<std::string>& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const std::string& h) { return iequals(headerName(h), name); });
}

std::string firstLine(std::string_view text) {
  auto end = text.find("\r\n");
  return std::string(text.substr(0, end));
}

// Status code of "HTTP/1.1 200 OK", 0 if malformed.
int parseStatus(std::string_view statusLine) {
  auto sp = statusLine.find(' ');
  if (sp == std::string_view::npos || statusLine.substr(0, 5) != "HTTP/") return 0;
  int code = 0;
  std::size_t i = sp + 1;
  int digits = 0;
  for (; i < statusLine.size() && statusLine[i] >= '0' && statusLine[i] <= '9'; ++i, ++digits) {
    code = code * 10 + (statusLine[i] - '0');
  }
  return digits == 3 ? code : 0;
}

std::string truncated(std::string_view s, std::size_t max = 300) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max)) + "...(" + std::to_string(s.size()) + " bytes)";
}

std::uint16_t readBe16(std::string_view b, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(b[at]) << 8) |
                                    static_cast<unsigned char>(b[at + 1]));
}

}  // namespace

const char* kindName(WsMessage::Kind kind) {
  switch (kind) {
    case WsMessage::Kind::Text:
      return "Text";
    case WsMessage::Kind::Binary:
      return "Binary";
    case WsMessage::Kind::Close:
      return "Close";
    case WsMessage::Kind::Timeout:
      return "Timeout";
    case WsMessage::Kind::Disconnected:
      return "Disconnected";
  }
  return "?";
}

// ------------------------------------------------------------- framing --

namespace ws {

std::string encodeFrame(std::uint8_t op, std::string_view payload, bool fin,
                        std::optional<std::array<std::uint8_t, 4>> maskKey) {
  std::string out;
  out.reserve(payload.size() + 14);
  out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | (op & 0x0F)));
  const std::uint8_t maskBit = maskKey ? 0x80 : 0x00;
  const std::uint64_t len = payload.size();
  if (len < 126) {
    out.push_back(static_cast<char>(maskBit | len));
  } else if (len <= 0xFFFF) {
    out.push_back(static_cast<char>(maskBit | 126));
    out.push_back(static_cast<char>((len >> 8) & 0xFF));
    out.push_back(static_cast<char>(len & 0xFF));
  } else {
    out.push_back(static_cast<char>(maskBit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      out.push_back(static_cast<char>((len >> shift) & 0xFF));
    }
  }
  if (!maskKey) {
    out.append(payload);
    return out;
  }
  const auto& key = *maskKey;
  for (auto b : key) out.push_back(static_cast<char>(b));
  const std::size_t start = out.size();
  out.append(payload);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    out[start + i] = static_cast<char>(static_cast<unsigned char>(out[start + i]) ^ key[i % 4]);
  }
  return out;
}

DecodeResult decodeFrame(std::string_view bytes, Frame& out) {
  DecodeResult r;
  if (bytes.size() < 2) return r;
  const auto b0 = static_cast<unsigned char>(bytes[0]);
  const auto b1 = static_cast<unsigned char>(bytes[1]);
  std::size_t pos = 2;
  std::uint64_t len = b1 & 0x7F;
  if (len == 126) {
    if (bytes.size() < pos + 2) return r;
    len = readBe16(bytes, pos);
    pos += 2;
    if (len < 126) {
      r.status = DecodeStatus::Invalid;
      r.error = "16-bit length " + std::to_string(len) + " fits in 7 bits";
      return r;
    }
  } else if (len == 127) {
    if (bytes.size() < pos + 8) return r;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(bytes[pos + i]);
    pos += 8;
    if ((len >> 63) != 0) {
      r.status = DecodeStatus::Invalid;
      r.error = "64-bit length has its top bit set";
      return r;
    }
    if (len <= 0xFFFF) {
      r.status = DecodeStatus::Invalid;
      r.error = "64-bit length " + std::to_string(len) + " fits in 16 bits";
      return r;
    }
  }
  const bool masked = (b1 & 0x80) != 0;
  std::array<std::uint8_t, 4> key{};
  if (masked) {
    if (bytes.size() < pos + 4) return r;
    for (std::size_t i = 0; i < 4; ++i) key[i] = static_cast<unsigned char>(bytes[pos + i]);
    pos += 4;
  }
  if (bytes.size() - pos < len) return r;
  out.fin = (b0 & 0x80) != 0;
  out.rsv = static_cast<std::uint8_t>((b0 >> 4) & 0x07);
  out.opcode = static_cast<std::uint8_t>(b0 & 0x0F);
  out.masked = masked;
  out.payload.assign(bytes.substr(pos, static_cast<std::size_t>(len)));
  if (masked) {
    for (std::size_t i = 0; i < out.payload.size(); ++i) {
      out.payload[i] = static_cast<char>(static_cast<unsigned char>(out.payload[i]) ^ key[i % 4]);
    }
  }
  r.status = DecodeStatus::Complete;
  r.consumed = pos + static_cast<std::size_t>(len);
  return r;
}

std::array<std::uint8_t, 4> randomMaskKey() {
  std::array<std::uint8_t, 4> key{};
  const auto v = rng()();
  for (std::size_t i = 0; i < 4; ++i) key[i] = static_cast<std::uint8_t>(v >> (8 * i));
  return key;
}

std::array<std::uint8_t, 20> sha1(std::string_view data) {
  std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  // Padded message: data, 0x80, zeros up to 56 mod 64, 64-bit bit length.
  std::string msg(data);
  const std::uint64_t bitLen = static_cast<std::uint64_t>(data.size()) * 8;
  msg.push_back(static_cast<char>(0x80));
  while (msg.size() % 64 != 56) msg.push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8) {
    msg.push_back(static_cast<char>((bitLen >> shift) & 0xFF));
  }
  std::uint32_t w[80];
  for (std::size_t block = 0; block < msg.size(); block += 64) {
    for (std::size_t i = 0; i < 16; ++i) {
      std::uint32_t v = 0;
      for (std::size_t j = 0; j < 4; ++j) {
        v = (v << 8) | static_cast<unsigned char>(msg[block + 4 * i + j]);
      }
      w[i] = v;
    }
    for (std::size_t i = 16; i < 80; ++i) {
      w[i] = std::rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (std::size_t i = 0; i < 80; ++i) {
      std::uint32_t f = 0;
      std::uint32_t k = 0;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      const std::uint32_t t = std::rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = std::rotl(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  std::array<std::uint8_t, 20> digest{};
  for (std::size_t i = 0; i < 5; ++i) {
    for (std::size_t j = 0; j < 4; ++j) {
      digest[4 * i + j] = static_cast<std::uint8_t>(h[i] >> (24 - 8 * j));
    }
  }
  return digest;
}

std::string base64Encode(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const std::uint32_t v =
        (static_cast<std::uint32_t>(static_cast<unsigned char>(data[i])) << 16) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8) |
        static_cast<unsigned char>(data[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.push_back(kAlphabet[(v >> 6) & 0x3F]);
    out.push_back(kAlphabet[v & 0x3F]);
  }
  const std::size_t rest = data.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(data[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8;
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 0x3F] : '=');
    out.push_back('=');
  }
  return out;
}

std::string acceptKey(std::string_view key) {
  std::string input(key);
  input += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  const auto digest = sha1(input);
  std::string raw;
  for (auto b : digest) raw.push_back(static_cast<char>(b));
  return base64Encode(raw);
}

std::string closePayload(int code, std::string_view reason) {
  std::string out;
  out.push_back(static_cast<char>((code >> 8) & 0xFF));
  out.push_back(static_cast<char>(code & 0xFF));
  out.append(reason);
  return out;
}

}  // namespace ws

// ------------------------------------------------------------ WsClient --

WsClient::WsClient(int fd, std::chrono::milliseconds sendTimeout)
    : fd_(fd), sendTimeout_(sendTimeout) {}

WsClient::~WsClient() {
  closeFd();
}

std::unique_ptr<WsClient> WsClient::adopt(int fd, std::chrono::milliseconds sendTimeout) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("adopt: cannot make socket non-blocking: " + errnoText(err));
  }
  return std::unique_ptr<WsClient>(new WsClient(fd, sendTimeout));
}

std::unique_ptr<WsClient> WsClient::connect(std::uint16_t port, const ConnectOptions& opt) {
  const auto deadline = Clock::now() + opt.timeout;
  const int fd = connectTcp(opt.host, port, opt.bindAddress, deadline, opt.receiveBuffer);
  std::unique_ptr<WsClient> client(new WsClient(fd, opt.timeout));

  std::string key = ws::base64Encode(randomBytes(16));
  for (const auto& h : opt.extraHeaders) {
    if (iequals(headerName(h), "Sec-WebSocket-Key")) {
      key = std::string(trim(std::string_view(h).substr(h.find(':') + 1)));
    }
  }
  std::string req = "GET " + opt.path + " HTTP/1.1\r\n";
  const std::pair<const char*, std::string> defaults[] = {
      {"Host", hostHeader(opt.host, port)},
      {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},
      {"Sec-WebSocket-Key", key},
      {"Sec-WebSocket-Version", "13"},
  };
  for (const auto& [name, value] : defaults) {
    if (!hasHeader(opt.extraHeaders, name)) req += std::string(name) + ": " + value + "\r\n";
  }
  for (const auto& h : opt.extraHeaders) req += h + "\r\n";
  req += "\r\n";
  if (int err = writeAllFd(fd, req, deadline); err != 0) {
    throw std::runtime_error("WebSocket handshake: sending the request failed: " + errnoText(err));
  }

  std::string& in = client->in_;
  std::size_t end = std::string::npos;
  while ((end = in.find("\r\n\r\n")) == std::string::npos) {
    const auto st = readInto(fd, in, deadline);
    if (st == ReadStatus::Timeout) {
      throw std::runtime_error("WebSocket handshake timed out; received: " + truncated(in));
    }
    if (st == ReadStatus::Eof) {
      if (in.empty()) throw std::runtime_error("WebSocket handshake: connection closed, no reply");
      throw std::runtime_error("WebSocket handshake failed: " + firstLine(in));
    }
  }
  client->handshakeResponse_ = in.substr(0, end + 4);
  client->inPos_ = end + 4;
  const std::string status = firstLine(client->handshakeResponse_);
  if (parseStatus(status) != 101) {
    throw std::runtime_error("WebSocket handshake failed: " + status);
  }
  const std::string accept = headerValue(client->handshakeResponse_, "Sec-WebSocket-Accept");
  const std::string want = ws::acceptKey(key);
  if (accept != want) {
    throw std::runtime_error("WebSocket handshake: Sec-WebSocket-Accept is '" + accept +
                             "', expected '" + want + "' (" + status + ")");
  }
  return client;
}

void WsClient::closeFd() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void WsClient::writeAll(std::string_view bytes) {
  if (fd_ < 0) throw std::runtime_error("WsClient: send on a closed socket");
  const int err = writeAllFd(fd_, bytes, Clock::now() + sendTimeout_);
  if (err != 0) lastSendError_ = err;
}

void WsClient::sendText(std::string_view text) {
  sendFrame(opcode::kText, text);
}

void WsClient::sendBinary(std::string_view data) {
  sendFrame(opcode::kBinary, data);
}

void WsClient::sendFrame(std::uint8_t op, std::string_view payload, bool fin) {
  if (op == opcode::kClose) closeSent_ = true;
  writeAll(ws::encodeFrame(op, payload, fin, ws::randomMaskKey()));
}

void WsClient::sendRaw(std::string_view bytes) {
  writeAll(bytes);
}

WsClient::ReadResult WsClient::readSome(Clock::time_point deadline) {
  if (eof_ || fd_ < 0) return ReadResult::Eof;
  // Drop consumed bytes once they dominate the buffer.
  if (inPos_ > 0 && inPos_ * 2 >= in_.size()) {
    in_.erase(0, inPos_);
    inPos_ = 0;
  }
  switch (readInto(fd_, in_, deadline)) {
    case ReadStatus::Data:
      return ReadResult::Data;
    case ReadStatus::Timeout:
      return ReadResult::Timeout;
    case ReadStatus::Eof:
      break;
  }
  eof_ = true;
  return ReadResult::Eof;
}

WsMessage WsClient::recv(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    ws::Frame f;
    const auto r = ws::decodeFrame(std::string_view(in_).substr(inPos_), f);
    if (r.status == ws::DecodeStatus::Invalid) {
      throw std::runtime_error("WsClient: invalid frame from server: " + r.error);
    }
    if (r.status == ws::DecodeStatus::Incomplete) {
      if (fd_ < 0) return {WsMessage::Kind::Disconnected, {}};
      switch (readSome(deadline)) {
        case ReadResult::Data:
          continue;
        case ReadResult::Timeout:
          return {WsMessage::Kind::Timeout, {}};
        case ReadResult::Eof:
          return {WsMessage::Kind::Disconnected, {}};
      }
    }
    inPos_ += r.consumed;

    if (f.masked) throw std::runtime_error("WsClient: server sent a masked frame");
    if (f.rsv != 0) {
      throw std::runtime_error("WsClient: server frame has reserved bits " + std::to_string(f.rsv) +
                               " set (no extension is supported)");
    }
    const bool control = (f.opcode & 0x08) != 0;
    if (control && (!f.fin || f.payload.size() > 125)) {
      throw std::runtime_error("WsClient: fragmented or oversize control frame (opcode " +
                               std::to_string(f.opcode) + ")");
    }
    switch (f.opcode) {
      case opcode::kPing:
        ++pingsReceived_;
        if (autoPong_ && !closeSent_ && fd_ >= 0) {
          writeAll(ws::encodeFrame(opcode::kPong, f.payload, true, ws::randomMaskKey()));
        }
        continue;
      case opcode::kPong:
        continue;
      case opcode::kClose: {
        WsMessage m{WsMessage::Kind::Close, {}};
        if (f.payload.empty()) {
          m.closeCode = 1005;
        } else if (f.payload.size() == 1) {
          throw std::runtime_error("WsClient: close frame with a 1-byte payload");
        } else {
          m.closeCode = readBe16(f.payload, 0);
          m.data = f.payload.substr(2);
        }
        closeReceived_ = true;
        if (!closeSent_ && fd_ >= 0) {
          closeSent_ = true;
          writeAll(ws::encodeFrame(
              opcode::kClose, m.closeCode == 1005 ? std::string() : ws::closePayload(m.closeCode),
              true, ws::randomMaskKey()));
        }
        return m;
      }
      case opcode::kText:
      case opcode::kBinary:
        if (fragmentOpcode_) {
          throw std::runtime_error("WsClient: new data frame inside a fragmented message");
        }
        if (f.fin) {
          return {f.opcode == opcode::kText ? WsMessage::Kind::Text : WsMessage::Kind::Binary,
                  std::move(f.payload)};
        }
        fragmentOpcode_ = f.opcode;
        fragmentData_ = std::move(f.payload);
        continue;
      case opcode::kContinuation: {
        if (!fragmentOpcode_)
          throw std::runtime_error("WsClient: continuation frame with no message");
        fragmentData_ += f.payload;
        if (!f.fin) continue;
        const auto kind =
            *fragmentOpcode_ == opcode::kText ? WsMessage::Kind::Text : WsMessage::Kind::Binary;
        fragmentOpcode_.reset();
        return {kind, std::exchange(fragmentData_, std::string())};
      }
      default:
        throw std::runtime_error("WsClient: unknown opcode " + std::to_string(f.opcode));
    }
  }
}

std::string WsClient::expectType(std::string_view type, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::deque<std::string> seen;
  auto describe = [&] {
    std::string s;
    for (const auto& item : seen) s += "\n  " + item;
    return s.empty() ? std::string(" nothing") : s;
  };
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    WsMessage m = recv(std::max(left, std::chrono::milliseconds(0)));
    switch (m.kind) {
      case WsMessage::Kind::Text:
        if (jsonString(m.data, "type") == type) return std::move(m.data);
        seen.push_back("Text " + truncated(m.data));
        break;
      case WsMessage::Kind::Binary:
        seen.push_back("Binary " + truncated(m.data));
        break;
      case WsMessage::Kind::Close:
        throw std::runtime_error("expected '" + std::string(type) +
                                 "' but the connection closed (" + std::to_string(m.closeCode) +
                                 " '" + m.data + "'); seen:" + describe());
      case WsMessage::Kind::Timeout:
      case WsMessage::Kind::Disconnected:
        throw std::runtime_error("expected '" + std::string(type) + "' but got " +
                                 kindName(m.kind) + "; seen:" + describe());
    }
    if (seen.size() > 20) seen.pop_front();
  }
}

int WsClient::expectClose(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    WsMessage m = recv(std::max(left, std::chrono::milliseconds(0)));
    switch (m.kind) {
      case WsMessage::Kind::Close:
        return m.closeCode;
      case WsMessage::Kind::Disconnected:
        return -1;
      case WsMessage::Kind::Timeout:
        return 0;
      case WsMessage::Kind::Text:
      case WsMessage::Kind::Binary:
        break;
    }
  }
}

void WsClient::close(int code) {
  if (fd_ < 0) return;
  try {
    if (!closeSent_) sendFrame(opcode::kClose, code > 0 ? ws::closePayload(code) : std::string());
    const auto deadline = Clock::now() + kCloseWait;
    while (!closeReceived_ && !eof_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      const auto kind = recv(std::max(left, std::chrono::milliseconds(0))).kind;
      if (kind == WsMessage::Kind::Timeout) break;
    }
  } catch (const std::runtime_error&) {
    // The socket goes away regardless; a misbehaving peer is the test's concern.
  }
  closeFd();
}

void WsClient::abort(bool reset) {
  if (fd_ < 0) return;
  if (reset) {
    linger lg{};
    lg.l_onoff = 1;
    lg.l_linger = 0;
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  closeFd();
}

// ---------------------------------------------------------------- HTTP --

namespace {

// Decodes a chunked body; false while incomplete.
bool decodeChunked(std::string_view raw, std::string& out) {
  out.clear();
  std::size_t pos = 0;
  for (;;) {
    const auto lineEnd = raw.find("\r\n", pos);
    if (lineEnd == std::string_view::npos) return false;
    std::size_t size = 0;
    std::size_t i = pos;
    for (; i < lineEnd; ++i) {
      const char c = lower(raw[i]);
      int digit = -1;
      if (c >= '0' && c <= '9') digit = c - '0';
      if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
      if (digit < 0) break;
      size = size * 16 + static_cast<std::size_t>(digit);
    }
    if (i == pos) throw std::runtime_error("HTTP: malformed chunk size line");
    pos = lineEnd + 2;
    if (size == 0) return raw.find("\r\n\r\n", lineEnd) != std::string_view::npos;
    if (raw.size() < pos + size + 2) return false;
    out.append(raw.substr(pos, size));
    pos += size + 2;
  }
}

// Fills `resp` from the bytes so far; true once the response is complete.
bool parseHttp(const std::string& raw, bool eof, HttpResponse& resp) {
  const auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  resp.headers = raw.substr(0, end + 4);
  resp.status = parseStatus(firstLine(resp.headers));
  const std::string_view rest = std::string_view(raw).substr(end + 4);
  if (iequals(headerValue(resp.headers, "Transfer-Encoding"), "chunked")) {
    if (decodeChunked(rest, resp.body)) return true;
    if (eof) throw std::runtime_error("HTTP: connection closed inside a chunked body");
    return false;
  }
  const std::string length = headerValue(resp.headers, "Content-Length");
  if (!length.empty()) {
    const std::size_t want = std::stoul(length);
    if (rest.size() >= want) {
      resp.body.assign(rest.substr(0, want));
      return true;
    }
    if (eof) throw std::runtime_error("HTTP: connection closed inside the body");
    return false;
  }
  resp.body.assign(rest);
  return eof;
}

}  // namespace

HttpResponse httpRequest(std::uint16_t port, std::string_view method, std::string_view path,
                         std::string_view body, const std::vector<std::string>& headers,
                         const std::string& host, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const int fd = connectTcp(host, port, {}, deadline);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};

  std::string req = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\n";
  if (!hasHeader(headers, "Host")) req += "Host: " + hostHeader(host, port) + "\r\n";
  if (!hasHeader(headers, "Connection")) req += "Connection: close\r\n";
  if (!hasHeader(headers, "Content-Length") && !hasHeader(headers, "Transfer-Encoding")) {
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  if (!body.empty() && !hasHeader(headers, "Content-Type")) {
    req += "Content-Type: application/json\r\n";
  }
  for (const auto& h : headers) req += h + "\r\n";
  req += "\r\n";
  req += body;
  // A server may answer (e.g. 413) and close before reading the whole body;
  // the response is still worth reading.
  writeAllFd(fd, req, deadline);

  std::string raw;
  HttpResponse resp;
  for (;;) {
    const auto st = readInto(fd, raw, deadline);
    if (st == ReadStatus::Timeout) {
      throw std::runtime_error("HTTP " + std::string(method) + " " + std::string(path) +
                               ": no complete response in time; received: " + truncated(raw));
    }
    const bool eof = st == ReadStatus::Eof;
    if (parseHttp(raw, eof, resp)) return resp;
    if (eof) {
      throw std::runtime_error("HTTP " + std::string(method) + " " + std::string(path) +
                               ": connection closed; received: " + truncated(raw));
    }
  }
}

std::string headerValue(std::string_view headers, std::string_view name) {
  std::size_t pos = headers.find("\r\n");  // skip the status line
  while (pos != std::string_view::npos && pos + 2 < headers.size()) {
    pos += 2;
    const auto end = headers.find("\r\n", pos);
    const auto line = headers.substr(pos, end == std::string_view::npos ? end : end - pos);
    const auto colon = line.find(':');
    if (colon != std::string_view::npos && iequals(trim(line.substr(0, colon)), name)) {
      return std::string(trim(line.substr(colon + 1)));
    }
    pos = end;
  }
  return {};
}

// ---------------------------------------------------------------- JSON --

namespace {

const rapidjson::Value* jsonField(rapidjson::Document& doc, const std::string& json,
                                  const char* field) {
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return nullptr;
  // HasMember + lookup rather than comparing member iterators, which clang
  // flags as ambiguous in C++20 for this RapidJSON version.
  if (!doc.HasMember(field)) return nullptr;
  return &doc[field];
}

}  // namespace

std::string jsonString(const std::string& json, const char* field) {
  rapidjson::Document doc;
  const auto* v = jsonField(doc, json, field);
  return v != nullptr && v->IsString() ? std::string(v->GetString(), v->GetStringLength())
                                       : std::string();
}

std::int64_t jsonInt(const std::string& json, const char* field, std::int64_t fallback) {
  rapidjson::Document doc;
  const auto* v = jsonField(doc, json, field);
  return v != nullptr && v->IsInt64() ? v->GetInt64() : fallback;
}

bool jsonBool(const std::string& json, const char* field, bool fallback) {
  rapidjson::Document doc;
  const auto* v = jsonField(doc, json, field);
  return v != nullptr && v->IsBool() ? v->GetBool() : fallback;
}

bool jsonHas(const std::string& json, const char* field) {
  rapidjson::Document doc;
  return jsonField(doc, json, field) != nullptr;
}

}  // namespace mesh::test
