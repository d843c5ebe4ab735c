#include <string>

#include <gtest/gtest.h>

#include "mesh/proto/codec.h"

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
  EXPECT_EQ(filterMeshChatPayload(R"({"type":1e400})"), "{}");
}

}  // namespace
}  // namespace mesh::proto
