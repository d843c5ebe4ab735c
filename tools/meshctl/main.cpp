// meshctl: a relay from the command line, for people and scripts.
//
//   meshctl register --mesh-id ID --name NAME [--secret S]
//   meshctl health
//   meshctl discover
//   meshctl send TARGET JSON
//   meshctl broadcast JSON
//   meshctl listen   (frames on stdout, resume tokens left out; connection
//                     news on stderr; exits 4 or 8 when the relay refuses the
//                     credentials or another connection takes the mesh over)
//   meshctl rotate-own --mesh-id ID --secret OLD [--new-secret NEW]
//
// With the relay's admin token (--admin-token or ADMIN_TOKEN):
//   meshctl meshes [--json]
//   meshctl mesh ID
//   meshctl delete ID
//   meshctl rotate ID [--secret NEW]
//   meshctl recent ID [--json]
//
// Every subcommand takes --url (or MESH_GATEWAY_URL; a comma-separated list
// of relays is tried in order) and --proxy (or MESH_PROXY; by default the
// HTTPS_PROXY / HTTP_PROXY / NO_PROXY variables apply); register and the ones
// that connect take --mesh-id/--secret (or MESH_ID/MESH_SECRET), the ones
// that connect also --token (MESH_TOKEN) and --auth-header
// (MESH_AUTH_HEADER). Results go to stdout as
// JSON (a table for `meshes`, env lines for new secrets), problems to stderr
// as one line; the exit code says which kind. The admin token is never
// printed.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
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
  kRefused = 4,      // bad credentials (secret or admin token), or meshId taken
  kOffline = 5,      // send: the target mesh is not online
  kTimeout = 6,      // the relay did not answer in time
  kNotFound = 7,     // admin: no such mesh
  kReplaced = 8,     // listen: another connection authenticated as this mesh
};

constexpr const char* kExitCodes =
    "Exit codes: 0 ok, 1 other failure, 2 usage or invalid JSON, 3 relay unreachable,\n"
    "4 bad credentials (secret or admin token) or registration conflict, 5 target offline,\n"
    "6 timeout, 7 no such mesh, 8 listen: another connection took over this mesh.";

constexpr std::size_t kMinSecretBytes = 16;
constexpr std::size_t kMaxSecretBytes = 256;

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
    case mc::Status::SessionReplaced:
      return kReplaced;
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
  std::string caFile;  // PEM CAs trusted besides the system store
  std::string proxy;   // Options::proxy: empty reads the environment
  std::string meshId;
  std::string secret;
  std::string token;       // a JWT instead of (or beside) the secret
  std::string tokenFile;   // a file a rotator keeps a fresh JWT in
  std::string authHeader;  // credentials on the upgrade: a flag word
  std::string name;
  std::string target;
  std::string json;
  std::string adminToken;
  std::string newSecret;
  bool asJson = false;
  double timeoutSeconds = 10;

  [[nodiscard]] milliseconds timeout() const {
    return milliseconds(static_cast<long long>(timeoutSeconds * 1000));
  }
  [[nodiscard]] std::vector<std::string> gatewayUrls() const {
    mc::Options o;
    o.gatewayUrl = url;
    return mc::gatewayUrlList(o);
  }
  // The HTTP bases to try, in order: --http-url, or one per gateway URL.
  [[nodiscard]] mc::Result<std::vector<std::string>> httpBases() const {
    if (!httpUrl.empty()) return std::vector<std::string>{httpUrl};
    std::vector<std::string> out;
    for (const auto& one : gatewayUrls()) {
      auto base = mc::httpBaseFromGatewayUrl(one);
      if (!base) return base.error();
      out.push_back(base.value());
    }
    if (out.empty()) return mc::Error{mc::Status::InvalidArgument, "--url is empty"};
    return out;
  }
};

// `call(base)` at the first relay of the list that answers: a relay that
// cannot be reached hands over to the next, any answer ends the search.
template <class Call>
auto atFirstReachable(const Settings& s, Call call) -> decltype(call(std::string())) {
  auto bases = s.httpBases();
  if (!bases) return bases.error();
  std::optional<decltype(call(std::string()))> last;
  for (const auto& base : bases.value()) {
    last.emplace(call(base));
    if (last->ok() || last->status() != mc::Status::ConnectionFailed) break;
  }
  return std::move(*last);
}

