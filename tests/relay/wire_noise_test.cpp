// Seeded random input on the relay's own WebSocket path: frames with any
// header bits, lengths that lie, fragments, control frames, JSON that is
// almost right, bare noise, each stream cut into random pieces and ended by a
// close, a reset or a plain hang-up, many connections at once. The relay must
// survive all of it (the sanitizer build watches its memory), end every one
// of those connections, and go on serving. A failure prints the seed;
// MESH_NOISE_SEED=<n> runs another one.
#include <signal.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/raw_peer.h"
#include "support/test_relay.h"
#include "support/tls_client.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kMaxFrame = 2048;  // the relay's limit in this test

class Noise {
 public:
  explicit Noise(std::uint32_t seed) : rng_(seed) {}

  std::size_t below(std::size_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(unsigned percent) { return below(100) < percent; }

  // One connection's bytes after the upgrade.
  std::string stream(const std::vector<std::string>& meshIds) {
    std::string out;
    if (chance(60)) out += masked(0x81, authFor(meshIds[below(meshIds.size())]));
    const std::size_t frames = 1 + below(12);
    for (std::size_t i = 0; i < frames; ++i) out += frame(meshIds);
    return out;
  }

  // Cuts `bytes` into pieces of 1 to 300 bytes, small ones more often.
  std::vector<std::string> pieces(const std::string& bytes) {
    std::vector<std::string> out;
    for (std::size_t at = 0; at < bytes.size();) {
      const std::size_t n = chance(30) ? 1 + below(8) : 1 + below(300);
      out.push_back(bytes.substr(at, n));
      at += n;
    }
    return out;
  }

 private:
  std::string frame(const std::vector<std::string>& meshIds) {
    switch (below(10)) {
      case 0:
      case 1:
        return masked(0x81, gatewayText(meshIds));
      case 2:
        return masked(0x81, mangle(gatewayText(meshIds)));
      case 3: {  // a message in fragments, maybe a control frame between them
        const std::string text = chance(70) ? gatewayText(meshIds) : bytes(below(3000));
        const std::size_t cut = below(text.size() + 1);
        std::string out = masked(0x01, text.substr(0, cut));
        if (chance(40)) out += masked(0x89, bytes(below(20)));
        return out + masked(0x80, text.substr(cut));
      }
      case 4:  // control frames, some too long, some with odd close payloads
        return masked(std::array<std::uint8_t, 3>{0x89, 0x8A, 0x88}[below(3)],
                      bytes(chance(80) ? below(126) : 126 + below(200)));
      case 5:  // any first byte, mask bit or not, any length encoding
        return header(static_cast<std::uint8_t>(below(256)), below(400), chance(80), below(3)) +
               bytes(below(400));
      case 6:  // a length far beyond anything sent
        return header(0x81, chance(50) ? (1ULL << 40) : ~0ULL >> below(2), true, 2) +
               bytes(below(64));
      case 7:
        return masked(0x82, bytes(below(100)));
      case 8:  // over the relay's limit
        return masked(0x81, std::string(kMaxFrame + 1 + below(3000), 'x'));
      default:
        return bytes(1 + below(64));
    }
  }

  std::string gatewayText(const std::vector<std::string>& meshIds) {
    const std::string& id = meshIds[below(meshIds.size())];
    switch (below(6)) {
      case 0:
        return R"({"type":"gateway_relay","id":"n)" + std::to_string(below(1000)) +
               R"(","targetMeshId":")" + id + R"(","payload":{"t":")" + ascii(below(200)) + "\"}}";
      case 1:
        return R"({"type":"gateway_broadcast","payload":{"k":)" + std::to_string(below(99)) + "}}";
      case 2:
        return R"({"type":"gateway_discover","id":"d"})";
      case 3:
        return R"({"type":"gateway_update_rooms","publicRooms":[")" + ascii(below(40)) + "\"]}";
      case 4:
        return R"({"type":"gateway_update_participants","participants":[{"id":")" +
               ascii(below(20)) + R"(","name":"p"}]})";
      default:
        return authFor(id);
    }
  }

  static std::string authFor(const std::string& meshId) {
    return R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" +
           TestRelay::secretFor(meshId) + "\"}";
  }

  // Flips, drops or cuts a few bytes of otherwise valid JSON.
  std::string mangle(std::string text) {
    const std::size_t edits = 1 + below(4);
    for (std::size_t i = 0; i < edits && !text.empty(); ++i) {
      const std::size_t at = below(text.size());
      switch (below(3)) {
        case 0:
          text[at] = static_cast<char>(below(256));
          break;
        case 1:
          text.erase(at, 1 + below(5));
          break;
        default:
          text.resize(at);
      }
    }
    return text;
  }

  std::string ascii(std::size_t n) {
    std::string s(n, 'a');
    for (char& c : s) c = static_cast<char>('a' + below(26));
    return s;
  }

  std::string bytes(std::size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(below(256));
    return s;
  }

  // A client frame: masked, the shortest length encoding.
  std::string masked(std::uint8_t firstByte, const std::string& payload) {
    const std::size_t form = payload.size() < 126 ? 0 : payload.size() <= 0xffff ? 1 : 2;
    return header(firstByte, payload.size(), true, form, &payload);
  }

  // A frame header with length form 0 (7 bit), 1 (16 bit) or 2 (64 bit),
  // followed by `payload` masked with a random key when given.
  std::string header(std::uint8_t firstByte, std::uint64_t length, bool mask, std::size_t form,
                     const std::string* payload = nullptr) {
    std::string out(1, static_cast<char>(firstByte));
    const char maskBit = mask ? static_cast<char>(0x80) : 0;
    if (form == 0) {
      out += static_cast<char>(maskBit | static_cast<char>(length & 0x7f));
    } else if (form == 1) {
      out += static_cast<char>(maskBit | 126);
      out += static_cast<char>((length >> 8) & 0xff);
      out += static_cast<char>(length & 0xff);
    } else {
      out += static_cast<char>(maskBit | 127);
      for (int shift = 56; shift >= 0; shift -= 8)
        out += static_cast<char>((length >> shift) & 0xff);
    }
    std::array<char, 4> key{};
    if (mask) {
      for (char& k : key) k = static_cast<char>(below(256));
      out.append(key.data(), key.size());
    }
    if (payload != nullptr) {
      for (std::size_t i = 0; i < payload->size(); ++i)
        out += static_cast<char>((*payload)[i] ^ key[i % 4]);
    }
    return out;
  }

  std::mt19937 rng_;
};

