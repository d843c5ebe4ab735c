// Address lists and forwarded-address rules, without a server.
#include "net_policy.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace mesh::relay {
namespace {

TEST(NetPolicy, ParsesAndFormatsBothFamilies) {
  EXPECT_EQ(formatIp(*parseIp("192.0.2.1")), "192.0.2.1");
  EXPECT_EQ(formatIp(*parseIp("2001:DB8:0:0::1")), "2001:db8::1");
  EXPECT_EQ(formatIp(*parseIp("[2001:db8::1]")), "2001:db8::1");
  EXPECT_FALSE(parseIp("192.0.2.1:443"));
  EXPECT_FALSE(parseIp("example.com"));
  EXPECT_FALSE(parseIp(""));
}

TEST(NetPolicy, MappedIpv4IsTheSameAddress) {
  EXPECT_EQ(*parseIp("::ffff:10.1.2.3"), *parseIp("10.1.2.3"));
  EXPECT_EQ(formatIp(*parseIp("::ffff:10.1.2.3")), "10.1.2.3");
  EXPECT_TRUE(parseCidr("10.0.0.0/8")->contains(*parseIp("::ffff:10.200.0.1")));
}

TEST(NetPolicy, CidrMatchesOnPrefixBits) {
  const auto v4 = *parseCidr("192.168.4.0/22");
  EXPECT_TRUE(v4.contains(*parseIp("192.168.7.255")));
  EXPECT_FALSE(v4.contains(*parseIp("192.168.8.0")));
  const auto v6 = *parseCidr("2001:db8::/32");
  EXPECT_TRUE(v6.contains(*parseIp("2001:db8:ffff::1")));
  EXPECT_FALSE(v6.contains(*parseIp("2001:db9::1")));
  EXPECT_FALSE(v6.contains(*parseIp("10.0.0.1")));
  EXPECT_TRUE(parseCidr("0.0.0.0/0")->contains(*parseIp("203.0.113.9")));
  EXPECT_FALSE(parseCidr("0.0.0.0/0")->contains(*parseIp("2001:db8::1")));
  EXPECT_TRUE(parseCidr("::/0")->contains(*parseIp("2001:db8::1")));
  EXPECT_TRUE(parseCidr("127.0.0.2")->contains(*parseIp("127.0.0.2")));
  EXPECT_FALSE(parseCidr("127.0.0.2")->contains(*parseIp("127.0.0.3")));
}

TEST(NetPolicy, RejectsMalformedRanges) {
  EXPECT_FALSE(parseCidr("10.0.0.0/33"));
  EXPECT_FALSE(parseCidr("2001:db8::/129"));
  EXPECT_FALSE(parseCidr("10.0.0.0/"));
  EXPECT_FALSE(parseCidr("10.0.0.0/8x"));
  EXPECT_FALSE(parseCidr("ten/8"));
  EXPECT_THROW(CidrList({"10.0.0.0/8, nonsense"}), std::invalid_argument);
  EXPECT_THROW(NetPolicy({}, {"300.0.0.0/8"}, {}), std::invalid_argument);
}

TEST(NetPolicy, ListsSplitOnCommasAndSpaces) {
  const CidrList list({"10.0.0.0/8, 192.0.2.0/24 2001:db8::/32", "127.0.0.2"});
  EXPECT_TRUE(list.contains(*parseIp("192.0.2.77")));
  EXPECT_TRUE(list.contains(*parseIp("2001:db8::5")));
  EXPECT_TRUE(list.contains(*parseIp("127.0.0.2")));
  EXPECT_FALSE(list.contains(*parseIp("127.0.0.1")));
}

TEST(NetPolicy, DenyWinsOverAllow) {
  const NetPolicy p({"10.0.0.0/8"}, {"10.6.0.0/16"}, {});
  EXPECT_TRUE(p.admits("10.1.1.1"));
  EXPECT_FALSE(p.admits("10.6.1.1"));
  EXPECT_FALSE(p.admits("192.0.2.1"));
  EXPECT_FALSE(p.admits("not-an-address"));
  const NetPolicy open({}, {"192.0.2.0/24"}, {});
  EXPECT_TRUE(open.admits("198.51.100.1"));
  EXPECT_FALSE(open.admits("::ffff:192.0.2.1"));
  EXPECT_TRUE(open.admits("not-an-address"));
}

TEST(NetPolicy, ForwardedHeadersOnlyFromTrustedPeers) {
  const NetPolicy p({}, {}, {"10.0.0.0/8", "fd00::/8"});
  EXPECT_EQ(p.clientAddress("192.0.2.50", "203.0.113.7", ""), "192.0.2.50");
  EXPECT_EQ(p.clientAddress("192.0.2.50", "", "203.0.113.7"), "192.0.2.50");
  EXPECT_EQ(p.clientAddress("10.0.0.1", "203.0.113.7", ""), "203.0.113.7");
  EXPECT_EQ(p.clientAddress("::ffff:10.0.0.1", "203.0.113.7", ""), "203.0.113.7");
  EXPECT_EQ(p.clientAddress("fd00::1", "2001:db8::7", ""), "2001:db8::7");
  EXPECT_EQ(p.clientAddress("10.0.0.1", "", ""), "10.0.0.1");
}

TEST(NetPolicy, ForwardedForIsReadFromTheRight) {
  const NetPolicy p({}, {}, {"10.0.0.0/8"});
  // The client may put anything on the left; the rightmost untrusted hop is
  // the address our own proxy saw.
  EXPECT_EQ(p.clientAddress("10.0.0.1", "1.1.1.1, 203.0.113.7, 10.0.0.9", ""), "203.0.113.7");
  EXPECT_EQ(p.clientAddress("10.0.0.1", "10.0.0.8, 10.0.0.9", ""), "10.0.0.8");
  EXPECT_EQ(p.clientAddress("10.0.0.1", "garbage, 203.0.113.7", ""), "203.0.113.7");
  EXPECT_EQ(p.clientAddress("10.0.0.1", "203.0.113.7, garbage", ""), "10.0.0.1");
  EXPECT_EQ(p.clientAddress("10.0.0.1", "[2001:db8::7]", ""), "2001:db8::7");
}

TEST(NetPolicy, FlyClientIpWinsFromATrustedPeer) {
  const NetPolicy p({}, {}, {"10.0.0.0/8"});
  EXPECT_EQ(p.clientAddress("10.0.0.1", "198.51.100.1", "203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(p.clientAddress("10.0.0.1", "198.51.100.1", "bogus"), "198.51.100.1");
}

TEST(NetPolicy, CanonicalIpReadsMappedAddressesAsIpv4) {
  EXPECT_EQ(canonicalIp("::ffff:10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(canonicalIp("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(canonicalIp("2001:DB8:0:0::1"), "2001:db8::1");
  EXPECT_EQ(canonicalIp("?"), "?");
}

}  // namespace
}  // namespace mesh::relay
