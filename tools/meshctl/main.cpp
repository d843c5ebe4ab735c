// meshctl: a relay from the command line, for people and scripts.
//
//   meshctl register --mesh-id ID --name NAME [--secret S]
//   meshctl health
//   meshctl discover
//   meshctl send TARGET JSON
//   meshctl broadcast JSON
//   meshctl listen
//
// Every subcommand takes --url (or MESH_GATEWAY_URL); the ones that connect
// take --mesh-id/--secret (or MESH_ID/MESH_SECRET). Results go to stdout as
// JSON, problems to stderr as one line; the exit code says which kind.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <CLI/CLI.hpp>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mesh/client/client.h"
#include "mesh/client/http.h"
#include "mesh/proto/codec.h"

namespace {

namespace mc = mesh::client;
using std::chrono::milliseconds;

// Exit codes scripts can rely on; also listed in --help.
enum Exit : int {
  kOk = 0,
  kFailed = 1,       // anything not covered below
  kUsage = 2,        // bad flags or arguments, invalid JSON argument
  kUnreachable = 3,  // the relay did not answer
  kRefused = 4,      // bad credentials, or meshId registered with another secret
  kOffline = 5,      // send: the target mesh is not online
  kTimeout = 6,      // the relay did not answer in time
};

constexpr const char* kExitCodes =
    "Exit codes: 0 ok, 1 other failure, 2 usage or invalid JSON, 3 relay unreachable,\n"
    "4 bad credentials or registration conflict, 5 target offline, 6 timeout.";

int exitFor(mc::Status status) {
  switch (status) {
    case mc::Status::Ok:
      return kOk;
    case mc::Status::InvalidArgument:
      return kUsage;
    case mc::Status::ConnectionFailed:
      return kUnreachable;
    case mc::Status::AuthFailed:
    case mc::Status::RegistrationConflict:
      return kRefused;
    case mc::Status::Timeout:
      return kTimeout;
    default:
      return kFailed;
  }
}

int fail(const mc::Error& error) {
  std::cerr << "meshctl: " << mc::statusText(error.status) << ": " << error.message << "\n";
  return exitFor(error.status);
}

struct Settings {
  std::string url = "ws://localhost:4000/gateway";
  std::string httpUrl;
  std::string meshId;
  std::string secret;
  std::string name;
  std::string target;
  std::string json;
  double timeoutSeconds = 10;

