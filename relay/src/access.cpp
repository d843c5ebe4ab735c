// Which client a connection stands for, on the loop thread. The headers are
// read while lws still has them: in FILTER_PROTOCOL_CONNECTION, ESTABLISHED
// or HTTP, never later.
#include "log.h"
#include "server_impl.h"

namespace mesh::relay {
namespace {

std::string tokenHeader(lws* wsi, lws_token_indexes token) {
  const int len = lws_hdr_total_length(wsi, token);
  if (len <= 0 || len > 4096) return {};
  std::string value(static_cast<std::size_t>(len) + 1, '\0');
  if (lws_hdr_copy(wsi, value.data(), len + 1, token) < 0) return {};
  value.resize(static_cast<std::size_t>(len));
  return value;
}

std::string customHeader(lws* wsi, const char* nameWithColon) {
  const int nameLen = static_cast<int>(std::char_traits<char>::length(nameWithColon));
  const int len = lws_hdr_custom_length(wsi, nameWithColon, nameLen);
  if (len <= 0 || len > 256) return {};
  std::string value(static_cast<std::size_t>(len) + 1, '\0');
  if (lws_hdr_custom_copy(wsi, value.data(), len + 1, nameWithColon, nameLen) < 0) return {};
  value.resize(static_cast<std::size_t>(len));
  return value;
}

}  // namespace

std::string Server::Impl::clientAddress(lws* wsi) const {
  const std::string peer = peerAddress(wsi);
  if (!netPolicy.trustsProxies()) return netPolicy.clientAddress(peer, {}, {});
  // lws stores header names it does not know in lower case.
  return netPolicy.clientAddress(peer, tokenHeader(wsi, WSI_TOKEN_X_FORWARDED_FOR),
                                 customHeader(wsi, "fly-client-ip:"));
}

void Server::Impl::refuse(RefuseReason reason) {
  ++counters.connectionsRefused;
  ++counters.refusedBy[static_cast<std::size_t>(reason)];
}

}  // namespace mesh::relay
