// Splitting ws://, wss://, http:// and https:// URLs into their parts.
#pragma once

#include <optional>
#include <string>

namespace mesh::client::detail {

struct Url {
  std::string scheme;  // lower case: ws, wss, http or https
  std::string host;    // without IPv6 brackets
  int port = 0;        // the scheme's default when the URL names none
  std::string path;    // starts with '/'; "/" when the URL has none
  [[nodiscard]] bool secure() const { return scheme == "wss" || scheme == "https"; }
  // "host:port", brackets around IPv6, for the Host header.
  [[nodiscard]] std::string hostHeader() const;
};

// nullopt for another scheme, an empty host, a bad port, or user info.
[[nodiscard]] std::optional<Url> parseUrl(const std::string& text);

}  // namespace mesh::client::detail
