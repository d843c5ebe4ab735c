#include "token_auth.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "log.h"

namespace mesh::relay {
namespace {

// A failed fetch is tried again after this long; the last good set stays.
constexpr std::int64_t kRetrySeconds = 30;
// The cache lifetime a server announces is kept inside these bounds.
constexpr std::int64_t kMinCacheSeconds = 30;
constexpr std::int64_t kMaxCacheSeconds = 24 * 3600;
constexpr long kFetchTimeoutSeconds = 10;

std::int64_t steadyUs() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string readFile(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path;
    return {};
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::shared_ptr<const jwt::KeySet> loadJwksFile(const std::string& path, std::string& error) {
  const std::string text = readFile(path, error);
  if (!error.empty()) return nullptr;
  auto set = jwt::KeySet::fromJwks(text, error);
  if (!set) error = path + ": " + error;
  return set;
}

// The max-age of a Cache-Control header line, or -1.
std::int64_t maxAgeOf(std::string_view line) {
  std::string lower(line);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.rfind("cache-control:", 0) != 0) return -1;
  const std::size_t at = lower.find("max-age=");
  if (at == std::string::npos) return -1;
  std::int64_t value = 0;
  std::size_t i = at + 8;
  if (i >= lower.size() || !std::isdigit(static_cast<unsigned char>(lower[i]))) return -1;
  for (; i < lower.size() && std::isdigit(static_cast<unsigned char>(lower[i])); ++i) {
    value = std::min<std::int64_t>(value * 10 + (lower[i] - '0'), kMaxCacheSeconds);
  }
  return value;
}

struct Download {
  std::string body;
  bool tooLarge = false;
  std::int64_t maxAge = -1;
};

std::size_t onBody(char* data, std::size_t size, std::size_t count, void* user) {
  auto* d = static_cast<Download*>(user);
  const std::size_t n = size * count;
  if (d->body.size() + n > jwt::kMaxJwksBytes) {
    d->tooLarge = true;
    return 0;  // aborts the transfer
  }
  d->body.append(data, n);
  return n;
}

int onProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<std::atomic<bool>*>(user)->load() ? 1 : 0;  // non-zero aborts
}

std::size_t onHeader(char* data, std::size_t size, std::size_t count, void* user) {
  auto* d = static_cast<Download*>(user);
  const std::size_t n = size * count;
  if (const std::int64_t age = maxAgeOf(std::string_view(data, n)); age >= 0) d->maxAge = age;
  return n;
}

}  // namespace

TokenAuthority::TokenAuthority(const Config& config, Post post)
    : post_(std::move(post)),
      verifier_(jwt::VerifyOptions{config.jwtIssuer, config.jwtAudience, config.jwtMeshClaim,
                                   config.jwtLeewaySeconds}),
      jwksFile_(config.jwtJwksFile),
      jwksUrl_(config.jwtJwksUrl),
      jwksCa_(config.jwtJwksCa),
      defaultCacheSeconds_(config.jwtJwksCacheSeconds),
      refetchFloorSeconds_(config.jwtJwksRefetchSeconds) {
  if (!config.jwtSecret.empty()) {
    if (config.jwtSecret.size() < jwt::kMinHmacKeyBytes) {
      throw std::runtime_error("--jwt-secret must be at least 32 bytes");
    }
    secretKeys_ = jwt::KeySet::fromSecret(config.jwtSecret);
  }
  if (!jwksFile_.empty()) {
    std::string error;
    fileKeys_ = loadJwksFile(jwksFile_, error);
    if (!fileKeys_) throw std::runtime_error("--jwt-jwks-file: " + error);
  }
  if (!jwksUrl_.empty() && jwksUrl_.rfind("https://", 0) != 0) {
    throw std::runtime_error("--jwt-jwks-url must be an https:// URL");
  }
  if (config.jwtMeshClaim.empty()) throw std::runtime_error("--jwt-mesh-claim is empty");
  enabled_ = secretKeys_ || fileKeys_ || !jwksUrl_.empty();
  rebuild();
  // Tokens that come before the URL's first set wait for it.
  waitingForFetch_ = !jwksUrl_.empty();
}

void TokenAuthority::start() {
  if (jwksUrl_.empty() || fetcher_.joinable()) return;
  // Thread-safe in the libcurl Debian ships (7.84 and later).
  curl_global_init(CURL_GLOBAL_DEFAULT);
  kicked_ = true;
  fetcher_ = std::thread([this] { fetchLoop(); });
}

TokenAuthority::~TokenAuthority() {
  shutdown();
}

void TokenAuthority::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  stopping_ = true;
  wake_.notify_all();
  if (fetcher_.joinable()) fetcher_.join();
}

void TokenAuthority::rebuild() {
  keys_ = jwt::KeySet::merge(jwt::KeySet::merge(secretKeys_, fileKeys_), urlKeys_);
}

