#include "outbox.h"

#include <memory>

namespace mesh::client::detail {
namespace {

// A received id is remembered this long: far longer than any sender retries
// a message it has not been told about (Options::maxMessageAge default).
constexpr std::int64_t kSeenKeepMs = 7LL * 24 * 3600 * 1000;
constexpr unsigned kPruneEvery = 1000;

// Resets a statement when the scope ends so it never holds a read lock.
struct Reset {
  sqlite3_stmt* stmt;
  ~Reset() {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  }
};

void bindText(sqlite3_stmt* stmt, int index, const std::string& text) {
  sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

std::string columnText(sqlite3_stmt* stmt, int column) {
  const auto* text = sqlite3_column_text(stmt, column);
  const int bytes = sqlite3_column_bytes(stmt, column);
  return text == nullptr
             ? std::string()
             : std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(bytes));
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS outbox(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  target TEXT,
  payload TEXT NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen(
  from_mesh TEXT NOT NULL,
  id TEXT NOT NULL,
  seen_ms INTEGER NOT NULL,
  PRIMARY KEY(from_mesh, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_time ON seen(seen_ms);
PRAGMA user_version = 1;
)sql";

}  // namespace

Result<std::unique_ptr<Outbox>> Outbox::open(const std::string& path, bool durableSync) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "cannot open outbox '" + path +
                          "': " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return Error{Status::StorageError, message};
  }
  std::unique_ptr<Outbox> box(new Outbox(db));
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL;", kSchema}) {
    if (auto r = box->exec(sql); !r) return r.error();
  }
  if (auto r = box->exec(durableSync ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;");
      !r) {
    return r.error();
  }
  struct Prepared {
    sqlite3_stmt** stmt;
    const char* sql;
  };
  const Prepared statements[] = {
      {&box->insert_, "INSERT INTO outbox(id, target, payload, created_ms) VALUES(?,?,?,?)"},
      {&box->remove_, "DELETE FROM outbox WHERE id = ?"},
      {&box->selectAll_, "SELECT seq, id, target, payload, created_ms FROM outbox ORDER BY seq"},
      {&box->count_, "SELECT count(*) FROM outbox"},
      {&box->getMeta_, "SELECT value FROM meta WHERE key = ?"},
      {&box->setMeta_,
       "INSERT INTO meta(key, value) VALUES(?,?) "
       "ON CONFLICT(key) DO UPDATE SET value = excluded.value"},
      {&box->deleteMeta_, "DELETE FROM meta WHERE key = ?"},
      {&box->insertSeen_, "INSERT OR IGNORE INTO seen(from_mesh, id, seen_ms) VALUES(?,?,?)"},
      {&box->pruneSeen_, "DELETE FROM seen WHERE seen_ms < ?"},
  };
  for (const auto& p : statements) {
    if (sqlite3_prepare_v3(db, p.sql, -1, SQLITE_PREPARE_PERSISTENT, p.stmt, nullptr) !=
        SQLITE_OK) {
      return box->sqlError("preparing outbox statements");
    }
  }
  return box;
}

Outbox::~Outbox() {
  for (sqlite3_stmt* s : {insert_, remove_, selectAll_, count_, getMeta_, setMeta_, deleteMeta_,
                          insertSeen_, pruneSeen_}) {
    sqlite3_finalize(s);
  }
  sqlite3_close(db_);
}

Result<> Outbox::exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message != nullptr ? message : "unknown error";
    sqlite3_free(message);
    return Error{Status::StorageError, "outbox: " + text};
  }
  return success();
}

Error Outbox::sqlError(const std::string& what) {
  return Error{Status::StorageError, "outbox: " + what + ": " + sqlite3_errmsg(db_)};
}

Result<OutboxMessage> Outbox::add(std::optional<std::string> target, std::string payloadJson,
                                  std::string id, std::int64_t nowMs) {
  std::lock_guard lock(mutex_);
  Reset reset{insert_};
  bindText(insert_, 1, id);
  if (target) {
    bindText(insert_, 2, *target);
  } else {
    sqlite3_bind_null(insert_, 2);
  }
  bindText(insert_, 3, payloadJson);
  sqlite3_bind_int64(insert_, 4, nowMs);
  if (sqlite3_step(insert_) != SQLITE_DONE) return sqlError("writing a message");
  OutboxMessage m;
  m.seq = sqlite3_last_insert_rowid(db_);
  m.id = std::move(id);
  m.target = std::move(target);
  m.payloadJson = std::move(payloadJson);
  m.createdMs = nowMs;
  return m;
}

Result<> Outbox::remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  Reset reset{remove_};
  bindText(remove_, 1, id);
  if (sqlite3_step(remove_) != SQLITE_DONE) return sqlError("removing a message");
  return success();
}

Result<std::vector<OutboxMessage>> Outbox::all() {
  std::lock_guard lock(mutex_);
  Reset reset{selectAll_};
  std::vector<OutboxMessage> out;
  for (;;) {
    const int rc = sqlite3_step(selectAll_);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return sqlError("reading messages");
    OutboxMessage m;
    m.seq = sqlite3_column_int64(selectAll_, 0);
    m.id = columnText(selectAll_, 1);
    if (sqlite3_column_type(selectAll_, 2) != SQLITE_NULL) m.target = columnText(selectAll_, 2);
    m.payloadJson = columnText(selectAll_, 3);
    m.createdMs = sqlite3_column_int64(selectAll_, 4);
    out.push_back(std::move(m));
  }
  return out;
}

std::size_t Outbox::count() {
  std::lock_guard lock(mutex_);
  Reset reset{count_};
  if (sqlite3_step(count_) != SQLITE_ROW) return 0;
  return static_cast<std::size_t>(sqlite3_column_int64(count_, 0));
}

std::optional<std::string> Outbox::getMeta(const std::string& key) {
  std::lock_guard lock(mutex_);
  Reset reset{getMeta_};
  bindText(getMeta_, 1, key);
  if (sqlite3_step(getMeta_) != SQLITE_ROW) return std::nullopt;
  return columnText(getMeta_, 0);
}

Result<> Outbox::setMeta(const std::string& key, const std::string& value) {
  std::lock_guard lock(mutex_);
  Reset reset{setMeta_};
  bindText(setMeta_, 1, key);
  bindText(setMeta_, 2, value);
  if (sqlite3_step(setMeta_) != SQLITE_DONE) return sqlError("writing " + key);
  return success();
}

Result<> Outbox::deleteMeta(const std::string& key) {
  std::lock_guard lock(mutex_);
  Reset reset{deleteMeta_};
  bindText(deleteMeta_, 1, key);
  if (sqlite3_step(deleteMeta_) != SQLITE_DONE) return sqlError("deleting " + key);
  return success();
}

bool Outbox::markSeen(const std::string& fromMeshId, const std::string& id, std::int64_t nowMs) {
  std::lock_guard lock(mutex_);
  if (++seenSincePrune_ >= kPruneEvery) {
    seenSincePrune_ = 0;
    Reset reset{pruneSeen_};
    sqlite3_bind_int64(pruneSeen_, 1, nowMs - kSeenKeepMs);
    sqlite3_step(pruneSeen_);
  }
  Reset reset{insertSeen_};
  bindText(insertSeen_, 1, fromMeshId);
  bindText(insertSeen_, 2, id);
  sqlite3_bind_int64(insertSeen_, 3, nowMs);
  if (sqlite3_step(insertSeen_) != SQLITE_DONE) return true;  // cannot tell: pass it on
  return sqlite3_changes(db_) > 0;
}

}  // namespace mesh::client::detail