// One JSON value per line, whatever whitespace the relay's sender used, and
// every number exactly as the sender wrote it.
std::string oneLine(const std::string& json) {
  if (json.find('\n') == std::string::npos && json.find('\r') == std::string::npos) return json;
  constexpr int kMaxDepth = 1024;
  return mesh::proto::compactJson(json, kMaxDepth).value_or(json);
}

bool isJsonObject(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  return !doc.HasParseError() && doc.IsObject();
}

// 1/true/yes/on and 0/false/no/off, in any case; nullopt for anything else.
std::optional<bool> parseFlag(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  return std::nullopt;
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
    options.token = s.token;
    options.tokenFile = s.tokenFile;
    options.gatewayUrl = s.url;
    options.httpBaseUrl = s.httpUrl;
    options.caFile = s.caFile;
    options.proxy = s.proxy;
    if (!s.authHeader.empty()) {
      const auto flag = parseFlag(s.authHeader);
      if (!flag) {
        return mc::Error{mc::Status::InvalidArgument,
                         "--auth-header (MESH_AUTH_HEADER) must be 1, true, yes, on or 0, false, "
                         "no, off"};
      }
      options.authHeader = *flag;
    }
    // Every relay of a list gets its chance before the first failure counts.
    const std::size_t relays = std::max<std::size_t>(1, mc::gatewayUrlList(options).size());
    options.outboxPath = ":memory:";  // a one-shot tool keeps nothing
    options.durableSync = false;
    options.retryOffline = false;
    options.connectTimeout = s.timeout();
    // A subcommand's own hook (listen reports reconnects) runs as well.
    options.callbacks.onStateChange = [this, relays, also = options.callbacks.onStateChange](
                                          mc::ConnectionState state, const std::string& why) {
      {
        std::lock_guard lock(mu_);
        if (state == mc::ConnectionState::WaitingToReconnect && !firstFailure_ &&
            ++failures_ >= relays) {
          firstFailure_ = why;
        }
      }
      cv_.notify_all();
      if (also) also(state, why);
    };
    // With a token file a refused token is reported, not final (the file
    // may be renewed); waiting for the first connection gives up on it.
    options.callbacks.onError = [this, also = options.callbacks.onError](const mc::Error& e) {
      if (e.status == mc::Status::AuthFailed) {
        {
          std::lock_guard lock(mu_);
          if (!refused_) refused_ = e;
        }
        cv_.notify_all();
      }
      if (also) also(e);
    };
    if (s.meshId.empty() ||
        (s.secret.empty() && s.token.empty() && s.tokenFile.empty() && !options.authHeader)) {
      return mc::Error{mc::Status::InvalidArgument,
                       "--mesh-id and --secret, --token or --token-file (or MESH_ID and "
                       "MESH_SECRET, MESH_TOKEN or MESH_TOKEN_FILE) are required"};
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
      if (refused_) return *refused_;
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
  std::mutex mu_;  // guards firstFailure_ and refused_
  std::condition_variable cv_;
  std::optional<std::string> firstFailure_;
  std::optional<mc::Error> refused_;  // an AuthFailed report while connecting
  std::size_t failures_ = 0;
  std::unique_ptr<mc::Client> client_;
};

int runRegister(const Settings& s) {
  if (s.meshId.empty()) {
    std::cerr << "meshctl: invalid argument: --mesh-id (or MESH_ID) is required\n";
    return kUsage;
  }
  const std::string secret = s.secret.empty() ? mc::generateSecret() : s.secret;
  auto done = atFirstReachable(s, [&](const std::string& base) {
    return mc::registerMesh(base, s.meshId, secret, s.name, s.timeout(), s.caFile, s.proxy);
  });
  if (!done) return fail(done.error());
  std::cerr << (done.value().created ? "registered " : "already registered, name updated: ")
            << s.meshId << "\n";
  std::cout << "MESH_ID=" << s.meshId << "\nMESH_SECRET=" << secret
            << "\nMESH_GATEWAY_URL=" << s.url << std::endl;
  return kOk;
}

int runHealth(const Settings& s) {
  auto health = atFirstReachable(s, [&](const std::string& base) {
    return mc::checkHealth(base, s.timeout(), s.caFile, s.proxy);
  });
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

// A frame as listen prints it: one line, without the resume token a
// gateway_auth_ok carries (a credential, which has no place in a transcript).
std::string printable(const std::string& frame) {
  if (frame.find("resumeToken") == std::string::npos) return oneLine(frame);
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(frame.data(), frame.size());
  if (doc.HasParseError() || !doc.IsObject()) return oneLine(frame);
  const auto type = doc.FindMember("type");
  if (type == doc.MemberEnd() || !type->value.IsString() ||
      std::string_view(type->value.GetString()) != "gateway_auth_ok") {
    return oneLine(frame);
  }
  doc.RemoveMember("resumeToken");
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// Whether a failure ends `listen`: reported once, when it exits.
bool endsListening(mc::Status status) {
  return status == mc::Status::AuthFailed || status == mc::Status::SessionReplaced;
}

int runListen(const Settings& s, const sigset_t& signals) {
  Session session;
  session.options.callbacks.onFrame = [](const std::string& frame) {
    std::fputs((printable(frame) + "\n").c_str(), stdout);
    std::fflush(stdout);
  };
  // With a token file an AuthFailed report is not final: say it now.
  session.options.callbacks.onError = [renewable = !s.tokenFile.empty()](const mc::Error& e) {
    if (endsListening(e.status) && !renewable) return;
    std::cerr << "meshctl: " << mc::statusText(e.status) << ": " << e.message << std::endl;
  };
  // Never disconnected and silent: every lost connection and every
  // reconnect is said on stderr.
  session.options.callbacks.onStateChange = [](mc::ConnectionState state, const std::string& why) {
    if (state == mc::ConnectionState::WaitingToReconnect) {
      std::cerr << "meshctl: disconnected (" << why << "); reconnecting" << std::endl;
    } else if (state == mc::ConnectionState::Connected) {
      std::cerr << "meshctl: connected: " << why << std::endl;
    }
  };
  if (auto opened = session.open(s); !opened) return fail(opened.error());
  // Runs until Ctrl-C or SIGTERM, or until the client gives up for good
  // (credentials refused, session taken over); it reconnects by itself
  // otherwise.
  const timespec tick{0, 200'000'000};
  for (;;) {
    if (sigtimedwait(&signals, nullptr, &tick) > 0) {
      session.close();
      return kOk;
    }
    if (session.client().state() != mc::ConnectionState::Failed) continue;
    auto outcome = session.client().waitConnected(milliseconds(0));
    session.close();
    const mc::Error why =
        outcome ? mc::Error{mc::Status::ConnectionFailed, "the client stopped"} : outcome.error();
    std::cerr << "meshctl: listen stopped: " << mc::statusText(why.status) << ": " << why.message
              << "\n";
    return exitFor(why.status);
  }
}

// --- HTTP routes beyond /register and /health: the admin API and
// /rotate-secret.

int usageError(const std::string& message) {
  std::cerr << "meshctl: invalid argument: " << message << "\n";
  return kUsage;
}

// The checks every command that names a mesh makes before calling the relay;
// a meshId outside the pattern could also change the route it lands on.
std::optional<int> checkMeshId(const std::string& meshId) {
  if (mesh::proto::isValidMeshId(meshId)) return std::nullopt;
  return usageError("not a meshId (want [A-Za-z0-9._-]{1,64}): '" + meshId + "'");
}

std::optional<int> checkNewSecret(const std::string& secret, const char* flag) {
  if (secret.size() >= kMinSecretBytes && secret.size() <= kMaxSecretBytes) return std::nullopt;
  return usageError(std::string(flag) + " must be 16 to 256 bytes");
}

std::optional<int> checkAdminToken(const Settings& s) {
  if (!s.adminToken.empty()) return std::nullopt;
  return usageError("--admin-token (or ADMIN_TOKEN) is required");
}

// The relay's "error" text, or the body as it came.
std::string reasonOf(const mc::HttpAnswer& answer) {
  rapidjson::Document doc;
  // Iterative: a hostile body nested a million deep must not overflow the stack.
  doc.Parse<rapidjson::kParseIterativeFlag>(answer.body.data(), answer.body.size());
  if (!doc.HasParseError() && doc.IsObject()) {
    const auto it = doc.FindMember("error");
    if (it != doc.MemberEnd() && it->value.IsString()) return it->value.GetString();
  }
  return answer.body.empty() ? "(empty body)" : oneLine(answer.body);
}

// Turns an answer other than 200 into a message and an exit code. `request`
// is "METHOD /path"; `byAdmin` says whose credentials a 401 refused.
int failAnswer(const mc::HttpAnswer& answer, const std::string& request, const std::string& meshId,
               bool byAdmin) {
  const std::string said =
      request + " answered " + std::to_string(answer.status) + ": " + reasonOf(answer);
  switch (answer.status) {
    case 401:
      std::cerr << "meshctl: bad credentials: "
                << (byAdmin ? "the relay refused the admin token (check --admin-token or "
                              "ADMIN_TOKEN, and that the relay has one set)"
                            : "wrong secret or unknown meshId '" + meshId + "'")
                << " (" << said << ")\n";
      return kRefused;
    case 404:
      std::cerr << "meshctl: not found: mesh '" << meshId << "' (" << said << ")\n";
      return kNotFound;
    case 400:
      std::cerr << "meshctl: invalid argument: " << said << "\n";
      return kUsage;
    case 429:
      std::cerr << "meshctl: rate limited: " << said << "; try again later\n";
      return kFailed;
    default:
      std::cerr << "meshctl: " << mc::statusText(mc::Status::HttpError) << ": " << said << "\n";
      return kFailed;
  }
}

// One request to the relay: the body of its 200 answer, or nothing once the
// failure is printed and its exit code put in `failure`. `byAdmin`: the
// request carries the admin token.
std::optional<std::string> askRelay(const Settings& s, const std::string& method,
                                    const std::string& path, const std::string& body, bool byAdmin,
                                    int& failure) {
  auto answer = atFirstReachable(s, [&](std::string url) {
    while (!url.empty() && url.back() == '/') url.pop_back();
    return mc::httpRequest(method, url + path, body, byAdmin ? s.adminToken : std::string(),
                           s.timeout(), s.caFile, s.proxy);
  });
  if (!answer) {
    failure = fail(answer.error());
    return std::nullopt;
  }
  if (answer.value().status != 200) {
    failure = failAnswer(answer.value(), method + " " + path, s.meshId, byAdmin);
    return std::nullopt;
  }
  return std::move(answer).value().body;
}

int failProtocol(const std::string& request) {
  return fail(mc::Error{mc::Status::ProtocolError, request + " answered JSON of another shape"});
}

// A table cell: one line, control characters shown as '?'.
std::string cell(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

// Width on a terminal, near enough: UTF-8 code points.
std::size_t widthOf(const std::string& text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string stringField(const rapidjson::Value& object, const char* name, const char* ifNull) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd() || it->value.IsNull()) return ifNull;
  if (it->value.IsString()) return cell(it->value.GetString());
  if (it->value.IsBool()) return it->value.GetBool() ? "yes" : "no";
  return "?";
}

void printRows(const std::vector<std::vector<std::string>>& rows);

void printTable(const rapidjson::Value& meshes) {
  std::vector<std::vector<std::string>> rows{{"MESH ID", "NAME", "ONLINE", "CREATED", "LAST SEEN"}};
  for (const auto& m : meshes.GetArray()) {
    rows.push_back({stringField(m, "meshId", ""), stringField(m, "name", ""),
                    stringField(m, "online", "?"), stringField(m, "createdAt", "-"),
                    stringField(m, "lastSeen", "never")});
  }
  printRows(rows);
}

void printRows(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], widthOf(row[i]));
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - widthOf(row[i]) + 2, ' ');
    }
    std::cout << line << "\n";
  }
  std::cout << std::flush;
}

