// Where the relay's token keys come from and the one call that checks a
// token with them: the HS256 secret (--jwt-secret), a JWKS file
// (--jwt-jwks-file, re-read on SIGHUP) and a JWKS URL (--jwt-jwks-url,
// fetched over HTTPS by a thread of its own with libcurl, cached, refreshed
// on its cache lifetime and on an unknown kid at most once per 30 s; a
// failed fetch keeps the last good set).
//
// Owned by Server::Impl. Thread rules: every method is for the loop thread;
// the fetch thread only fetches and hands each result to the loop through
// the `post` function it was given.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "jwt.h"
#include "mesh/relay/config.h"

namespace mesh::relay {

// A token that passed: what it proves, with the mesh it names.
using VerifiedToken = jwt::VerifiedToken;
using TokenRefusal = jwt::TokenRefusal;

// Counted for /metrics.
struct TokenKeyStats {
  std::uint64_t fetchesOk = 0;
  std::uint64_t fetchesFailed = 0;
  std::uint64_t fileReloadsOk = 0;
  std::uint64_t fileReloadsFailed = 0;
};

class TokenAuthority {
 public:
  // Delivers a function to the loop thread (Server::Impl::post).
  using Post = std::function<void(std::function<void()>)>;

  // Reads the secret and the JWKS file now (start() begins fetching the
  // URL, once `post` can reach the loop). Throws std::runtime_error for a configuration the relay
  // must not start with: a secret under 32 bytes, an unreadable or invalid
  // JWKS file, a URL that is not https://.
  TokenAuthority(const Config& config, Post post);
  ~TokenAuthority();  // stops the fetch thread
  // Starts the fetch thread when a URL is set; its first fetch begins now.
  void start();
  // Stops the fetch thread now: nothing is posted to the loop afterwards
  // (the server calls it before its loop goes away).
  void shutdown();
  TokenAuthority(const TokenAuthority&) = delete;
  TokenAuthority& operator=(const TokenAuthority&) = delete;

  // Some key source is configured: tokens are accepted at all.
  [[nodiscard]] bool enabled() const { return enabled_; }

  // Checks `token` (compact JWS) at `nowSeconds` (unix) with the keys held
  // now. A token whose kid is unknown (or that came before the URL's first
  // set) asks for a fresh fetch, at most one per 30 s; it is refused all the
  // same, and refetchPending() tells whether a new set may still change the
  // answer. Loop thread.
  [[nodiscard]] std::variant<VerifiedToken, TokenRefusal> verify(std::string_view token,
                                                                 std::int64_t nowSeconds);

  // A fetch is under way that an unknown kid asked for (or the first one):
  // whenKeysFetched() runs its callbacks once it ends, however it ends.
  [[nodiscard]] bool refetchPending() const { return waitingForFetch_; }
  void whenKeysFetched(std::function<void()> fn);

  // Re-reads --jwt-jwks-file; a bad file is logged and the old set stays.
  void reloadFile();

  [[nodiscard]] std::size_t keyCount() const { return keys_ ? keys_->size() : 0; }
  [[nodiscard]] const TokenKeyStats& stats() const { return stats_; }
  [[nodiscard]] const jwt::VerifyOptions& options() const { return verifier_.options(); }

 private:
  struct FetchResult {
    bool ok = false;
    std::shared_ptr<const jwt::KeySet> keys;
    std::string error;
  };
  void rebuild();
  void askForFetch();
  void onFetched(FetchResult result);  // loop thread
  void fetchLoop();                    // the fetch thread
  FetchResult fetchOnce(std::int64_t& maxAgeSeconds);

  Post post_;
  bool enabled_ = false;
  jwt::TokenVerifier verifier_;
  std::string jwksFile_;
  std::string jwksUrl_;
  std::string jwksCa_;
  std::int64_t defaultCacheSeconds_ = 300;
  std::int64_t refetchFloorSeconds_ = 30;

  // Loop thread.
  std::shared_ptr<const jwt::KeySet> secretKeys_;
  std::shared_ptr<const jwt::KeySet> fileKeys_;
  std::shared_ptr<const jwt::KeySet> urlKeys_;
  std::shared_ptr<const jwt::KeySet> keys_;  // all of the above
  bool waitingForFetch_ = false;
  std::vector<std::function<void()>> afterFetch_;
  TokenKeyStats stats_;

  // Shared with the fetch thread, under mutex_.
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool kicked_ = false;
  std::int64_t lastFetchStartUs_ = 0;  // steady clock; 0: never
  // Read by a fetch in progress, which then gives up: a stop never waits
  // for a slow provider.
  std::atomic<bool> stopping_{false};
  std::thread fetcher_;
};

}  // namespace mesh::relay
