#include <string>
#include <variant>

#include <gtest/gtest.h>

#include "mesh/proto/codec.h"

namespace mesh::proto {
namespace {

std::string reason(std::string_view body) {
  const RegisterParse p = parseRegisterRequest(body);
  if (const auto* r = std::get_if<std::string>(&p)) return *r;
  return "<accepted>";
}

TEST(RegisterRequest, ParsesAValidBody) {
  const RegisterParse p = parseRegisterRequest(
      R"({"meshId":"mesh-a.1_X","secret":"0123456789abcdef","name":"Mesh A","extra":1})");
  const auto* r = std::get_if<RegisterRequest>(&p);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->meshId, "mesh-a.1_X");
  EXPECT_EQ(r->secret, "0123456789abcdef");
  EXPECT_EQ(r->name, "Mesh A");
}

TEST(RegisterRequest, BadJson) {
  EXPECT_EQ(reason(""), "Invalid JSON");
  EXPECT_EQ(reason("{"), "Invalid JSON");
  EXPECT_EQ(reason("meshId=a"), "Invalid JSON");
  EXPECT_EQ(reason(R"({"meshId":"a"} x)"), "Invalid JSON");
  EXPECT_EQ(reason("{\"meshId\":\"\xff\"}"), "Invalid JSON");
}

TEST(RegisterRequest, MissingFields) {
  const std::string required = "meshId, secret, and name required";
  EXPECT_EQ(reason("{}"), required);
  EXPECT_EQ(reason("[]"), required);
  EXPECT_EQ(reason("null"), required);
  EXPECT_EQ(reason(R"({"meshId":"a","secret":"0123456789abcdef"})"), required);
  EXPECT_EQ(reason(R"({"meshId":"a","name":"A"})"), required);
  EXPECT_EQ(reason(R"({"secret":"0123456789abcdef","name":"A"})"), required);
  EXPECT_EQ(reason(R"({"meshId":5,"secret":"0123456789abcdef","name":"A"})"), required);
  EXPECT_EQ(reason(R"({"meshId":"a","secret":"0123456789abcdef","name":""})"), required);
  EXPECT_EQ(reason(R"({"meshId":"a","secret":null,"name":"A"})"), required);
}

TEST(RegisterRequest, MeshIdPattern) {
  const std::string secret = R"("secret":"0123456789abcdef","name":"A")";
  EXPECT_NE(reason(R"({"meshId":"has space",)" + secret + "}").find("meshId"), std::string::npos);
  EXPECT_NE(reason(R"({"meshId":"a/b",)" + secret + "}").find("meshId"), std::string::npos);
  EXPECT_NE(reason(R"({"meshId":")" + std::string(65, 'm') + "\"," + secret + "}").find("meshId"),
            std::string::npos);
  EXPECT_EQ(reason(R"({"meshId":")" + std::string(64, 'm') + "\"," + secret + "}"), "<accepted>");
}

TEST(RegisterRequest, NameLength) {
  const std::string head = R"({"meshId":"a","secret":"0123456789abcdef","name":")";
  EXPECT_EQ(reason(head + std::string(128, 'n') + "\"}"), "<accepted>");
  EXPECT_NE(reason(head + std::string(129, 'n') + "\"}").find("name"), std::string::npos);
}

TEST(RegisterRequest, SecretLength) {
  const std::string head = R"({"meshId":"a","name":"A","secret":")";
  EXPECT_NE(reason(head + std::string(15, 's') + "\"}").find("secret"), std::string::npos);
  EXPECT_EQ(reason(head + std::string(16, 's') + "\"}"), "<accepted>");
  EXPECT_EQ(reason(head + std::string(256, 's') + "\"}"), "<accepted>");
  EXPECT_NE(reason(head + std::string(257, 's') + "\"}").find("secret"), std::string::npos);
}

}  // namespace
}  // namespace mesh::proto
