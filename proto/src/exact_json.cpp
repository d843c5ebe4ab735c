#include "exact_json.h"

#include "mesh/proto/codec.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace mesh::proto::detail {
namespace {

// Characters a number token can hold; a token is a maximal run of them.
bool isNumberChar(char c) {
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// RFC 8259 section 6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool isValidNumber(std::string_view t) {
  std::size_t i = 0;
  auto digits = [&t, &i] {
    const std::size_t from = i;
    while (i < t.size() && isDigit(t[i])) ++i;
    return i > from;
  };
  if (i < t.size() && t[i] == '-') ++i;
  if (i < t.size() && t[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == t.size();
}

constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag;

// Feeds the document, except that a number becomes a string value that
// points at the number's own bytes in the input instead of a copy. Every
// real string is copied into the document's allocator, so a string value
// whose characters lie inside the input is a number and nothing else.
class Builder {
 public:
  using Ch = char;

  Builder(rapidjson::Document& doc, const rapidjson::MemoryStream& in, std::string_view text,
          int maxDepth)
      : doc_(doc), in_(in), text_(text), maxDepth_(maxDepth) {}

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  // With kParseNumbersAsStringsFlag every number arrives as RawNumber.
  bool Int(int) { return false; }
  bool Uint(unsigned) { return false; }
  bool Int64(std::int64_t) { return false; }
  bool Uint64(std::uint64_t) { return false; }
  bool Double(double) { return false; }

  bool RawNumber(const Ch*, rapidjson::SizeType n, bool) {
    // The stream stands just past what the reader saw of the number: all of
    // it, or the 0 that neutralizeNumbers() left at its start.
    const std::size_t seenEnd = in_.Tell();
    if (n == 0 || n > seenEnd || seenEnd > text_.size()) return false;
    const std::size_t start = seenEnd - n;
    const std::size_t end = numberTokenEnd(text_, start);
    const auto length = static_cast<rapidjson::SizeType>(end - start);
    return doc_.String(text_.data() + start, length, false);
  }
  bool String(const Ch* s, rapidjson::SizeType n, bool) { return doc_.String(s, n, true); }
  bool Key(const Ch* s, rapidjson::SizeType n, bool) { return doc_.Key(s, n, true); }

  bool StartObject() { return enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType members) {
    --depth_;
    return doc_.EndObject(members);
  }
  bool StartArray() { return enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType elements) {
    --depth_;
    return doc_.EndArray(elements);
  }

 private:
  bool enter() { return ++depth_ <= maxDepth_; }

  rapidjson::Document& doc_;
  const rapidjson::MemoryStream& in_;
  std::string_view text_;
  int maxDepth_;
  int depth_ = 0;
};

// Document::Populate runs this and takes the one root value it built. The
// reader sees the text with its numbers neutralized; the builder takes each
// number from the original at the same offset.
struct Generator {
  std::string_view text;
  int maxDepth;

  bool operator()(rapidjson::Document& doc) const {
    std::string safe(text);
    neutralizeNumbers(safe, safe.size());
    rapidjson::MemoryStream in(safe.data(), safe.size());
    Builder builder(doc, in, text, maxDepth);
    rapidjson::Reader reader;
    if (reader.Parse<kParseFlags>(in, builder).IsError()) return false;
    // The reader takes a NUL byte for the end of input; text after one is
    // trailing garbage.
    return in.Tell() == text.size();
  }
};

}  // namespace

void neutralizeNumbers(std::string& text, std::size_t length) {
  bool inString = false;
  std::size_t i = 0;
  while (i < length) {
    const char c = text[i];
    if (inString) {
      if (c == '\\') {
        i += 2;
        continue;
      }
      if (c == '"') inString = false;
      ++i;
    } else if (c == '"') {
      inString = true;
      ++i;
    } else if (isNumberChar(c)) {
      const std::size_t end = numberTokenEnd(std::string_view(text).substr(0, length), i);
      if (isValidNumber(std::string_view(text).substr(i, end - i))) {
        text[i] = '0';
        for (std::size_t k = i + 1; k < end; ++k) text[k] = ' ';
      }
      i = end;
    } else {
      ++i;
    }
  }
}

std::size_t numberTokenEnd(std::string_view text, std::size_t start) {
  std::size_t end = start;
  while (end < text.size() && isNumberChar(text[end])) ++end;
  return end;
}

bool ExactJson::parse(std::string_view text, int maxDepth) {
  text_ = text;
  doc_.SetNull();
  Generator generator{text, maxDepth};
  bool ok = false;
  // Populate only moves a root into the document when the generator
  // succeeded; otherwise the document stays null.
  auto run = [&generator, &ok](rapidjson::Document& doc) {
    ok = generator(doc);
    return ok;
  };
  doc_.Populate(run);
  return ok;
}

bool ExactJson::isNumber(const Value& v) const {
  if (!v.IsString() || text_.empty()) return false;
  const std::less<const char*> before;
  const char* p = v.GetString();
  return !before(p, text_.data()) && before(p, text_.data() + text_.size());
}

void ExactJson::write(Writer& w, const Value& v) const {
  switch (v.GetType()) {
    case rapidjson::kNullType:
      w.Null();
      return;
    case rapidjson::kFalseType:
      w.Bool(false);
      return;
    case rapidjson::kTrueType:
      w.Bool(true);
      return;
    case rapidjson::kStringType:
      if (isNumber(v)) {
        w.RawValue(v.GetString(), v.GetStringLength(), rapidjson::kNumberType);
      } else {
        w.String(v.GetString(), v.GetStringLength());
      }
      return;
    case rapidjson::kObjectType:
      w.StartObject();
      for (const auto& m : v.GetObject()) {
        w.Key(m.name.GetString(), m.name.GetStringLength());
        write(w, m.value);
      }
      w.EndObject();
      return;
    case rapidjson::kArrayType:
      w.StartArray();
      for (const auto& e : v.GetArray()) write(w, e);
      w.EndArray();
      return;
    case rapidjson::kNumberType:
      // parse() never makes one; a value built by hand is written as is.
      v.Accept(w);
      return;
  }
}

std::string ExactJson::serialize(const Value& v) const {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  write(w, v);
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace mesh::proto::detail

namespace mesh::proto {

std::optional<std::string> compactJson(std::string_view text, int maxDepth) {
  detail::ExactJson json;
  if (!json.parse(text, maxDepth)) return std::nullopt;
  return json.serialize(json.root());
}

}  // namespace mesh::proto
