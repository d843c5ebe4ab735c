// The authorize hook (--authorize-url): before a mesh is accepted the relay
// POSTs {meshId, ip, host, token?} to an operator's service, whose answer
// decides. Requests run on a thread of their own through libcurl's multi
// interface, many at once, each with a timeout; the answer is handed to a
// callback on that thread (the server posts it to its loop). Any failure
// (timeout, no connection, a status other than 2xx, an answer that is not
// the expected JSON) is an Unavailable answer: the hook fails closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace mesh::relay {

struct AuthorizeRequest {
  std::string meshId;
  std::string ip;
  std::string host;                  // the upgrade request's Host header
  std::optional<std::string> token;  // the JWT the mesh proved itself with
};

struct AuthorizeAnswer {
  enum class Outcome { Allow, Deny, Unavailable };
  // Why an answer is Unavailable (the label of the metric, too).
  enum class Failure { None, Timeout, Unreachable, Status, BadAnswer };
  Outcome outcome = Outcome::Unavailable;
  Failure failure = Failure::None;
  std::string meshId;                // Allow: the mesh to accept, if the hook named one
  std::string claimsJson;            // Allow: a JSON object as compact text, or empty
  std::string reason;                // Deny: the hook's reason, if any
  std::optional<double> ttlSeconds;  // Allow: how long the answer may be cached
  std::string problem;               // Unavailable: what went wrong, for the log
  double seconds = 0;                // how long the call took
};

[[nodiscard]] std::string_view authorizeFailureName(AuthorizeAnswer::Failure f);

// The request body sent to the hook.
[[nodiscard]] std::string authorizeRequestBody(const AuthorizeRequest& req);
// Reads the hook's answer: `status` is the HTTP status, `body` its body.
[[nodiscard]] AuthorizeAnswer parseAuthorizeAnswer(long status, std::string_view body);

class AuthorizeClient {
 public:
  using Done = std::function<void(AuthorizeAnswer)>;
  // `token`, when not empty, goes out as Authorization: Bearer <token>.
  AuthorizeClient(std::string url, std::string token, double timeoutSeconds);
  // Stops the thread; calls still running are abandoned without an answer.
  ~AuthorizeClient();
  AuthorizeClient(const AuthorizeClient&) = delete;
  AuthorizeClient& operator=(const AuthorizeClient&) = delete;

  // Any thread. `done` runs on the client's thread, exactly once unless the
  // client is destroyed first.
  void submit(const AuthorizeRequest& req, Done done);

  struct Call;  // one request under way (authorize.cpp)

 private:
  void run();
  void start(std::unique_ptr<Call> call);
  void finish(Call& call, int curlCode, long status);

  std::string url_;
  std::string token_;
  long timeoutMs_;
  void* multi_ = nullptr;  // CURLM
  std::mutex mutex_;
  std::vector<std::unique_ptr<Call>> incoming_;               // guarded by mutex_
  bool stopping_ = false;                                     // guarded by mutex_
  std::unordered_map<void*, std::unique_ptr<Call>> running_;  // CURL* -> call; thread only
  std::thread thread_;
};

// Positive answers of the hook, kept for their TTL. Bounded: when full,
// expired entries go first, then the one that expires soonest.
class AuthorizeCache {
 public:
  struct Entry {
    std::string meshId;
    std::string claimsJson;
    std::int64_t expiresUs = 0;
  };
  explicit AuthorizeCache(std::size_t capacity) : capacity_(capacity) {}
  [[nodiscard]] static std::string keyOf(const AuthorizeRequest& req);
  [[nodiscard]] const Entry* find(const std::string& key, std::int64_t nowUs);
  void put(std::string key, Entry entry, std::int64_t nowUs);
  [[nodiscard]] std::size_t size() const { return entries_.size(); }

 private:
  std::size_t capacity_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace mesh::relay
