#include "nats_options.h"

#include <nats/nats.h>

#include <stdexcept>
#include <vector>

namespace mesh::relay {

namespace {

void check(natsStatus s, const char* what) {
  if (s != NATS_OK) {
    throw std::runtime_error(std::string("NATS: ") + what + ": " + natsStatus_GetText(s));
  }
}

}  // namespace

void NatsOptionsDeleter::operator()(__natsOptions* opts) const {
  natsOptions_Destroy(opts);
}

void NatsConnectionDeleter::operator()(__natsConnection* nc) const {
  natsConnection_Destroy(nc);
}

NatsOptionsPtr makeNatsOptions(const Config& config, const std::string& name) {
  if (config.natsUrls.empty()) throw std::runtime_error("NATS: no server URL (--nats)");
  natsOptions* raw = nullptr;
  check(natsOptions_Create(&raw), "options");
  NatsOptionsPtr opts(raw);

  std::vector<const char*> servers;
  servers.reserve(config.natsUrls.size());
  for (const auto& url : config.natsUrls) servers.push_back(url.c_str());
  check(natsOptions_SetServers(raw, servers.data(), static_cast<int>(servers.size())),
        "server URLs (--nats)");
  check(natsOptions_SetName(raw, name.c_str()), "connection name");
  check(natsOptions_SetSendAsap(raw, true), "send at once");
  check(natsOptions_UseGlobalMessageDelivery(raw, true), "global delivery pool");
  check(natsOptions_SetAllowReconnect(raw, true), "reconnect");
  check(natsOptions_SetMaxReconnect(raw, -1), "reconnect forever");
  check(natsOptions_SetReconnectWait(raw, 250), "reconnect wait");
  check(natsOptions_SetReconnectJitter(raw, 100, 500), "reconnect jitter");
  check(natsOptions_SetReconnectBufSize(raw, 8 * 1024 * 1024), "reconnect buffer");
  check(natsOptions_SetTimeout(raw, 2000), "connect timeout");
  check(natsOptions_SetPingInterval(raw, 2000), "ping interval");
  check(natsOptions_SetMaxPingsOut(raw, 2), "pings out");
  check(natsOptions_SetRetryOnFailedConnect(raw, true, nullptr, nullptr), "retry at start");
  if (!config.natsCredsPath.empty()) {
    check(natsOptions_SetUserCredentialsFromFiles(raw, config.natsCredsPath.c_str(), nullptr),
          "credentials file (--nats-creds)");
  }
  if (!config.natsCaPath.empty()) {
    check(natsOptions_LoadCATrustedCertificates(raw, config.natsCaPath.c_str()),
          "CA file (--nats-ca)");
  }
  return opts;
}

std::string redactNatsUrl(const std::string& url) {
  const auto scheme = url.find("://");
  const auto start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto at = url.find('@', start);
  if (at == std::string::npos) return url;
  const auto colon = url.find(':', start);
  if (colon == std::string::npos || colon > at)
    return url.substr(0, start) + "***" + url.substr(at);
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace mesh::relay
