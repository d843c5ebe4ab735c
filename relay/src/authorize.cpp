#include "authorize.h"

#include <curl/curl.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sodium.h>

#include <algorithm>
#include <stdexcept>

#include "mesh/proto/codec.h"

namespace mesh::relay {
namespace {

// An answer is a few fields; anything this large is not one.
constexpr std::size_t kMaxAnswerBytes = 64 * 1024;
// Claims are shown in the admin API and kept per session: keep them small.
constexpr std::size_t kMaxClaimsBytes = 8 * 1024;

AuthorizeAnswer unavailable(AuthorizeAnswer::Failure why, std::string problem) {
  AuthorizeAnswer a;
  a.outcome = AuthorizeAnswer::Outcome::Unavailable;
  a.failure = why;
  a.problem = std::move(problem);
  return a;
}

std::size_t onBody(char* data, std::size_t size, std::size_t count, void* user);

}  // namespace

struct AuthorizeClient::Call {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  std::string response;
  bool tooLarge = false;
  Done done;
  std::chrono::steady_clock::time_point started;
  ~Call() {
    if (easy) curl_easy_cleanup(easy);
    if (headers) curl_slist_free_all(headers);
  }
};

namespace {

std::size_t onBody(char* data, std::size_t size, std::size_t count, void* user) {
  auto* call = static_cast<AuthorizeClient::Call*>(user);
  const std::size_t n = size * count;
  if (call->response.size() + n > kMaxAnswerBytes) {
    call->tooLarge = true;
    return 0;  // ends the transfer
  }
  call->response.append(data, n);
  return n;
}

}  // namespace

std::string_view authorizeFailureName(AuthorizeAnswer::Failure f) {
  switch (f) {
    case AuthorizeAnswer::Failure::None:
      return "none";
    case AuthorizeAnswer::Failure::Timeout:
      return "timeout";
    case AuthorizeAnswer::Failure::Unreachable:
      return "unreachable";
    case AuthorizeAnswer::Failure::Status:
      return "status";
    case AuthorizeAnswer::Failure::BadAnswer:
      return "bad_answer";
  }
  return "none";
}

std::string authorizeRequestBody(const AuthorizeRequest& req) {
  std::string out = "{\"meshId\":";
  proto::appendJsonString(out, req.meshId);
  out += ",\"ip\":";
  proto::appendJsonString(out, req.ip);
  out += ",\"host\":";
  proto::appendJsonString(out, req.host);
  if (req.token) {
    out += ",\"token\":";
    proto::appendJsonString(out, *req.token);
  }
  out += '}';
  return out;
}

AuthorizeAnswer parseAuthorizeAnswer(long status, std::string_view body) {
  using Failure = AuthorizeAnswer::Failure;
  if (status < 200 || status > 299) {
    return unavailable(Failure::Status, "HTTP status " + std::to_string(status));
  }
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return unavailable(Failure::BadAnswer, "the answer is not a JSON object");
  }
  auto allow = doc.FindMember("allow");
  if (allow == doc.MemberEnd() || !allow->value.IsBool()) {
    return unavailable(Failure::BadAnswer, "the answer has no boolean \"allow\"");
  }
  AuthorizeAnswer a;
  if (auto it = doc.FindMember("reason"); it != doc.MemberEnd()) {
    if (!it->value.IsString()) return unavailable(Failure::BadAnswer, "\"reason\" is not a string");
    a.reason.assign(it->value.GetString(), it->value.GetStringLength());
  }
  if (!allow->value.GetBool()) {
    a.outcome = AuthorizeAnswer::Outcome::Deny;
    return a;
  }
  a.outcome = AuthorizeAnswer::Outcome::Allow;
  if (auto it = doc.FindMember("meshId"); it != doc.MemberEnd() && !it->value.IsNull()) {
    if (!it->value.IsString()) return unavailable(Failure::BadAnswer, "\"meshId\" is not a string");
    a.meshId.assign(it->value.GetString(), it->value.GetStringLength());
  }
  if (auto it = doc.FindMember("claims"); it != doc.MemberEnd() && !it->value.IsNull()) {
    if (!it->value.IsObject()) {
      return unavailable(Failure::BadAnswer, "\"claims\" is not a JSON object");
    }
    rapidjson::StringBuffer text;
    rapidjson::Writer<rapidjson::StringBuffer> writer(text);
    it->value.Accept(writer);
    if (text.GetSize() > kMaxClaimsBytes) {
      return unavailable(Failure::BadAnswer, "\"claims\" is larger than 8 KiB");
    }
    a.claimsJson.assign(text.GetString(), text.GetSize());
  }
  if (auto it = doc.FindMember("ttl"); it != doc.MemberEnd() && !it->value.IsNull()) {
    if (!it->value.IsNumber() || it->value.GetDouble() < 0) {
      return unavailable(Failure::BadAnswer, "\"ttl\" is not a number of seconds");
    }
    a.ttlSeconds = it->value.GetDouble();
  }
  return a;
}

