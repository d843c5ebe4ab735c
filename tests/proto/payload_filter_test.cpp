#include <string>

#include <gtest/gtest.h>

#include "mesh/proto/codec.h"
#include "support/hostile_numbers.h"

namespace mesh::proto {
namespace {

TEST(PayloadFilter, KeepsOnlyTypeAndWhitelistedMessageFields) {
  const std::string in =
      R"({"type":"new_message","evil":1,"message":{"id":"m1","roomId":"r","senderId":"s",)"
      R"("senderName":"S","content":"hi","isDm":false,"createdAt":"2026-01-01","fromMesh":"A",)"
      R"("fromMeshId":"a","roomName":"general","trustLevel":"owner","script":"x",)"
      R"("nested":{"a":1}}})";
  EXPECT_EQ(filterMeshChatPayload(in),
            R"({"type":"new_message","message":{"id":"m1","roomId":"r","senderId":"s",)"
            R"("senderName":"S","content":"hi","isDm":false,"createdAt":"2026-01-01",)"
            R"("fromMesh":"A","fromMeshId":"a","roomName":"general","trustLevel":"federated"}})");
}

TEST(PayloadFilter, AddsTrustLevelEvenWhenAbsent) {
  EXPECT_EQ(filterMeshChatPayload(R"({"message":{"content":"hi"}})"),
            R"({"message":{"content":"hi","trustLevel":"federated"}})");
}

TEST(PayloadFilter, KeepsNonObjectMessageAsIs) {
  EXPECT_EQ(filterMeshChatPayload(R"({"type":"ping","message":"text"})"),
            R"({"type":"ping","message":"text"})");
  EXPECT_EQ(filterMeshChatPayload(R"({"message":[1,{"x":2}]})"), R"({"message":[1,{"x":2}]})");
}

TEST(PayloadFilter, DropsEverythingElse) {
  EXPECT_EQ(filterMeshChatPayload(R"({"other":1,"__proto__":{"x":1}})"), "{}");
  EXPECT_EQ(filterMeshChatPayload("{}"), "{}");
}

TEST(PayloadFilter, LastDuplicateWins) {
  EXPECT_EQ(filterMeshChatPayload(R"({"type":"a","type":"b"})"), R"({"type":"b"})");
  EXPECT_EQ(filterMeshChatPayload(R"({"message":{"content":"x","content":"y"}})"),
            R"({"message":{"content":"y","trustLevel":"federated"}})");
}

TEST(PayloadFilter, ValuesKeepTheirStructure) {
  EXPECT_EQ(filterMeshChatPayload(R"({"message":{"content":{"parts":["a\n",2.5,null]}}})"),
            R"({"message":{"content":{"parts":["a\n",2.5,null]},"trustLevel":"federated"}})");
}

TEST(PayloadFilter, UnparsableInputFiltersToEmptyObject) {
  EXPECT_EQ(filterMeshChatPayload("not json"), "{}");
  EXPECT_EQ(filterMeshChatPayload("[1]"), "{}");
  EXPECT_EQ(filterMeshChatPayload(R"({"type":"x"} trailing)"), "{}");
}

// Numbers are forwarded, never computed on: each one leaves as it came,
// wherever it sits in the kept fields.
TEST(PayloadFilter, KeepsEveryNumberByteForByte) {
  for (const std::string& n : test::hostileNumbers()) {
    const std::string in = R"({"type":)" + n + R"(,"message":{"content":)" + n +
                           R"(,"createdAt":[)" + n + R"(,{"x":)" + n + R"(}],"drop":)" + n + "}}";
    EXPECT_EQ(filterMeshChatPayload(in), R"({"type":)" + n + R"(,"message":{"content":)" + n +
                                             R"(,"createdAt":[)" + n + R"(,{"x":)" + n +
                                             R"(}],"trustLevel":"federated"}})")
        << n;
    EXPECT_EQ(filterMeshChatPayload(R"({"message":)" + n + "}"), R"({"message":)" + n + "}") << n;
  }
  const std::string all = test::hostileNumbersArray();
  EXPECT_EQ(filterMeshChatPayload(R"({"type":"t","message":{"content":)" + all + "}}"),
            R"({"type":"t","message":{"content":)" + all + R"(,"trustLevel":"federated"}})");
}

// Numbers that look like strings stay numbers, and strings that look like
// numbers stay strings.
TEST(PayloadFilter, NumbersAndStringsKeepTheirKind) {
  EXPECT_EQ(filterMeshChatPayload(R"({"type":"0E193","message":{"id":12,"content":"1e400"}})"),
            R"({"type":"0E193","message":{"id":12,"content":"1e400","trustLevel":"federated"}})");
}

// The deepest payload --max-payload-depth allows (512) is filtered; deeper
// input, which the decoder never hands over, filters to nothing instead of
// recursing without bound.
TEST(PayloadFilter, DepthIsBounded) {
  const std::string deep = std::string(510, '[') + "0E193" + std::string(510, ']');
  EXPECT_EQ(filterMeshChatPayload(R"({"message":{"content":)" + deep + "}}"),
            R"({"message":{"content":)" + deep + R"(,"trustLevel":"federated"}})");
  const std::string tooDeep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(filterMeshChatPayload(R"({"message":)" + tooDeep + "}"), "{}");
}

}  // namespace
}  // namespace mesh::proto