int runMeshes(const Settings& s) {
  if (auto bad = checkAdminToken(s)) return *bad;
  const std::string request = "GET /meshes";
  int failure = kOk;
  const auto body = askRelay(s, "GET", "/meshes", "", true, failure);
  if (!body) return failure;
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(body->data(), body->size());
  if (doc.HasParseError() || !doc.IsObject()) return failProtocol(request);
  const auto meshes = doc.FindMember("meshes");
  if (meshes == doc.MemberEnd() || !meshes->value.IsArray()) return failProtocol(request);
  for (const auto& m : meshes->value.GetArray()) {
    if (!m.IsObject()) return failProtocol(request);
  }
  if (s.asJson) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    meshes->value.Accept(writer);
    std::cout << std::string_view(buffer.GetString(), buffer.GetSize()) << std::endl;
  } else {
    printTable(meshes->value);
  }
  return kOk;
}

// A flight recorder record's other party: the target of a relay, the sender
// of a delivered frame, the address of an auth, or a broadcast's count.
std::string partyOf(const rapidjson::Value& r) {
  if (r.HasMember("target")) return "to " + stringField(r, "target", "");
  if (r.HasMember("from")) return "from " + stringField(r, "from", "");
  if (r.HasMember("address")) return stringField(r, "address", "");
  const auto n = r.FindMember("recipients");
  if (n != r.MemberEnd() && n->value.IsUint())
    return std::to_string(n->value.GetUint()) + " meshes";
  return "-";
}

