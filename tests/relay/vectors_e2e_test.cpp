// Every case of tests/vectors/frames.jsonl sent to a real relay over a
// real WebSocket, on a connection in the state the case names.
#include <gtest/gtest.h>

#include <fstream>

#include "support/test_relay.h"

namespace mesh::test {
namespace {

struct Vector {
  std::string name;
  bool authed = false;
  std::string frame;
  std::string expectOk;
  std::string expectError;
  int expectClose = 0;
};

std::string fromHex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::vector<Vector> loadVectors() {
  std::ifstream in(std::string(MESH_VECTORS_DIR) + "/frames.jsonl");
  std::vector<Vector> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto d = json(line);
    Vector v;
    v.name = d["name"].GetString();
    v.authed = d["authed"].GetBool();
    v.frame = d.HasMember("frame") ? d["frame"].GetString() : fromHex(d["frame_hex"].GetString());
    auto& e = d["expect"];
    if (e.HasMember("ok")) v.expectOk = e["ok"].GetString();
    if (e.HasMember("error")) v.expectError = e["error"].GetString();
    if (e.HasMember("close")) v.expectClose = e["close"].GetInt();
    out.push_back(std::move(v));
  }
  return out;
}

TEST(FrameVectorsEndToEnd, EveryCaseHoldsAgainstTheRelay) {
  const auto vectors = loadVectors();
  ASSERT_EQ(vectors.size(), 55u);
  TestRelay relay([](relay::Config& c) { c.rateLimit = 0; });
  // The vectors authenticate as mesh-a with this secret.
  ASSERT_EQ(relay.registerMesh("mesh-a", "0123456789abcdef", "A"), 201);
  auto other = relay.join("mesh-b");

  for (const auto& v : vectors) {
    SCOPED_TRACE(v.name);
    std::unique_ptr<WsClient> c;
    if (v.authed) {
      c = relay.connectAs("mesh-a", "0123456789abcdef");
    } else {
      c = WsClient::connect(relay.port());
    }
    c->sendText(v.frame);
    if (v.expectClose) {
      EXPECT_EQ(c->expectClose(), v.expectClose);
      continue;
    }
    if (!v.authed && v.expectOk == "gateway_auth") {
      // A well-formed auth is answered by the credential check: ok for the
      // real secret, invalid_credentials for the made-up token.
      auto m = c->recv();
      ASSERT_EQ(m.kind, WsMessage::Kind::Text);
      const std::string type = jsonString(m.data, "type");
      if (type == "gateway_auth_error") {
        EXPECT_EQ(jsonString(m.data, "code"), "invalid_credentials") << m.data;
      } else {
        EXPECT_EQ(type, "gateway_auth_ok") << m.data;
      }
      continue;
    }
    // Frames on an unauthenticated connection are answered with an error
    // and nothing else, so a probe is needed only after auth.
    std::vector<std::string> seen;
    if (v.authed) {
      seen = framesUntilProbe(*c);
    } else {
      seen.push_back(
          c->expectType(v.expectError == "not_authenticated" ? "gateway_auth_error" : "error"));
    }
    std::vector<std::string> errors;
    for (const auto& f : seen) {
      const std::string type = jsonString(f, "type");
      if (type == "error" || type == "gateway_auth_error") errors.push_back(jsonString(f, "code"));
    }
    if (!v.expectOk.empty()) {
      EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors[0]);
    } else {
      ASSERT_EQ(errors.size(), 1u);
      EXPECT_EQ(errors[0], v.expectError);
    }
  }
  // After all of it the relay still relays.
  auto a = relay.connectAs("mesh-a", "0123456789abcdef");
  a->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-b","payload":{"done":true}})");
  EXPECT_NO_THROW(other->expectType("gateway_incoming"));
}

}  // namespace
}  // namespace mesh::test
