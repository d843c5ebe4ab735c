# Writes a C++ header holding the status page's files as byte arrays, so the
# relay serves them from its binary (nothing read from disk at run time).
# cmake -DOUT=header.h -DFILES="name=path|name=path" -P embed.cmake
set(content "// Generated from relay/web by embed.cmake; do not edit.\n#pragma once\n\n#include <string_view>\n\nnamespace mesh::relay::web {\n")
string(REPLACE "|" ";" FILES "${FILES}")
foreach(entry IN LISTS FILES)
  string(REPLACE "=" ";" pair "${entry}")
  list(GET pair 0 name)
  list(GET pair 1 path)
  file(READ "${path}" hex HEX)
  string(LENGTH "${hex}" hexLength)
  math(EXPR size "${hexLength} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
  string(APPEND content "inline constexpr char ${name}Bytes[] = {${bytes}'\\0'};\n")
  string(APPEND content "inline constexpr std::string_view ${name}{${name}Bytes, ${size}};\n")
endforeach()
string(APPEND content "}  // namespace mesh::relay::web\n")
file(WRITE "${OUT}.tmp" "${content}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