int runRecent(const Settings& s) {
  if (auto bad = checkMeshId(s.meshId)) return *bad;
  if (auto bad = checkAdminToken(s)) return *bad;
  const std::string path = "/meshes/" + s.meshId + "/recent";
  int failure = kOk;
  const auto body = askRelay(s, "GET", path, "", true, failure);
  if (!body) return failure;
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(body->data(), body->size());
  if (doc.HasParseError() || !doc.IsObject()) return failProtocol("GET " + path);
  const auto records = doc.FindMember("records");
  if (records == doc.MemberEnd() || !records->value.IsArray()) return failProtocol("GET " + path);
  if (s.asJson) {
    std::cout << oneLine(*body) << std::endl;
    return kOk;
  }
  std::vector<std::vector<std::string>> rows{
      {"TIME", "DIR", "TYPE", "ID", "SIZE", "PEER", "OUTCOME"}};
  for (const auto& r : records->value.GetArray()) {
    if (!r.IsObject()) return failProtocol("GET " + path);
    const auto size = r.FindMember("size");
    std::string id = stringField(r, "id", "-");
    if (r.HasMember("truncated")) id += "~";
    rows.push_back({stringField(r, "time", "?"), stringField(r, "direction", "?"),
                    stringField(r, "type", "?"), id,
                    size != r.MemberEnd() && size->value.IsUint()
                        ? std::to_string(size->value.GetUint())
                        : "-",
                    partyOf(r), stringField(r, "outcome", "?")});
  }
  if (rows.size() == 1) {
    std::cerr << "no frames recorded for " << s.meshId << "\n";
    return kOk;
  }
  printRows(rows);
  return kOk;
}