AuthorizeClient::AuthorizeClient(std::string url, std::string token, double timeoutSeconds)
    : url_(std::move(url)),
      token_(std::move(token)),
      timeoutMs_(std::max(1L, static_cast<long>(timeoutSeconds * 1000))) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    throw std::runtime_error("libcurl could not be initialised");
  }
  multi_ = curl_multi_init();
  if (!multi_) throw std::runtime_error("libcurl could not be initialised");
  thread_ = std::thread([this] { run(); });
}

AuthorizeClient::~AuthorizeClient() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
  thread_.join();
  for (auto& [easy, call] : running_) {
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), static_cast<CURL*>(easy));
  }
  running_.clear();
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
  curl_global_cleanup();
}

void AuthorizeClient::submit(const AuthorizeRequest& req, Done done) {
  auto call = std::make_unique<Call>();
  call->body = authorizeRequestBody(req);
  call->done = std::move(done);
  call->started = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    incoming_.push_back(std::move(call));
  }
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

void AuthorizeClient::start(std::unique_ptr<Call> call) {
  CURL* easy = curl_easy_init();
  if (!easy) {
    AuthorizeAnswer a = unavailable(AuthorizeAnswer::Failure::Unreachable, "curl_easy_init failed");
    call->done(std::move(a));
    return;
  }
  call->easy = easy;
  call->headers = curl_slist_append(call->headers, "Content-Type: application/json");
  call->headers = curl_slist_append(call->headers, "Accept: application/json");
  if (!token_.empty()) {
    std::string auth = "Authorization: Bearer " + token_;
    call->headers = curl_slist_append(call->headers, auth.c_str());
    sodium_memzero(auth.data(), auth.size());
  }
  curl_easy_setopt(easy, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, call->headers);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body.c_str());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(call->body.size()));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeoutMs_);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, onBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, call.get());
  curl_easy_setopt(easy, CURLOPT_PRIVATE, call.get());
  // The relay's own proxy settings are for nodes, not for this call.
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_multi_add_handle(static_cast<CURLM*>(multi_), easy);
  running_.emplace(easy, std::move(call));
}

void AuthorizeClient::finish(Call& call, int curlCode, long status) {
  AuthorizeAnswer a;
  const auto code = static_cast<CURLcode>(curlCode);
  if (call.tooLarge) {
    a = unavailable(AuthorizeAnswer::Failure::BadAnswer, "the answer is larger than 64 KiB");
  } else if (code == CURLE_OPERATION_TIMEDOUT) {
    a = unavailable(AuthorizeAnswer::Failure::Timeout,
                    "no answer within " + std::to_string(timeoutMs_) + " ms");
  } else if (code != CURLE_OK) {
    a = unavailable(AuthorizeAnswer::Failure::Unreachable, curl_easy_strerror(code));
  } else {
    a = parseAuthorizeAnswer(status, call.response);
  }
  a.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - call.started).count();
  call.done(std::move(a));
}

void AuthorizeClient::run() {
  auto* multi = static_cast<CURLM*>(multi_);
  for (;;) {
    std::vector<std::unique_ptr<Call>> fresh;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      fresh.swap(incoming_);
    }
    for (auto& call : fresh) start(std::move(call));
    int stillRunning = 0;
    curl_multi_perform(multi, &stillRunning);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode result = msg->data.result;
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      curl_multi_remove_handle(multi, easy);
      auto it = running_.find(easy);
      if (it == running_.end()) continue;
      std::unique_ptr<Call> call = std::move(it->second);
      running_.erase(it);
      finish(*call, result, status);
    }
    curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
}

std::string AuthorizeCache::keyOf(const AuthorizeRequest& req) {
  // The token is hashed: the key is kept, the token need not be.
  std::string key = req.meshId;
  key += '\n';
  key += req.ip;
  key += '\n';
  key += req.host;
  key += '\n';
  if (req.token) {
    unsigned char digest[crypto_generichash_BYTES];
    crypto_generichash(digest, sizeof digest,
                       reinterpret_cast<const unsigned char*>(req.token->data()), req.token->size(),
                       nullptr, 0);
    key.append(reinterpret_cast<const char*>(digest), sizeof digest);
  }
  return key;
}

const AuthorizeCache::Entry* AuthorizeCache::find(const std::string& key, std::int64_t nowUs) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  if (it->second.expiresUs <= nowUs) {
    entries_.erase(it);
    return nullptr;
  }
  return &it->second;
}

void AuthorizeCache::put(std::string key, Entry entry, std::int64_t nowUs) {
  if (capacity_ == 0 || entry.expiresUs <= nowUs) return;
  if (entries_.size() >= capacity_ && !entries_.count(key)) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      it = it->second.expiresUs <= nowUs ? entries_.erase(it) : std::next(it);
    }
    if (entries_.size() >= capacity_) {
      auto soonest = std::min_element(entries_.begin(), entries_.end(), [](auto& a, auto& b) {
        return a.second.expiresUs < b.second.expiresUs;
      });
      entries_.erase(soonest);
    }
  }
  entries_[std::move(key)] = std::move(entry);
}

}  // namespace mesh::relay