std::variant<VerifiedToken, TokenRefusal> TokenAuthority::verify(std::string_view token,
                                                                 std::int64_t nowSeconds) {
  auto result = verifier_.verify(token, keys_.get(), nowSeconds);
  if (const auto* refused = std::get_if<TokenRefusal>(&result);
      refused && !jwksUrl_.empty() &&
      (refused->reason == jwt::Refusal::UnknownKid || refused->reason == jwt::Refusal::NoKey)) {
    askForFetch();
  }
  return result;
}

void TokenAuthority::askForFetch() {
  if (waitingForFetch_) return;
  {
    std::lock_guard lock(mutex_);
    if (lastFetchStartUs_ != 0 &&
        steadyUs() - lastFetchStartUs_ < refetchFloorSeconds_ * 1'000'000) {
      return;
    }
    kicked_ = true;
  }
  waitingForFetch_ = true;
  wake_.notify_all();
}

void TokenAuthority::whenKeysFetched(std::function<void()> fn) {
  if (!waitingForFetch_) {
    fn();
    return;
  }
  afterFetch_.push_back(std::move(fn));
}

void TokenAuthority::onFetched(FetchResult result) {
  if (result.ok) {
    ++stats_.fetchesOk;
    const std::size_t before = urlKeys_ ? urlKeys_->size() : 0;
    urlKeys_ = std::move(result.keys);
    rebuild();
    if (urlKeys_->size() != before) {
      LOG_INFO("JWKS from " << jwksUrl_ << ": " << urlKeys_->size() << " keys");
    }
  } else {
    ++stats_.fetchesFailed;
    LOG_WARN("JWKS fetch from " << jwksUrl_ << " failed, keeping "
                                << (urlKeys_ ? urlKeys_->size() : 0) << " keys: " << result.error);
  }
  waitingForFetch_ = false;
  auto waiting = std::move(afterFetch_);
  afterFetch_.clear();
  for (auto& fn : waiting) fn();
}

void TokenAuthority::reloadFile() {
  if (jwksFile_.empty()) return;
  std::string error;
  auto set = loadJwksFile(jwksFile_, error);
  if (!set) {
    ++stats_.fileReloadsFailed;
    LOG_ERROR("JWKS reload failed, keeping " << (fileKeys_ ? fileKeys_->size() : 0)
                                             << " keys: " << error);
    return;
  }
  ++stats_.fileReloadsOk;
  fileKeys_ = std::move(set);
  rebuild();
  LOG_INFO("JWKS file reloaded: " << fileKeys_->size() << " keys from " << jwksFile_);
}

// The fetch thread: a fetch when kicked (an unknown kid, the first set) or
// when the cached set's lifetime ends; each result goes to the loop.
void TokenAuthority::fetchLoop() {
  auto due = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, due,
                       [&] { return stop_ || kicked_ || std::chrono::steady_clock::now() >= due; });
      if (stop_) return;
      kicked_ = false;
      lastFetchStartUs_ = steadyUs();
    }
    std::int64_t maxAge = -1;
    FetchResult result = fetchOnce(maxAge);
    const std::int64_t next =
        !result.ok ? kRetrySeconds
                   : std::clamp<std::int64_t>(maxAge >= 0 ? maxAge : defaultCacheSeconds_,
                                              kMinCacheSeconds, kMaxCacheSeconds);
    due = std::chrono::steady_clock::now() + std::chrono::seconds(next);
    {
      std::lock_guard lock(mutex_);
      if (stop_) return;
      post_([this, r = std::move(result)]() mutable { onFetched(std::move(r)); });
    }
  }
}

TokenAuthority::FetchResult TokenAuthority::fetchOnce(std::int64_t& maxAgeSeconds) {
  FetchResult out;
  CURL* curl = curl_easy_init();
  if (!curl) {
    out.error = "libcurl could not start";
    return out;
  }
  Download d;
  char curlError[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, jwksUrl_.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, kFetchTimeoutSeconds);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, kFetchTimeoutSeconds);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, onBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &d);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, onHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &d);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curlError);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, onProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &stopping_);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "mesh-relay");
  if (!jwksCa_.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, jwksCa_.c_str());
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (d.tooLarge) {
    out.error = "JWKS is larger than " + std::to_string(jwt::kMaxJwksBytes) + " bytes";
  } else if (code != CURLE_OK) {
    out.error = curlError[0] ? curlError : curl_easy_strerror(code);
  } else if (status != 200) {
    out.error = "HTTP status " + std::to_string(status);
  } else if (auto set = jwt::KeySet::fromJwks(d.body, out.error)) {
    out.ok = true;
    out.keys = std::move(set);
    maxAgeSeconds = d.maxAge;
  }
  return out;
}

}  // namespace mesh::relay