int runMesh(const Settings& s) {
  if (auto bad = checkMeshId(s.meshId)) return *bad;
  if (auto bad = checkAdminToken(s)) return *bad;
  const std::string path = "/meshes/" + s.meshId;
  int failure = kOk;
  const auto body = askRelay(s, "GET", path, "", true, failure);
  if (!body) return failure;
  if (!isJsonObject(*body)) return failProtocol("GET " + path);
  std::cout << oneLine(*body) << std::endl;
  return kOk;
}

int runDelete(const Settings& s) {
  if (auto bad = checkMeshId(s.meshId)) return *bad;
  if (auto bad = checkAdminToken(s)) return *bad;
  int failure = kOk;
  if (!askRelay(s, "DELETE", "/meshes/" + s.meshId, "", true, failure)) return failure;
  std::cerr << "deleted " << s.meshId
            << "; an open session was closed and its resume token revoked\n";
  return kOk;
}

// After a rotation: what the mesh's node needs, as `register` prints it.
int printRotated(const Settings& s, const std::string& secret) {
  std::cerr << "secret rotated for " << s.meshId
            << "; an open session was closed, restart its node with the new secret\n";
  std::cout << "MESH_ID=" << s.meshId << "\nMESH_SECRET=" << secret
            << "\nMESH_GATEWAY_URL=" << s.url << std::endl;
  return kOk;
}

