// Links against the installed package and runs a client briefly: start,
// queue a message while the relay is unreachable, stop.
#include <cstdio>

#include "mesh/client/client.h"
#include "mesh/client/http.h"

int main() {
  mesh::client::Options o;
  o.meshId = "consumer";
  o.secret = mesh::client::generateSecret();
  o.gatewayUrl = "ws://127.0.0.1:1/gateway";
  o.outboxPath = ":memory:";
  auto started = mesh::client::Client::start(o);
  if (!started) {
    std::fprintf(stderr, "start: %s\n", started.error().message.c_str());
    return 1;
  }
  auto id = started.value()->broadcast(R"({"type":"hello"})");
  if (!id) {
    std::fprintf(stderr, "broadcast: %s\n", id.error().message.c_str());
    return 1;
  }
  started.value()->stop();
  return started.value()->pendingCount() == 1 ? 0 : 1;
}
