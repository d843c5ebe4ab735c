// JSON numbers that a double cannot hold as written, or that broke
// RapidJSON 1.1's full-precision parser (0E193 and friends). Anything that
// forwards a payload must pass each of them on byte for byte.
#pragma once

#include <string>
#include <vector>

namespace mesh::test {

inline std::vector<std::string> hostileNumbers() {
  std::vector<std::string> n = {
      "0E193",
      "0e193",
      "0E-193",
      "0.0e400",
      "-0",
      "-0.0",
      "0.000",
      "1e400",
      "-1e400",
      "1e-400",
      "1E+308",
      "1.7976931348623159e308",
      "4.9e-324",
      "2.4703282292062327e-324",
      "1e2147483648",
      "1e-2147483649",
      "18446744073709551616",
      "-9223372036854775809",
      "9007199254740993",
      "0.1000000000000000055511151231257827021181583404541015625",
  };
  n.push_back(std::string(400, '7'));
  n.push_back("-" + std::string(400, '9') + "." + std::string(400, '9') + "e-99");
  n.push_back("0." + std::string(400, '0') + "1");
  n.push_back("1" + std::string(399, '0') + "e-399");
  return n;
}

// {"n":[...every hostile number...]} exactly as it must arrive.
inline std::string hostileNumbersArray() {
  std::string out = "[";
  for (const auto& n : hostileNumbers()) {
    if (out.size() > 1) out += ',';
    out += n;
  }
  return out + "]";
}

}  // namespace mesh::test