int runRotate(const Settings& s) {
  if (auto bad = checkMeshId(s.meshId)) return *bad;
  if (!s.newSecret.empty()) {
    if (auto bad = checkNewSecret(s.newSecret, "--secret")) return *bad;
  }
  if (auto bad = checkAdminToken(s)) return *bad;
  // The secret is chosen here rather than by the relay, so every rotation
  // takes one path and the secret is as strong as the one `register` makes.
  const std::string secret = s.newSecret.empty() ? mc::generateSecret() : s.newSecret;
  int failure = kOk;
  if (!askRelay(s, "POST", "/meshes/" + s.meshId + "/secret",
                "{\"secret\":" + jsonString(secret) + "}", true, failure)) {
    return failure;
  }
  return printRotated(s, secret);
}

int runRotateOwn(const Settings& s) {
  if (s.meshId.empty() || s.secret.empty()) {
    return usageError("--mesh-id and --secret (or MESH_ID and MESH_SECRET) are required");
  }
  if (auto bad = checkMeshId(s.meshId)) return *bad;
  if (!s.newSecret.empty()) {
    if (auto bad = checkNewSecret(s.newSecret, "--new-secret")) return *bad;
  }
  const std::string secret = s.newSecret.empty() ? mc::generateSecret() : s.newSecret;
  const std::string body = "{\"meshId\":" + jsonString(s.meshId) +
                           ",\"secret\":" + jsonString(s.secret) +
                           ",\"newSecret\":" + jsonString(secret) + "}";
  int failure = kOk;
  if (!askRelay(s, "POST", "/rotate-secret", body, false, failure)) return failure;
  return printRotated(s, secret);
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
    fallbacks.push_back(
        {cmd,
         cmd->add_option("--ca-file", s.caFile,
                         "PEM file of CAs to trust besides the system store (wss://, "
                         "https://); env MESH_CA_FILE"),
         "MESH_CA_FILE", &s.caFile});
    fallbacks.push_back(
        {cmd,
         cmd->add_option("--proxy", s.proxy,
                         "HTTP proxy URL http://[user:password@]host:port, or none (default: "
                         "HTTPS_PROXY / HTTP_PROXY / NO_PROXY); env MESH_PROXY"),
         "MESH_PROXY", &s.proxy});
    cmd->add_option("--timeout", s.timeoutSeconds, "Seconds to wait for the relay")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
  };
  auto addCredentials = [&s, &fallbacks](CLI::App* cmd, bool connects = true) {
    fallbacks.push_back({cmd, cmd->add_option("--mesh-id", s.meshId, "This mesh's id; env MESH_ID"),
                         "MESH_ID", &s.meshId});
    fallbacks.push_back(
        {cmd, cmd->add_option("--secret", s.secret, "This mesh's secret; env MESH_SECRET"),
         "MESH_SECRET", &s.secret});
    if (!connects) return;
    fallbacks.push_back(
        {cmd,
         cmd->add_option("--token", s.token,
                         "A signed token (JWT) the relay accepts, instead of the secret; env "
                         "MESH_TOKEN"),
         "MESH_TOKEN", &s.token});
    fallbacks.push_back(
        {cmd,
         cmd->add_option("--token-file", s.tokenFile,
                         "A file holding the token, read again for every connection and "
                         "renewal (gateway_reauth); env MESH_TOKEN_FILE"),
         "MESH_TOKEN_FILE", &s.tokenFile});
    fallbacks.push_back(
        {cmd,
         cmd->add_option("--auth-header", s.authHeader,
                         "1: send the credentials on the upgrade request (Authorization), or "
                         "none when a proxy adds them; env MESH_AUTH_HEADER"),
         "MESH_AUTH_HEADER", &s.authHeader});
  };

  auto* reg = app.add_subcommand("register", "Register a mesh; prints the env lines for its node");
  addUrl(reg);
  fallbacks.push_back(
      {reg, reg->add_option("--mesh-id", s.meshId, "Mesh id: [A-Za-z0-9._-]{1,64}; env MESH_ID"),
       "MESH_ID", &s.meshId});
  reg->add_option("--name", s.name, "Display name")->required();
  fallbacks.push_back({reg,
                       reg->add_option("--secret", s.secret,
                                       "Secret (default: a strong random one); env MESH_SECRET"),
                       "MESH_SECRET", &s.secret});

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

  auto* rotateOwn = app.add_subcommand(
      "rotate-own", "Set a new secret for this mesh by proving the current one; prints env lines");
  addUrl(rotateOwn);
  addCredentials(rotateOwn, false);
  rotateOwn->add_option("--new-secret", s.newSecret, "New secret (default: a strong random one)");

  // The admin API. The token is read from the environment like the other
  // settings; a flag is visible to other users of the machine in `ps`.
  auto addAdminToken = [&s, &fallbacks](CLI::App* cmd) {
    fallbacks.push_back({cmd,
                         cmd->add_option("--admin-token", s.adminToken,
                                         "The relay's admin token; env ADMIN_TOKEN (safer than "
                                         "the flag, which other users can see in ps)"),
                         "ADMIN_TOKEN", &s.adminToken});
  };
  auto* meshes = app.add_subcommand("meshes", "Admin: list registered meshes, online or not");
  addUrl(meshes);
  addAdminToken(meshes);
  meshes->add_flag("--json", s.asJson, "Print the list as one JSON array instead of a table");

  auto* meshInfo = app.add_subcommand("mesh", "Admin: print one registered mesh as JSON");
  addUrl(meshInfo);
  addAdminToken(meshInfo);
  meshInfo->add_option("id", s.meshId, "The meshId")->required();

  auto* remove = app.add_subcommand(
      "delete", "Admin: delete a mesh; closes its session and revokes its resume token");
  addUrl(remove);
  addAdminToken(remove);
  remove->add_option("id", s.meshId, "The meshId")->required();

  auto* recent = app.add_subcommand(
      "recent", "Admin: the mesh's last frames from the relay's flight recorder, as a table");
  addUrl(recent);
  addAdminToken(recent);
  recent->add_option("id", s.meshId, "The meshId")->required();
  recent->add_flag("--json", s.asJson, "Print the relay's JSON answer instead of a table");

  auto* rotate = app.add_subcommand(
      "rotate", "Admin: set a new secret for a mesh, closing its session; prints env lines");
  addUrl(rotate);
  addAdminToken(rotate);
  rotate->add_option("id", s.meshId, "The meshId")->required();
  rotate->add_option("--secret", s.newSecret, "New secret (default: a strong random one)");

  // CLI11 would only say that a subcommand is required.
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    const std::function<bool(CLI::App*)> every = [](CLI::App*) { return true; };
    for (const CLI::App* cmd : app.get_subcommands(every)) {
      known += (known.empty() ? "" : ", ") + cmd->get_name();
      found = found || cmd->get_name() == argv[1];
    }
    if (!found) {
      std::cerr << "meshctl: invalid argument: unknown subcommand '" << argv[1]
                << "' (one of: " << known << ")\n";
      return kUsage;
    }
  }
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
    if (rotateOwn->parsed()) return runRotateOwn(s);
    if (meshes->parsed()) return runMeshes(s);
    if (meshInfo->parsed()) return runMesh(s);
    if (remove->parsed()) return runDelete(s);
    if (rotate->parsed()) return runRotate(s);
    if (recent->parsed()) return runRecent(s);
  } catch (const std::exception& e) {
    std::cerr << "meshctl: " << e.what() << "\n";
    return kFailed;
  }
  return kUsage;
}
