#include "http_head.h"

#include <algorithm>
#include <array>
#include <limits>

namespace mesh::relay {
namespace {

// RFC 9110 5.6.2: the characters of a token (methods, field names).
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return kTchar[static_cast<unsigned char>(c)]; });
}

// RFC 9110 5.5: a field value is visible characters, spaces, tabs and
// obs-text; never a control character.
bool isFieldValue(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b == '\t' || (b >= 0x20 && b != 0x7f);
  });
}

// A request-target as this relay serves it: printable ASCII, no spaces.
bool isTarget(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b > 0x20 && b < 0x7f;
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

char lowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// `a` equals `lower` (a lower-case literal), ignoring ASCII case.
bool equalsIgnoreCase(std::string_view a, std::string_view lower) {
  return a.size() == lower.size() && std::equal(a.begin(), a.end(), lower.begin(),
                                                [](char x, char y) { return lowerAscii(x) == y; });
}

// True if the comma-separated list `value` holds `token` (case-insensitive).
bool listHas(std::string_view value, std::string_view token) {
  while (true) {
    const std::size_t comma = value.find(',');
    if (equalsIgnoreCase(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) return false;
    value.remove_prefix(comma + 1);
  }
}

RequestHead refused(int status, std::string_view why) {
  RequestHead h;
  h.state = RequestHead::State::Refused;
  h.status = status;
  h.why = why;
  return h;
}

}  // namespace

std::optional<std::uint64_t> parseContentLength(std::string_view value) {
  std::optional<std::uint64_t> length;
  while (true) {
    const std::size_t comma = value.find(',');
    const std::string_view item = trim(value.substr(0, comma));
    if (item.empty()) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : item) {
      if (c < '0' || c > '9') return std::nullopt;
      const auto digit = static_cast<std::uint64_t>(c - '0');
      if (n > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
      n = n * 10 + digit;
    }
    if (length && *length != n) return std::nullopt;
    length = n;
    if (comma == std::string_view::npos) return length;
    value.remove_prefix(comma + 1);
  }
}

RequestHead readRequestHead(std::string_view bytes) {
  const std::size_t blank = bytes.find("\r\n\r\n");
  const std::string_view seen =
      blank == std::string_view::npos ? bytes : bytes.substr(0, blank + 4);
  // Lines end in CRLF and nothing else: a server that ends them at a bare
  // LF (as lws does) and one that does not would split the head apart
  // differently.
  for (std::size_t i = 0; i < seen.size(); ++i) {
    if (seen[i] == '\n' && (i == 0 || seen[i - 1] != '\r')) return refused(400, "bare LF");
    if (seen[i] == '\r' && i + 1 < seen.size() && seen[i + 1] != '\n') {
      return refused(400, "bare CR");
    }
  }
  const std::size_t lineEnd = seen.find("\r\n");
  if ((lineEnd == std::string_view::npos ? seen.size() : lineEnd) > kMaxRequestLineBytes) {
    return refused(414, "request line too long");
  }
  if (blank == std::string_view::npos) {
    if (bytes.size() >= kMaxRequestHeadBytes) return refused(431, "request head too large");
    return {};
  }
  if (seen.size() > kMaxRequestHeadBytes) return refused(431, "request head too large");

  RequestHead h;
  // request-line = method SP request-target SP HTTP-version
  std::string_view line = seen.substr(0, lineEnd);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return refused(400, "malformed request line");
  h.method = line.substr(0, sp1);
  h.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!isToken(h.method)) return refused(400, "malformed method");
  if (!isTarget(h.target)) return refused(400, "malformed request target");
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return refused(400, "unsupported version");
  if (const std::size_t query = h.target.find('?'); query != std::string_view::npos) {
    const auto args = static_cast<std::size_t>(
        std::count(h.target.begin() + static_cast<std::ptrdiff_t>(query), h.target.end(), '&'));
    if (args + 1 > kMaxQueryArguments) return refused(414, "too many query arguments");
  }

  // field-line = field-name ":" OWS field-value OWS
  std::string_view fields = seen.substr(lineEnd + 2, seen.size() - lineEnd - 4);
  std::size_t count = 0;
  std::optional<std::uint64_t> contentLength;
  bool upgradeField = false;
  bool connectionUpgrade = false;
  while (!fields.empty()) {
    const std::size_t eol = fields.find("\r\n");
    const std::string_view field = fields.substr(0, eol);
    fields.remove_prefix(eol == std::string_view::npos ? fields.size() : eol + 2);
    if (++count > kMaxHeaderFields) return refused(431, "too many header fields");
    if (field.front() == ' ' || field.front() == '\t') return refused(400, "obs-fold");
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos) return refused(400, "header field without a colon");
    const std::string_view name = field.substr(0, colon);
    const std::string_view value = trim(field.substr(colon + 1));
    // Whitespace before the colon is refused too (RFC 9112 5.1).
    if (!isToken(name)) return refused(400, "malformed header field name");
    if (!isFieldValue(value)) return refused(400, "control character in a header field");
    if (equalsIgnoreCase(name, "content-length")) {
      const auto n = parseContentLength(value);
      if (!n) return refused(400, "invalid Content-Length");
      if (contentLength && *contentLength != *n) return refused(400, "conflicting Content-Length");
      contentLength = n;
    } else if (equalsIgnoreCase(name, "transfer-encoding")) {
      // No transfer coding is implemented, so the length of a body sent
      // with one cannot be known (and with a Content-Length beside it, it
      // is ambiguous).
      return refused(400, "Transfer-Encoding is not supported");
    } else if (equalsIgnoreCase(name, "upgrade")) {
      upgradeField = upgradeField || !value.empty();
    } else if (equalsIgnoreCase(name, "connection")) {
      connectionUpgrade = connectionUpgrade || listHas(value, "upgrade");
    }
  }
  h.state = RequestHead::State::Complete;
  h.length = seen.size();
  h.contentLength = contentLength.value_or(0);
  h.upgrade = upgradeField && connectionUpgrade;
  return h;
}

}  // namespace mesh::relay