// Opening handshakes, mostly for /gateway, with headers right, wrong,
// repeated, missing, oversized or malformed, sometimes with frames behind.
class RequestNoise {
 public:
  explicit RequestNoise(Noise& noise) : n_(noise) {}

  // The request, and whether the relay owes it an HTTP answer: a complete
  // head for /gateway within the size limit.
  std::pair<std::string, bool> request(std::uint16_t port) {
    std::string out;
    bool gateway = true;
    switch (n_.below(10)) {
      case 0:
        out = "GET /health HTTP/1.1\r\n";
        gateway = false;
        break;
      case 1:
        out = "POST /register HTTP/1.1\r\nContent-Length: " + std::to_string(n_.below(40)) + "\r\n";
        gateway = false;
        break;
      case 2:
        out = "GET /gateway?x=" + std::to_string(n_.below(100)) + " HTTP/1.1\r\n";
        break;
      default:
        out = "GET /gateway HTTP/1.1\r\n";
    }
    out += "Host: 127.0.0.1:" + std::to_string(port) + "\r\n";
    const std::size_t headers = n_.below(9);
    for (std::size_t i = 0; i < headers; ++i) out += header();
    if (n_.chance(5)) {
      out += "X-Padding: " + std::string(9000, 'p') + "\r\n";
      gateway = false;  // 431, or cut off by the relay before it is all sent
    }
    if (n_.chance(90)) {
      out += "\r\n";
    } else {
      gateway = false;  // never complete: the handshake timeout ends it
    }
    if (n_.chance(40)) {
      out += std::string(n_.chance(50) ? "\x81\x85" : "\x88\x80") + "abcd" + "hello";
    }
    return {out, gateway};
  }

