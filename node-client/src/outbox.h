// The durable outbox: SQLite in WAL mode holding messages not yet
// acknowledged, the resume token, the registration mark and the ids of
// received messages (for de-duplication across restarts).
//
// Thread-safe: relay()/broadcast() callers insert from any thread while the
// network thread removes and reads; one mutex serialises the connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mesh/client/status.h"

namespace mesh::client::detail {

struct OutboxMessage {
  std::int64_t seq = 0;               // insertion order, kept across restarts
  std::string id;                     // sent as the frame's "id"
  std::optional<std::string> target;  // nullopt: broadcast
  std::string payloadJson;
  std::int64_t createdMs = 0;  // wall clock, for the give-up age
};

class Outbox {
 public:
  // Opens or creates the file and its schema.
  [[nodiscard]] static Result<std::unique_ptr<Outbox>> open(const std::string& path,
                                                            bool durableSync);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Writes the message (seq is assigned) before it may be sent.
  [[nodiscard]] Result<OutboxMessage> add(std::optional<std::string> target,
                                          std::string payloadJson, std::string id,
                                          std::int64_t nowMs);
  [[nodiscard]] Result<> remove(const std::string& id);
  [[nodiscard]] Result<std::vector<OutboxMessage>> all();
  [[nodiscard]] std::size_t count();

  // Small key/value store: resume token, registration mark, identity.
  [[nodiscard]] std::optional<std::string> getMeta(const std::string& key);
  [[nodiscard]] Result<> setMeta(const std::string& key, const std::string& value);
  [[nodiscard]] Result<> deleteMeta(const std::string& key);

  // True if (fromMeshId, id) was not seen before; records it. Old records
  // are pruned now and then so the table stays bounded.
  [[nodiscard]] bool markSeen(const std::string& fromMeshId, const std::string& id,
                              std::int64_t nowMs);

 private:
  explicit Outbox(sqlite3* db) : db_(db) {}
  Result<> exec(const char* sql);
  Error sqlError(const std::string& what);

  std::mutex mutex_;  // guards db_ and every statement below
  sqlite3* db_;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* remove_ = nullptr;
  sqlite3_stmt* selectAll_ = nullptr;
  sqlite3_stmt* count_ = nullptr;
  sqlite3_stmt* getMeta_ = nullptr;
  sqlite3_stmt* setMeta_ = nullptr;
  sqlite3_stmt* deleteMeta_ = nullptr;
  sqlite3_stmt* insertSeen_ = nullptr;
  sqlite3_stmt* pruneSeen_ = nullptr;
  unsigned seenSincePrune_ = 0;
};

}  // namespace mesh::client::detail
