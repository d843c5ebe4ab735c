// Blocking WebSocket and HTTP client for integration tests.
//
// Built on plain POSIX sockets so a test can do what a well-behaved client
// never does: send binary or fragmented messages, invalid UTF-8, frames cut
// off half way, oversize frames, or leave pings unanswered. Every call that
// waits for the peer has a deadline; nothing blocks forever.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mesh::test {

struct WsMessage {
  enum class Kind { Text, Binary, Close, Timeout, Disconnected };
  Kind kind;
  std::string data;   // payload for Text/Binary; close reason for Close
  int closeCode = 0;  // for Close (1005 if the close frame had no code)
};

// Readable name of a message kind, for failure messages.
const char* kindName(WsMessage::Kind kind);

struct ConnectOptions {
  std::string host = "127.0.0.1";
  std::string path = "/gateway";
  // Added to the upgrade request. A header named like one of the defaults
  // (Host, Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version)
  // replaces that default, so a test can send a wrong version or key.
  std::vector<std::string> extraHeaders;
  std::string bindAddress;  // source address, e.g. "127.0.0.2"; empty: any
  int receiveBuffer = 0;    // SO_RCVBUF set before connecting; 0: the kernel's
  std::chrono::milliseconds timeout{5000};
};

// Opcodes of RFC 6455.
namespace opcode {
inline constexpr std::uint8_t kContinuation = 0x0;
inline constexpr std::uint8_t kText = 0x1;
inline constexpr std::uint8_t kBinary = 0x2;
inline constexpr std::uint8_t kClose = 0x8;
inline constexpr std::uint8_t kPing = 0x9;
inline constexpr std::uint8_t kPong = 0xA;
}  // namespace opcode

class WsClient {
 public:
  // TCP connect + HTTP upgrade handshake, Sec-WebSocket-Accept verified.
  // Throws std::runtime_error carrying the server's status line on failure.
  static std::unique_ptr<WsClient> connect(std::uint16_t port, const ConnectOptions& opt = {});
  // Wraps a socket on which the upgrade already happened (the framing self-test
  // uses one end of a socketpair). Takes ownership of fd.
  static std::unique_ptr<WsClient> adopt(
      int fd, std::chrono::milliseconds sendTimeout = std::chrono::milliseconds(5000));

  ~WsClient();  // closes the fd, sends nothing
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  const std::string& handshakeResponse() const { return handshakeResponse_; }

  void sendText(std::string_view text);
  void sendBinary(std::string_view data);
  // One frame with the given opcode and fin bit, masked with a fresh random key.
  void sendFrame(std::uint8_t opcode, std::string_view payload, bool fin = true);
  // Bytes straight onto the socket.
  void sendRaw(std::string_view bytes);
  // Sends are best effort once the peer has gone: a reset or broken pipe is
  // remembered here (errno value, 0 if none) instead of thrown, so a test can
  // still read the close frame the server sent before dropping the socket.
  int lastSendError() const { return lastSendError_; }

  // Next data or close message. Answers pings when autoPong is on (the
  // default), reassembles fragmented messages, skips pongs. A close frame is
  // answered with a close frame carrying the same code, as RFC 6455 asks.
  // Throws std::runtime_error if the server breaks the framing rules (masked
  // frame, reserved bits, bad control frame, stray continuation).
  WsMessage recv(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Receives until a Text message whose JSON "type" equals `type` and returns
  // its text, skipping everything else. Throws std::runtime_error listing what
  // was seen on timeout or close.
  std::string expectType(std::string_view type,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Receives until the connection closes: the close code, -1 if TCP dropped
  // without a close frame, 0 on timeout.
  int expectClose(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  // Sends a close frame (no payload if code <= 0), waits briefly for the
  // answer, closes the fd.
  void close(int code = 1000);
  // Closes the socket at once without a close frame. With reset, SO_LINGER 0
  // makes the kernel send RST instead of FIN.
  void abort(bool reset = false);

  void setAutoPong(bool on) { autoPong_ = on; }
  // Pings seen so far (answered or not).
  int pingsReceived() const { return pingsReceived_; }
  int fd() const { return fd_; }
  bool isOpen() const { return fd_ >= 0; }

 private:
  explicit WsClient(int fd, std::chrono::milliseconds sendTimeout);

  enum class ReadResult { Data, Timeout, Eof };
  ReadResult readSome(std::chrono::steady_clock::time_point deadline);
  void writeAll(std::string_view bytes);
  void closeFd();

  int fd_ = -1;
  std::chrono::milliseconds sendTimeout_;
  std::string handshakeResponse_;
  std::string in_;  // received, not yet decoded bytes start at inPos_
  std::size_t inPos_ = 0;
  bool eof_ = false;
  bool autoPong_ = true;
  bool closeSent_ = false;
  bool closeReceived_ = false;
  int pingsReceived_ = 0;
  int lastSendError_ = 0;
  // A fragmented message in progress (its first frame's opcode, data so far).
  std::optional<std::uint8_t> fragmentOpcode_;
  std::string fragmentData_;
};

struct HttpResponse {
  int status = 0;
  std::string headers;  // status line and header lines, as received
  std::string body;     // chunked bodies come back decoded
};

// One HTTP/1.1 request with Connection: close and Content-Length set from
// body (a Content-Length or Content-Type in `headers` wins over the default).
// Throws std::runtime_error if no response arrives within timeout.
HttpResponse httpRequest(std::uint16_t port, std::string_view method, std::string_view path,
                         std::string_view body = {}, const std::vector<std::string>& headers = {},
                         const std::string& host = "127.0.0.1",
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// Value of a header in a raw header block (case-insensitive name), trimmed;
// empty if absent.
std::string headerValue(std::string_view headers, std::string_view name);

// Small JSON helpers. All return the fallback on bad JSON, a missing field or
// a field of another type.
std::string jsonString(const std::string& json, const char* field);  // "" if missing
std::int64_t jsonInt(const std::string& json, const char* field, std::int64_t fallback = 0);
bool jsonBool(const std::string& json, const char* field, bool fallback = false);
bool jsonHas(const std::string& json, const char* field);

// Framing and handshake helpers, exposed for the self-test and for tests that
// build unusual frames by hand.
namespace ws {

struct Frame {
  bool fin = true;
  std::uint8_t rsv = 0;  // the three reserved bits, right-aligned
  std::uint8_t opcode = 0;
  bool masked = false;
  std::string payload;  // unmasked
};

enum class DecodeStatus { Complete, Incomplete, Invalid };

struct DecodeResult {
  DecodeStatus status = DecodeStatus::Incomplete;
  std::size_t consumed = 0;  // bytes of the frame when Complete
  std::string error;         // why, when Invalid
};

// Encodes one frame. With a mask key the payload is masked and the mask bit set.
std::string encodeFrame(std::uint8_t opcode, std::string_view payload, bool fin = true,
                        std::optional<std::array<std::uint8_t, 4>> maskKey = std::nullopt);
// Decodes the frame at the start of `bytes`. Rejects non-minimal length
// encodings and 64-bit lengths with the top bit set.
DecodeResult decodeFrame(std::string_view bytes, Frame& out);

std::array<std::uint8_t, 4> randomMaskKey();
std::array<std::uint8_t, 20> sha1(std::string_view data);
std::string base64Encode(std::string_view data);
// Sec-WebSocket-Accept for a Sec-WebSocket-Key.
std::string acceptKey(std::string_view key);
// A close frame payload: 2-byte code and reason.
std::string closePayload(int code, std::string_view reason = {});

}  // namespace ws

}  // namespace mesh::test