  [[nodiscard]] milliseconds timeout() const {
    return milliseconds(static_cast<long long>(timeoutSeconds * 1000));
  }
  [[nodiscard]] mc::Result<std::string> httpBase() const {
    if (!httpUrl.empty()) return httpUrl;
    return mc::httpBaseFromGatewayUrl(url);
  }
};

// One JSON value per line, whatever whitespace the relay's sender used.
std::string oneLine(const std::string& json) {
  if (json.find('\n') == std::string::npos && json.find('\r') == std::string::npos) return json;
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
  if (doc.HasParseError()) return json;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

bool isJsonObject(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  return !doc.HasParseError() && doc.IsObject();
}

std::string jsonString(std::string_view text) {
  std::string out;
  mesh::proto::appendJsonString(out, text);
  return out;
}

// A connected client for the subcommands that talk over the gateway: waits
// for the first outcome of connecting and turns it into an error a script
// can act on, rather than retrying forever like a long-lived node.
class Session {
 public:
  mc::Options options;

  mc::Result<> open(const Settings& s) {
    options.meshId = s.meshId;
    options.secret = s.secret;
    options.gatewayUrl = s.url;
    options.httpBaseUrl = s.httpUrl;
    options.outboxPath = ":memory:";  // a one-shot tool keeps nothing
    options.durableSync = false;
    options.retryOffline = false;
    options.connectTimeout = s.timeout();
    options.callbacks.onStateChange = [this](mc::ConnectionState state, const std::string& why) {
      std::lock_guard lock(mu_);
      if (state == mc::ConnectionState::WaitingToReconnect && !firstFailure_) firstFailure_ = why;
      cv_.notify_all();
    };
    if (s.meshId.empty() || s.secret.empty()) {
      return mc::Error{mc::Status::InvalidArgument,
                       "--mesh-id and --secret (or MESH_ID and MESH_SECRET) are required"};
    }
    auto started = mc::Client::start(options);
    if (!started) return started.error();
    client_ = std::move(started).value();

    const auto deadline = std::chrono::steady_clock::now() + s.timeout();
    for (;;) {
      const auto state = client_->state();
      if (state == mc::ConnectionState::Connected) return mc::success();
      if (state == mc::ConnectionState::Failed) {
        return client_->waitConnected(milliseconds(0)).error();
      }
      std::unique_lock lock(mu_);
      if (firstFailure_) return mc::Error{mc::Status::ConnectionFailed, *firstFailure_};
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        return mc::Error{mc::Status::Timeout, "no answer from the relay at " + s.url};
      }
    }
  }

  mc::Client& client() { return *client_; }

  void close() {
    if (client_) client_->stop();
  }

 private:
  std::mutex mu_;  // guards firstFailure_
  std::condition_variable cv_;
  std::optional<std::string> firstFailure_;
  std::unique_ptr<mc::Client> client_;
};

int runRegister(const Settings& s) {
  auto base = s.httpBase();
  if (!base) return fail(base.error());
  const std::string secret = s.secret.empty() ? mc::generateSecret() : s.secret;
  auto done = mc::registerMesh(base.value(), s.meshId, secret, s.name, s.timeout());
  if (!done) return fail(done.error());
  std::cerr << (done.value().created ? "registered " : "already registered, name updated: ")
            << s.meshId << "\n";
  std::cout << "MESH_ID=" << s.meshId << "\nMESH_SECRET=" << secret
            << "\nMESH_GATEWAY_URL=" << s.url << std::endl;
  return kOk;
}

int runHealth(const Settings& s) {
  auto base = s.httpBase();
  if (!base) return fail(base.error());
  auto health = mc::checkHealth(base.value(), s.timeout());
  if (!health) return fail(health.error());
  std::cout << oneLine(health.value().body) << std::endl;
  return kOk;
}

int runDiscover(const Settings& s) {
  Session session;
  if (auto opened = session.open(s); !opened) return fail(opened.error());
  auto found = session.client().discover(s.timeout());
  session.close();
  if (!found) return fail(found.error());
  std::string out = "[";
  for (const auto& i : found.value()) {
    if (out.size() > 1) out += ',';
    out += "{\"meshId\":" + jsonString(i.meshId) + ",\"name\":" + jsonString(i.name) +
           ",\"publicRooms\":[";
    for (std::size_t r = 0; r < i.publicRooms.size(); ++r) {
      out += (r > 0 ? "," : "") + jsonString(i.publicRooms[r]);
    }
    out += "]}";
  }
  out += "]";
  std::cout << out << std::endl;
  return kOk;
}

// send and broadcast: one message, then wait for the relay's verdict.
int runSend(const Settings& s, bool toAll) {
  if (!isJsonObject(s.json)) {
    std::cerr << "meshctl: invalid argument: the payload must be a JSON object: " << s.json << "\n";
    return kUsage;
  }
  if (!toAll && !mesh::proto::isValidMeshId(s.target)) {
    std::cerr << "meshctl: invalid argument: not a meshId: '" << s.target << "'\n";
    return kUsage;
  }
  std::mutex mu;
  std::condition_variable cv;
  std::optional<mc::DeliveryReport> report;
  Session session;
  session.options.callbacks.onDelivery = [&](const mc::DeliveryReport& r) {
    std::lock_guard lock(mu);
    report = r;
    cv.notify_all();
  };
  if (auto opened = session.open(s); !opened) return fail(opened.error());
  auto id = toAll ? session.client().broadcast(s.json) : session.client().relay(s.target, s.json);
  if (!id) {
    session.close();
    return fail(id.error());
  }
  {
    std::unique_lock lock(mu);
    cv.wait_for(lock, s.timeout(), [&] { return report.has_value(); });
  }
  session.close();
  std::lock_guard lock(mu);
  if (!report) {
    return fail(mc::Error{mc::Status::Timeout, "the relay did not acknowledge the message"});
  }
  using Outcome = mc::DeliveryReport::Outcome;
  if (report->outcome == Outcome::GaveUp) {
    std::cerr << "meshctl: target offline: '" << s.target << "' is not connected to the relay\n";
    return kOffline;
  }
  if (report->outcome == Outcome::Rejected) {
    std::cerr << "meshctl: relay refused the message: " << report->reason << "\n";
    return kFailed;
  }
  std::cout << "{\"id\":" << jsonString(report->id)
            << ",\"status\":\"delivered\",\"recipients\":" << report->recipients << "}"
            << std::endl;
  return kOk;
}

int runListen(const Settings& s, const sigset_t& signals) {
  Session session;
  session.options.callbacks.onFrame = [](const std::string& frame) {
    std::fputs((oneLine(frame) + "\n").c_str(), stdout);
    std::fflush(stdout);
  };
  session.options.callbacks.onError = [](const mc::Error& e) {
    std::cerr << "meshctl: " << mc::statusText(e.status) << ": " << e.message << std::endl;
  };
  if (auto opened = session.open(s); !opened) return fail(opened.error());
  // Runs until Ctrl-C or SIGTERM; the client reconnects by itself meanwhile.
  int sig = 0;
  sigwait(&signals, &sig);
  session.close();
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before any thread starts, so only sigwait in `listen` sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  Settings s;
  CLI::App app{"meshctl: register meshes and talk to a mesh relay"};
  app.footer(kExitCodes);
  app.require_subcommand(1);

  // Several subcommands bind one variable, which CLI11's envname does not
  // handle (an unused subcommand's env value can win over the flag), so the
  // environment is read by hand after parsing, for flags not given.
  struct EnvFallback {
    CLI::App* command;
    CLI::Option* option;
    const char* env;
    std::string* target;
  };
  std::vector<EnvFallback> fallbacks;
  auto addUrl = [&s, &fallbacks](CLI::App* cmd) {
    fallbacks.push_back(
        {cmd,
         cmd->add_option("--url", s.url,
                         "Relay gateway URL (ws:// or wss://); env MESH_GATEWAY_URL")
             ->capture_default_str(),
         "MESH_GATEWAY_URL", &s.url});
    fallbacks.push_back({cmd,
                         cmd->add_option("--http-url", s.httpUrl,
                                         "Relay HTTP base URL (default: from --url); env "
                                         "MESH_HTTP_URL"),
                         "MESH_HTTP_URL", &s.httpUrl});
    cmd->add_option("--timeout", s.timeoutSeconds, "Seconds to wait for the relay")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
  };
  auto addCredentials = [&s, &fallbacks](CLI::App* cmd) {
    fallbacks.push_back({cmd, cmd->add_option("--mesh-id", s.meshId, "This mesh's id; env MESH_ID"),
                         "MESH_ID", &s.meshId});
    fallbacks.push_back(
        {cmd, cmd->add_option("--secret", s.secret, "This mesh's secret; env MESH_SECRET"),
         "MESH_SECRET", &s.secret});
  };

  auto* reg = app.add_subcommand("register", "Register a mesh; prints the env lines for its node");
  addUrl(reg);
  reg->add_option("--mesh-id", s.meshId, "Mesh id: [A-Za-z0-9._-]{1,64}")->required();
  reg->add_option("--name", s.name, "Display name")->required();
  reg->add_option("--secret", s.secret, "Secret (default: a strong random one)");

  auto* health = app.add_subcommand("health", "Print the relay's /health answer");
  addUrl(health);

  auto* discover = app.add_subcommand("discover", "List the meshes online");
  addUrl(discover);
  addCredentials(discover);

  auto* send = app.add_subcommand("send", "Relay one JSON payload to one mesh");
  addUrl(send);
  addCredentials(send);
  send->add_option("target", s.target, "Target meshId")->required();
  send->add_option("json", s.json, "Payload: a JSON object")->required();

  auto* broadcast = app.add_subcommand("broadcast", "Send one JSON payload to every other mesh");
  addUrl(broadcast);
  addCredentials(broadcast);
  broadcast->add_option("json", s.json, "Payload: a JSON object")->required();

  auto* listen = app.add_subcommand("listen", "Print every frame from the relay, one per line");
  addUrl(listen);
  addCredentials(listen);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kOk : kUsage;
  }
  for (const auto& f : fallbacks) {
    const char* value = std::getenv(f.env);
    if (f.command->parsed() && f.option->count() == 0 && value != nullptr && *value != '\0') {
      *f.target = value;
    }
  }

  try {
    if (reg->parsed()) return runRegister(s);
    if (health->parsed()) return runHealth(s);
    if (discover->parsed()) return runDiscover(s);
    if (send->parsed()) return runSend(s, false);
    if (broadcast->parsed()) return runSend(s, true);
    if (listen->parsed()) return runListen(s, signals);
  } catch (const std::exception& e) {
    std::cerr << "meshctl: " << e.what() << "\n";
    return kFailed;
  }
  return kUsage;
}
