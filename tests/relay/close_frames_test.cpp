// A peer's close frame on both WebSocket paths: the relay's own plain one
// and lws's (TLS). A valid one is echoed; a one-byte payload or a code no
// endpoint may send gets 1002 with a reason, a reason that is not UTF-8 gets
// 1007 (RFC 6455 5.5.1, 7.4, 8.1), and the relay goes on serving.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/test_relay.h"
#include "support/tls_client.h"

namespace mesh::test {
namespace {

struct Case {
  std::string name;
  std::string payload;  // of the peer's close frame
  int code;             // of the relay's answer
  std::string reason;   // of the relay's answer
};

std::string code(unsigned c) {
  return {static_cast<char>((c >> 8) & 0xff), static_cast<char>(c & 0xff)};
}

// What both paths answer the same way.
std::vector<Case> refusedCases() {
  std::vector<Case> cases;
  cases.push_back({"one-byte payload", std::string(1, '\x03'), 1002, "protocol_error"});
  for (unsigned c :
       {0u, 1u, 999u, 1004u, 1005u, 1006u, 1015u, 1016u, 1100u, 2000u, 2999u, 5000u, 65535u}) {
    cases.push_back({"code " + std::to_string(c), code(c) + "bye", 1002, "protocol_error"});
  }
  cases.push_back({"reason not UTF-8", code(1000) + "\xff\xfe", 1007, "invalid_utf8"});
  cases.push_back({"reason cut mid-character", code(4000) + "caf\xc3", 1007, "invalid_utf8"});
  cases.push_back({"reason with a surrogate", code(1001) + "\xed\xa0\x80", 1007, "invalid_utf8"});
  cases.push_back({"reason overlong", code(3000) + "\xc0\xaf", 1007, "invalid_utf8"});
  return cases;
}

std::vector<Case> echoedCases() {
  std::vector<Case> cases;
  for (unsigned c : {1000u, 1001u, 1003u, 1007u, 1008u, 1011u, 3000u, 4000u, 4999u}) {
    cases.push_back(
        {"code " + std::to_string(c), code(c) + "bye \xc3\xa9", static_cast<int>(c), ""});
  }
  return cases;
}

TEST(CloseFrames, PlainPathAnswersBadCloseFramesWith1002Or1007) {
  TestRelay relay;
  int n = 0;
  for (const Case& k : refusedCases()) {
    auto c = relay.join("close-" + std::to_string(n++));
    c->sendFrame(opcode::kClose, k.payload);
    const WsMessage m = c->recv();
    ASSERT_EQ(m.kind, WsMessage::Kind::Close) << k.name;
    EXPECT_EQ(m.closeCode, k.code) << k.name;
    EXPECT_EQ(m.data, k.reason) << k.name;
    expectRelayStillServes(relay);
  }
}

TEST(CloseFrames, PlainPathEchoesValidCloseCodes) {
  TestRelay relay;
  int n = 0;
  std::vector<Case> cases = echoedCases();
  for (unsigned c : {1012u, 1013u, 1014u}) {  // assigned by IANA since RFC 6455
    cases.push_back({"code " + std::to_string(c), code(c), static_cast<int>(c), ""});
  }
  cases.push_back({"no payload", "", 1000, ""});
  for (const Case& k : cases) {
    auto c = relay.join("close-" + std::to_string(n++));
    c->sendFrame(opcode::kClose, k.payload);
    const WsMessage m = c->recv();
    ASSERT_EQ(m.kind, WsMessage::Kind::Close) << k.name;
    EXPECT_EQ(m.closeCode, k.code) << k.name;
  }
  expectRelayStillServes(relay);
}

// ---------------------------------------------------------------- TLS --

std::unique_ptr<TlsWsClient> joinTls(TestRelay& relay, const std::string& meshId) {
  EXPECT_EQ(
      httpsRequest(relay.port(), "POST", "/register", TestRelay::registerBodyFor(meshId)).status,
      201);
  auto c = TlsWsClient::connect(relay.port());
  c->sendText(TestRelay::authFrameFor(meshId));
  c->expectType("gateway_auth_ok");
  return c;
}

void expectTlsRelayStillServes(TestRelay& relay, int round) {
  auto a = joinTls(relay, "healthy-a-" + std::to_string(round));
  auto b = joinTls(relay, "healthy-b-" + std::to_string(round));
  a->sendText(R"({"type":"gateway_relay","targetMeshId":"healthy-b-)" + std::to_string(round) +
              R"(","payload":{"n":1}})");
  EXPECT_EQ(jsonString(b->expectType("gateway_incoming"), "fromMeshId"),
            "healthy-a-" + std::to_string(round));
}

WsMessage closeOverTls(TlsWsClient& c, const std::string& payload) {
  c.sendRaw(ws::encodeFrame(opcode::kClose, payload, true, ws::randomMaskKey()));
  return c.recv();
}

TEST(CloseFrames, TlsPathAnswersBadCloseFramesWith1002Or1007) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) { useSelfSignedCert(c, certs.path(), "relay-test"); });
  int n = 0;
  std::vector<Case> cases = refusedCases();
  // lws 4.1.6 counts these as invalid before the relay sees the frame.
  for (unsigned c : {1012u, 1013u, 1014u}) {
    cases.push_back({"code " + std::to_string(c), code(c), 1002, "protocol_error"});
  }
  for (const Case& k : cases) {
    auto c = joinTls(relay, "close-" + std::to_string(n));
    const WsMessage m = closeOverTls(*c, k.payload);
    ASSERT_EQ(m.kind, WsMessage::Kind::Close) << k.name;
    EXPECT_EQ(m.closeCode, k.code) << k.name;
    EXPECT_EQ(m.data, k.reason) << k.name;
    expectTlsRelayStillServes(relay, n++);
  }
}

TEST(CloseFrames, TlsPathEchoesValidCloseCodes) {
  TempDir certs;
  TestRelay relay([&](relay::Config& c) { useSelfSignedCert(c, certs.path(), "relay-test"); });
  int n = 0;
  for (const Case& k : echoedCases()) {
    auto c = joinTls(relay, "close-" + std::to_string(n++));
    const WsMessage m = closeOverTls(*c, k.payload);
    ASSERT_EQ(m.kind, WsMessage::Kind::Close) << k.name;
    EXPECT_EQ(m.closeCode, k.code) << k.name;
  }
  expectTlsRelayStillServes(relay, 0);
}

}  // namespace
}  // namespace mesh::test
