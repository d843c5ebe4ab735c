// Runs every case of the shared decoder vectors (frames.jsonl) through
// decodeNodeFrame.
#include <fstream>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "mesh/proto/codec.h"
#include "mesh/proto/errors.h"

namespace mesh::proto {
namespace {

struct VectorCase {
  std::string name;
  bool authed = false;
  std::string frame;
  std::string expectOk;     // frame type when the case decodes
  std::string expectError;  // error code when it is refused
  int expectClose = 0;      // close code when the connection ends
};

std::string fromHex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::vector<VectorCase> loadVectors() {
  std::ifstream in(MESH_VECTORS_DIR "/frames.jsonl");
  std::vector<VectorCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    rapidjson::Document d;
    d.Parse(line.data(), line.size());
    if (d.HasParseError() || !d.IsObject()) {
      ADD_FAILURE() << "unreadable vector line: " << line.substr(0, 80);
      continue;
    }
    VectorCase c;
    c.name = d["name"].GetString();
    c.authed = d["authed"].GetBool();
    if (d.HasMember("frame")) {
      c.frame.assign(d["frame"].GetString(), d["frame"].GetStringLength());
    } else {
      c.frame = fromHex(d["frame_hex"].GetString());
    }
    const rapidjson::Value& expect = d["expect"];
    if (expect.HasMember("ok")) c.expectOk = expect["ok"].GetString();
    if (expect.HasMember("error")) c.expectError = expect["error"].GetString();
    if (expect.HasMember("close")) c.expectClose = expect["close"].GetInt();
    cases.push_back(std::move(c));
  }
  return cases;
}

TEST(FrameVectors, EveryCaseMatches) {
  const std::vector<VectorCase> cases = loadVectors();
  ASSERT_EQ(cases.size(), 55u) << "frames.jsonl not found or changed";
  const Limits limits;
  for (const VectorCase& c : cases) {
    SCOPED_TRACE(c.name);
    const DecodeResult r = decodeNodeFrame(c.frame, c.authed, limits);
    if (!c.expectOk.empty()) {
      const auto* ok = std::get_if<DecodedFrame>(&r);
      ASSERT_NE(ok, nullptr) << std::get<DecodeError>(r).message;
      EXPECT_EQ(typeName(ok->frame), c.expectOk);
    } else if (!c.expectError.empty()) {
      const auto* err = std::get_if<DecodeError>(&r);
      ASSERT_NE(err, nullptr);
      EXPECT_EQ(codeText(err->code), c.expectError) << err->message;
      EXPECT_FALSE(err->message.empty());
      EXPECT_EQ(closeCode(err->code), 0);
    } else {
      const auto* err = std::get_if<DecodeError>(&r);
      ASSERT_NE(err, nullptr);
      EXPECT_EQ(err->code, ErrorCode::InvalidUtf8);
      EXPECT_EQ(closeCode(err->code), c.expectClose);
    }
  }
}

}  // namespace
}  // namespace mesh::proto
