// readRequestHead(): where a request head ends, and which heads the relay
// refuses because their body length is in doubt (RFC 9112 6.3) or they are
// too large. Unit tests of the pure function; http_framing_test.cpp sends
// the same requests to a real relay.
#include "http_head.h"

#include <gtest/gtest.h>

#include <string>

namespace mesh::relay {
namespace {

using State = RequestHead::State;

std::string request(const std::string& fields,
                    const std::string& line = "POST /register HTTP/1.1") {
  return line + "\r\nHost: relay.example\r\n" + fields + "\r\n";
}

void expectRefused(const std::string& bytes, int status) {
  const RequestHead h = readRequestHead(bytes);
  EXPECT_EQ(h.state, State::Refused) << bytes;
  EXPECT_EQ(h.status, status) << bytes << "\n" << h.why;
}

TEST(RequestHead, PlainRequestEndsAtItsBlankLine) {
  const std::string head = request("Content-Length: 2\r\n");
  const std::string bytes = head + "{}GET / HTTP/1.1\r\n\r\n";
  const RequestHead h = readRequestHead(bytes);
  ASSERT_EQ(h.state, State::Complete) << h.why;
  EXPECT_EQ(h.length, head.size());
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/register");
  EXPECT_EQ(h.contentLength, 2u);
  EXPECT_FALSE(h.upgrade);
}

TEST(RequestHead, NoContentLengthIsNoBody) {
  const RequestHead h = readRequestHead("GET /health?x=1 HTTP/1.0\r\n\r\n");
  ASSERT_EQ(h.state, State::Complete) << h.why;
  EXPECT_EQ(h.target, "/health?x=1");
  EXPECT_EQ(h.contentLength, 0u);
}

TEST(RequestHead, IncompleteUntilTheBlankLine) {
  const std::string whole = request("Content-Length: 2\r\n");
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    EXPECT_EQ(readRequestHead(whole.substr(0, cut)).state, State::Incomplete) << cut;
  }
  EXPECT_EQ(readRequestHead(whole).state, State::Complete);
}

// The inputs of the report: each would let a body be read as a request.
TEST(RequestHead, ContentLengthThatIsNotANumberIs400) {
  for (const char* value : {"abc", "", "-1", "+5", "5 5", "0x10", "1e3", "5;", "5,", ",5",
                            "99999999999999999999", "18446744073709551616"}) {
    expectRefused(request(std::string("Content-Length: ") + value + "\r\n"), 400);
  }
  EXPECT_EQ(readRequestHead(request("Content-Length: 18446744073709551615\r\n")).contentLength,
            18446744073709551615u);
}

TEST(RequestHead, RepeatedContentLengthMustAgree) {
  expectRefused(request("Content-Length: 2\r\nContent-Length: 60\r\n"), 400);
  expectRefused(request("Content-Length: 2, 60\r\n"), 400);
  // The same number repeated is that number (RFC 9110 8.6).
  const RequestHead same =
      readRequestHead(request("Content-Length: 7\r\ncontent-length: 7, 7\r\n"));
  ASSERT_EQ(same.state, State::Complete) << same.why;
  EXPECT_EQ(same.contentLength, 7u);
}

TEST(RequestHead, AnyTransferEncodingIs400) {
  expectRefused(request("Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"), 400);
  expectRefused(request("Transfer-Encoding: chunked\r\nContent-Length: 2\r\n"), 400);
  expectRefused(request("Transfer-Encoding: chunked\r\n"), 400);
  expectRefused(request("transfer-encoding: gzip, chunked\r\n"), 400);
  expectRefused(request("Transfer-Encoding: identity\r\n"), 400);
}

TEST(RequestHead, WhitespaceBeforeAColonIs400) {
  expectRefused(request("Content-Length : 5\r\n"), 400);
  expectRefused(request("Content-Length\t: 5\r\n"), 400);
  expectRefused(request("Transfer-Encoding : chunked\r\n"), 400);
  expectRefused(request(" Content-Length: 5\r\n"), 400);
}

TEST(RequestHead, ObsFoldIs400) {
  expectRefused(request("X-Note: a\r\n b\r\n"), 400);
  expectRefused(request("X-Note: a\r\n\tContent-Length: 5\r\n"), 400);
}

TEST(RequestHead, BareLineEndingsAre400AsSoonAsSeen) {
  expectRefused("GET / HTTP/1.1\nHost: x\n\n", 400);
  expectRefused("GET / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\n", 400);
  expectRefused("GET / HTTP/1.1\r\nHost: x\rContent-Length: 5\r\n\r\n", 400);
  // Not yet complete, already wrong.
  expectRefused("GET / HTTP/1.1\nHo", 400);
  // A CR at the very end may still be followed by its LF.
  EXPECT_EQ(readRequestHead("GET / HTTP/1.1\r").state, State::Incomplete);
}

TEST(RequestHead, MalformedFieldsAre400) {
  expectRefused(request("NoColonHere\r\n"), 400);
  expectRefused(request(": empty name\r\n"), 400);
  expectRefused(request("X-Bad(name): 1\r\n"), 400);
  expectRefused(request(std::string("X-Nul: a\0b\r\n", 12)), 400);
  expectRefused(request("X-Del: a\x7f\r\n"), 400);
  // obs-text and tabs in a value are allowed.
  EXPECT_EQ(readRequestHead(request("X-Text: caf\xc3\xa9\tok\r\n")).state, State::Complete);
}

TEST(RequestHead, MalformedRequestLinesAre400) {
  for (const char* line :
       {"GET  / HTTP/1.1", "GET / HTTP/1.1 ", "GET /", "GET / HTTP/2.0", "GET / http/1.1",
        "GET / HTTP/1.2", "PRI * HTTP/2.0", "G(T / HTTP/1.1", "GET /a\x01 HTTP/1.1",
        " GET / HTTP/1.1", "GET /caf\xc3\xa9 HTTP/1.1", ""}) {
    expectRefused(std::string(line) + "\r\nHost: x\r\n\r\n", 400);
  }
}

TEST(RequestHead, LongRequestLineIs414) {
  const std::string path = "/" + std::string(kMaxRequestLineBytes, 'a');
  expectRefused("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n", 414);
  // Known before the line ends.
  expectRefused("GET " + path, 414);
  std::string args = "/health?a";
  for (std::size_t i = 0; i < kMaxQueryArguments; ++i) args += "&a";
  expectRefused("GET " + args + " HTTP/1.1\r\n\r\n", 414);
}

TEST(RequestHead, LargeHeadIs431) {
  const std::string pad = "X-Pad: " + std::string(kMaxRequestHeadBytes, 'p') + "\r\n";
  expectRefused(request(pad, "GET /health HTTP/1.1"), 431);
  // Known before the head ends.
  expectRefused(request(pad, "GET /health HTTP/1.1").substr(0, kMaxRequestHeadBytes), 431);
  std::string many;
  for (std::size_t i = 0; i < kMaxHeaderFields; ++i) many += "X-A: 1\r\n";
  expectRefused(request(many), 431);
  // Just under the limit is served.
  const std::string under = "X-Pad: " + std::string(7000, 'p') + "\r\n";
  EXPECT_EQ(readRequestHead(request(under)).state, State::Complete);
}

TEST(RequestHead, UpgradeNeedsBothFields) {
  const std::string ws = "Upgrade: websocket\r\n";
  EXPECT_TRUE(readRequestHead(request(ws + "Connection: keep-alive, Upgrade\r\n")).upgrade);
  EXPECT_TRUE(readRequestHead(request(ws + "connection: upgrade\r\n")).upgrade);
  EXPECT_FALSE(readRequestHead(request(ws + "Connection: keep-alive\r\n")).upgrade);
  EXPECT_FALSE(readRequestHead(request("Connection: Upgrade\r\n")).upgrade);
}

TEST(ContentLength, AsLwsJoinsRepeatedFields) {
  EXPECT_EQ(parseContentLength("0"), 0u);
  EXPECT_EQ(parseContentLength("  42 "), 42u);
  EXPECT_EQ(parseContentLength("42, 42"), 42u);
  EXPECT_EQ(parseContentLength("42,42"), 42u);
  EXPECT_FALSE(parseContentLength("42, 43"));
  EXPECT_FALSE(parseContentLength("abc"));
  EXPECT_FALSE(parseContentLength(""));
  EXPECT_FALSE(parseContentLength("4 2"));
}

}  // namespace
}  // namespace mesh::relay
