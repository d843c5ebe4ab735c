// A mesh node for tests: a Client plus everything its callbacks reported,
// with waits on conditions (never sleeps).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mesh/client/client.h"

namespace mesh::test {

inline constexpr std::chrono::seconds kWait{20};

struct Seen {
  std::vector<client::IncomingMessage> messages;
  std::vector<client::DeliveryReport> deliveries;
  std::vector<client::Error> errors;
  std::vector<client::PresenceEvent> presence;
  std::vector<client::RemoteParticipants> participants;  // the latest list
  std::vector<client::ConnectionState> states;
  std::vector<std::string> reasons;  // with each state change
};

class Node {
 public:
  // Options to start from: identity, the relay's URL, an outbox in `dir`,
  // quick backoffs so tests do not wait long.
  static client::Options options(const std::string& meshId, const std::string& secret,
                                 const std::string& gatewayUrl, const std::string& outboxPath) {
    client::Options o;
    o.meshId = meshId;
    o.secret = secret;
    o.gatewayUrl = gatewayUrl;
    o.outboxPath = outboxPath;
    o.durableSync = false;
    o.reconnectMin = std::chrono::milliseconds(50);
    o.reconnectMax = std::chrono::milliseconds(400);
    o.retryMin = std::chrono::milliseconds(50);
    o.retryMax = std::chrono::milliseconds(300);
    o.connectTimeout = std::chrono::seconds(5);
    // Straight to the test's relay on loopback, whatever proxy the machine
    // is configured with; the proxy tests set their own.
    o.proxy = "none";
    return o;
  }

  explicit Node(client::Options o) {
    o.callbacks.onMessage = [this](const client::IncomingMessage& m) {
      update([&] { seen_.messages.push_back(m); });
    };
    o.callbacks.onDelivery = [this](const client::DeliveryReport& r) {
      update([&] { seen_.deliveries.push_back(r); });
    };
    o.callbacks.onError = [this](const client::Error& e) {
      update([&] { seen_.errors.push_back(e); });
    };
    o.callbacks.onPresence = [this](const client::PresenceEvent& p) {
      update([&] { seen_.presence.push_back(p); });
    };
    o.callbacks.onParticipants = [this](const std::vector<client::RemoteParticipants>& r) {
      update([&] { seen_.participants = r; });
    };
    o.callbacks.onStateChange = [this](client::ConnectionState s, const std::string& why) {
      update([&] {
        seen_.states.push_back(s);
        seen_.reasons.push_back(why);
      });
    };
    auto started = client::Client::start(o);
    if (!started) throw std::runtime_error("start: " + started.error().message);
    client_ = std::move(started).value();
  }

  ~Node() { client_->stop(); }

  client::Client& operator*() { return *client_; }
  client::Client* operator->() { return client_.get(); }

  // Waits until `done(seen)` holds; true if it did within `timeout`.
  bool waitFor(const std::function<bool(const Seen&)>& done,
               std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done(seen_); });
  }

  Seen snapshot() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  void update(const std::function<void()>& change) {
    {
      std::lock_guard lock(mu_);
      change();
    }
    cv_.notify_all();
  }

  std::mutex mu_;  // guards seen_; callbacks write it on the callback thread
  std::condition_variable cv_;
  Seen seen_;
  std::unique_ptr<client::Client> client_;
};

// How often each payload "n" arrived, from messages shaped {"n":N,...}.
std::map<int, int> countByN(const std::vector<client::IncomingMessage>& messages);

}  // namespace mesh::test