 private:
  std::string header() {
    static const char* const kUpgrade[] = {"websocket", "WebSocket", "h2c, websocket", "", "x"};
    static const char* const kConnection[] = {"Upgrade", "keep-alive, Upgrade", "close", ""};
    static const char* const kVersion[] = {"13", "8", "13, 8", "", "013"};
    static const char* const kKey[] = {"dGhlIHNhbXBsZSBub25jZQ==", "", "short",
                                       "dGhlIHNhbXBsZSBub25jZQ=", "!!!!!!!!!!!!!!!!!!!!!!=="};
    static const char* const kAddress[] = {"203.0.113.9", "::1", "1.2.3.4, 5.6.7.8",
                                           "garbage",     "",    "[::ffff:10.0.0.1]"};
    switch (n_.below(9)) {
      case 0:
        return std::string("Upgrade: ") + pick(kUpgrade) + "\r\n";
      case 1:
        return std::string("connection:") + pick(kConnection) + "\r\n";
      case 2:
        return std::string("Sec-WebSocket-Version:  ") + pick(kVersion) + " \r\n";
      case 3:
        return std::string("Sec-WebSocket-Key: ") + pick(kKey) + "\r\n";
      case 4:
        return std::string("X-Forwarded-For: ") + pick(kAddress) + "\r\n";
      case 5:
        return std::string("Fly-Client-IP: ") + pick(kAddress) + "\r\n";
      case 6:
        return "NoColonHere\r\n";
      case 7:
        return ": empty name\r\n";
      default:
        // The headers a good client sends, so that many requests upgrade.
        return "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
               "13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    }
  }

  template <std::size_t N>
  const char* pick(const char* const (&options)[N]) {
    return options[n_.below(N)];
  }

  Noise& n_;
};

// The seed from MESH_NOISE_SEED, else `fallback`.
std::uint32_t seedOr(std::uint32_t fallback) {
  const char* text = std::getenv("MESH_NOISE_SEED");
  return text != nullptr ? static_cast<std::uint32_t>(std::strtoul(text, nullptr, 10)) : fallback;
}

// The /metrics page once the relay counts `open` connections (it sees
// hang-ups a little after they happen); a test failure if it never does.
std::string metricsOnceConnectionsAre(TestRelay& relay, int open, bool tls = false) {
  const std::string line = "\nmesh_relay_connections " + std::to_string(open) + "\n";
  std::string page;
  for (int i = 0; i < 100; ++i) {
    page = tls ? httpsRequest(relay.port(), "GET", "/metrics").body
               : httpRequest(relay.port(), "GET", "/metrics").body;
    if (page.find(line) != std::string::npos) return page;
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "never " << open << " connections:\n" << page;
  return page;
}

struct Peer {
  std::unique_ptr<WsClient> client;
  std::vector<std::string> pieces;
  std::size_t next = 0;
};

TEST(WireNoise, RandomStreamsOnManyConnectionsLeaveTheRelayServing) {
  const std::uint32_t seed = seedOr(20261128);
  SCOPED_TRACE("seed " + std::to_string(seed));
  TestRelay relay([](relay::Config& c) {
    c.limits.maxFrameBytes = kMaxFrame;
    c.rateLimit = 0;
    c.controlRate = 0;
    // The noise fails many auths from this one address; the budgets of
    // failures would then refuse the well-formed nodes that follow.
    c.authFailureRate = 0;
    c.authFailureMeshRate = 0;
    c.authTimeoutSeconds = 2;
  });
  const std::vector<std::string> meshIds{"noise-a", "noise-b", "noise-c", "nobody"};
  for (std::size_t i = 0; i + 1 < meshIds.size(); ++i) {
    ASSERT_EQ(relay.registerMesh(meshIds[i], TestRelay::secretFor(meshIds[i]), meshIds[i]), 201);
  }
  // A mesh that stays online through the noise and must keep hearing its peer.
  auto watcher = relay.join("noise-watcher");
  framesUntilProbe(*watcher);

  Noise noise(seed);
  constexpr int kConnections = 400;
  constexpr std::size_t kAtOnce = 8;
  int opened = 0;
  std::vector<Peer> live;
  std::vector<std::unique_ptr<WsClient>> lingering;
  auto open = [&] {
    Peer p;
    p.client = WsClient::connect(relay.port());
    p.pieces = noise.pieces(noise.stream(meshIds));
    live.push_back(std::move(p));
    ++opened;
  };
  while (opened < kConnections || !live.empty()) {
    while (live.size() < kAtOnce && opened < kConnections) open();
    // One piece from a random live connection; sends to a connection the
    // relay has already closed fail quietly (WsClient keeps the errno).
    const std::size_t i = noise.below(live.size());
    Peer& p = live[i];
    p.client->sendRaw(p.pieces[p.next++]);
    if (p.next < p.pieces.size()) continue;
    switch (noise.below(4)) {
      case 0:
        p.client->abort(true);  // reset
        break;
      case 1:
        p.client->abort(false);  // FIN without a close frame
        break;
      case 2:
        // A close frame, then gone (mid-frame the relay reads it as payload
        // and would never answer it).
        p.client->sendFrame(opcode::kClose, ws::closePayload(1000));
        p.client->abort(false);
        break;
      default:
        // Left open until the end.
        lingering.push_back(std::move(p.client));
        break;
    }
    live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
  }

  // The watcher still gets what a fresh mesh sends it.
  auto sender = relay.join("noise-sender");
  sender->sendText(
      R"({"type":"gateway_relay","targetMeshId":"noise-watcher","payload":{"after":"noise"}})");
  // Broadcasts from the noise may come first.
  bool heard = false;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!heard && std::chrono::steady_clock::now() < deadline) {
    const WsMessage m = watcher->recv(2000ms);
    if (m.kind != WsMessage::Kind::Text) break;
    heard = m.data.find("\"after\":\"noise\"") != std::string::npos;
  }
  EXPECT_TRUE(heard);
  expectRelayStillServes(relay);

  // Once the rest hang up, the relay has no session left over but the two
  // above; and the noise did reach the error paths.
  lingering.clear();
  const std::string page = metricsOnceConnectionsAre(relay, 2);
  EXPECT_EQ(page.find("\nmesh_relay_websocket_protocol_errors_total 0\n"), std::string::npos);
  EXPECT_EQ(page.find("mesh_relay_frames_received_total{type=\"invalid\"} 0\n"), std::string::npos);
  EXPECT_EQ(page.find("mesh_relay_frames_received_total{type=\"too_large\"} 0\n"),
            std::string::npos);
}

TEST(WireNoise, RandomUpgradeRequestsAreAnsweredOrEndedAndTheRelayServes) {
  const std::uint32_t seed = seedOr(1128);
  SCOPED_TRACE("seed " + std::to_string(seed));
  TestRelay relay([](relay::Config& c) {
    c.handshakeTimeoutSeconds = 0.5;
    c.authTimeoutSeconds = 1;
    c.trustedProxies = {"127.0.0.0/8"};
  });
  Noise noise(seed);
  RequestNoise requests(noise);
  std::vector<std::unique_ptr<RawPeer>> lingering;
  int answered = 0;
  for (int i = 0; i < 300; ++i) {
    const auto [bytes, owesAnswer] = requests.request(relay.port());
    auto peer = std::make_unique<RawPeer>(relay.port());
    try {
      for (const std::string& piece : noise.pieces(bytes)) peer->send(piece);
    } catch (const std::runtime_error&) {
      // The relay answered and closed before the rest was sent (431).
    }
    if (owesAnswer) {
      std::string head;
      try {
        head = peer->readResponseHead(2000ms);
      } catch (const std::runtime_error& e) {
        head = e.what();
      }
      EXPECT_EQ(head.rfind("HTTP/1.1 ", 0), 0u) << head << "\nrequest:\n" << bytes;
      ++answered;
    }
    switch (noise.below(3)) {
      case 0:
        peer->resetOnClose();
        break;
      case 1:
        break;  // FIN
      default:
        lingering.push_back(std::move(peer));
    }
  }
  EXPECT_GT(answered, 100);
  expectRelayStillServes(relay);
  lingering.clear();
  metricsOnceConnectionsAre(relay, 0);
}

// The same noise through lws, which serves WebSockets when the relay
// terminates TLS: lws parses the frames, the relay reassembles messages.
TEST(WireNoise, RandomStreamsOverTlsLeaveTheRelayServing) {
  ::signal(SIGPIPE, SIG_IGN);  // SSL_write to a connection the relay has closed
  const std::uint32_t seed = seedOr(7);
  SCOPED_TRACE("seed " + std::to_string(seed));
  TempDir certs;
  TestRelay relay([&](relay::Config& c) {
    useSelfSignedCert(c, certs.path(), "noise");
    c.limits.maxFrameBytes = kMaxFrame;
    c.rateLimit = 0;
    c.controlRate = 0;
    // The noise fails many auths from this one address; the budgets of
    // failures would then refuse the well-formed nodes that follow.
    c.authFailureRate = 0;
    c.authFailureMeshRate = 0;
    c.authTimeoutSeconds = 2;
  });
  const std::vector<std::string> meshIds{"noise-a", "noise-b", "nobody"};
  for (const std::string id : {"noise-a", "noise-b", "noise-rx", "noise-tx"}) {
    const std::string body = R"({"meshId":")" + id + R"(","secret":")" + TestRelay::secretFor(id) +
                             R"(","name":")" + id + "\"}";
    ASSERT_EQ(httpsRequest(relay.port(), "POST", "/register", body).status, 201);
  }
  Noise noise(seed);
  const std::string key = ws::base64Encode("wire-noise-key16");
  for (int i = 0; i < 80; ++i) {
    auto tls = TlsStream::connect(relay.port());
    tls->write(
        "GET /gateway HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: " +
        key + "\r\nSec-WebSocket-Version: 13\r\n\r\n");
    std::string answer;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (answer.find("\r\n\r\n") == std::string::npos && tls->read(answer, deadline)) {
    }
    ASSERT_EQ(answer.rfind("HTTP/1.1 101", 0), 0u) << answer;
    try {
      for (const std::string& piece : noise.pieces(noise.stream(meshIds))) tls->write(piece);
    } catch (const std::runtime_error&) {
      // The relay closed this one; the next connection goes on.
    }
  }
  auto rx = TlsWsClient::connect(relay.port());
  rx->sendText(R"({"type":"gateway_auth","meshId":"noise-rx","secret":")" +
               TestRelay::secretFor("noise-rx") + "\"}");
  rx->expectType("gateway_auth_ok");
  auto tx = TlsWsClient::connect(relay.port());
  tx->sendText(R"({"type":"gateway_auth","meshId":"noise-tx","secret":")" +
               TestRelay::secretFor("noise-tx") + "\"}");
  tx->expectType("gateway_auth_ok");
  tx->sendText(R"({"type":"gateway_relay","targetMeshId":"noise-rx","payload":{"ok":1}})");
  EXPECT_EQ(jsonString(rx->expectType("gateway_incoming"), "fromMeshId"), "noise-tx");
  const std::string page = metricsOnceConnectionsAre(relay, 2, true);
  EXPECT_EQ(page.find("mesh_relay_frames_received_total{type=\"invalid\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace mesh::test
