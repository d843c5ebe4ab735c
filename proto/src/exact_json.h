// JSON whose numbers are kept as the exact text they were written as.
// Payloads are forwarded, never computed on, so converting their numbers to
// double and back would only lose information (1e-400, 400-digit mantissas,
// -0) and, with RapidJSON 1.1's full-precision parser, reach undefined
// behaviour on input such as 0E193. Nothing here converts a number.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace mesh::proto::detail {

// RapidJSON 1.1 refuses valid numbers that a double cannot hold (an integer
// part of more than ~308 digits, an exponent above ~308) with
// kParseErrorNumberTooBig, even when asked for numbers as strings. This
// rewrites, in the first `length` bytes of `text`, every valid number token
// outside strings as "0" followed by spaces up to the token's length. The
// result is valid JSON exactly when the input was, and every value starts
// and ends at the same offset, so raw slices and positions taken from a
// parse of the rewritten text apply to the original unchanged.
void neutralizeNumbers(std::string& text, std::size_t length);

// End of the number token starting at `start` in `text`.
[[nodiscard]] std::size_t numberTokenEnd(std::string_view text, std::size_t start);

class ExactJson {
 public:
  using Value = rapidjson::Value;
  using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

  // Parses `text` (which must outlive this object: numbers point into it).
  // False on invalid JSON, on trailing text, and on nesting deeper than
  // `maxDepth` containers, which bounds the recursion of write().
  [[nodiscard]] bool parse(std::string_view text, int maxDepth);

  [[nodiscard]] const Value& root() const { return doc_; }

  // True for a number; its source text is then v.GetString().
  [[nodiscard]] bool isNumber(const Value& v) const;
  // True for a string (a number is not one).
  [[nodiscard]] bool isString(const Value& v) const { return v.IsString() && !isNumber(v); }

  // Writes `v` compactly; numbers go out as they came in.
  void write(Writer& w, const Value& v) const;
  [[nodiscard]] std::string serialize(const Value& v) const;

 private:
  std::string_view text_;
  rapidjson::Document doc_;
};

}  // namespace mesh::proto::detail
