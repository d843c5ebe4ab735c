// Small RAII layer over the SQLite C API, used by the registry.
//
// Ownership: Database owns one sqlite3* and Statement owns one sqlite3_stmt*;
// statements must be destroyed before their database. None of these types
// lock anything: the caller serialises every use of one connection (the
// registry holds its database mutex around each call).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mesh::relay::sqlite {

// Thrown for any SQLite failure; code() is the primary result code, so
// callers can tell a constraint violation from an I/O error.
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_ & 0xff; }

 private:
  int code_;
};

inline std::string describe(sqlite3* db, int rc, std::string_view context) {
  std::string msg(context);
  msg += ": ";
  // sqlite3_errmsg describes the latest failure on the connection, which is
  // the one we are reporting because the connection is used by one thread at
  // a time.
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return msg;
}

// What a client may be told when a write failed: the database is full, or
// unavailable for another reason. Never the file's path or the SQL.
inline std::string unavailableReason(const std::exception& e) {
  const auto* err = dynamic_cast<const Error*>(&e);
  if (err && err->code() == SQLITE_FULL) {
    return "Registry database full: the relay cannot store changes until disk space is freed";
  }
  return "Registry unavailable: the relay cannot store changes right now";
}

[[noreturn]] inline void fail(sqlite3* db, int rc, std::string_view context) {
  throw Error(rc, describe(db, rc, context));
}

struct DatabaseCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* st) const noexcept { sqlite3_finalize(st); }
};

class Database {
 public:
  Database(const std::string& path, int flags) {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    // Even on failure SQLite usually hands back a handle that must be closed.
    handle_.reset(raw);
    if (rc != SQLITE_OK) fail(raw, rc, "cannot open " + path);
    sqlite3_extended_result_codes(raw, 1);
  }

  sqlite3* get() const noexcept { return handle_.get(); }

  // Runs one or more statements that return no rows we need.
  void exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(get(), sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      throw Error(rc, "\"" + sql + "\": " + msg);
    }
  }

 private:
  std::unique_ptr<sqlite3, DatabaseCloser> handle_;
};

class Statement;

// One execution of a prepared statement: binds, steps, and on destruction
// resets the statement and clears its bindings so it can be reused.
class Run {
 public:
  explicit Run(Statement& st) noexcept : st_(st) {}
  ~Run();
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  Run& bind(int index, std::string_view text);
  Run& bindBlob(int index, const void* data, std::size_t size);
  Run& bind(int index, std::int64_t value);
  Run& bindNull(int index);

  // True when a row is available, false when the statement is done.
  bool step();
  // Steps a statement that must not return rows.
  void done() {
    if (step()) fail(nullptr, SQLITE_MISUSE, "statement returned a row unexpectedly");
  }

  std::int64_t int64(int column) const;
  std::string text(int column) const;
  std::string blob(int column) const;
  bool isNull(int column) const;

 private:
  void check(int rc, std::string_view what) const;
  Statement& st_;
};

class Statement {
 public:
  Statement() = default;
  Statement(Database& db, std::string_view sql) : db_(db.get()) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    handle_.reset(raw);
    if (rc != SQLITE_OK) fail(db_, rc, "cannot prepare \"" + std::string(sql) + "\"");
    if (!raw) fail(db_, SQLITE_MISUSE, "empty statement \"" + std::string(sql) + "\"");
  }

  Run run() noexcept { return Run(*this); }
  sqlite3_stmt* get() const noexcept { return handle_.get(); }
  sqlite3* db() const noexcept { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::unique_ptr<sqlite3_stmt, StatementFinalizer> handle_;
};

inline Run::~Run() {
  sqlite3_reset(st_.get());
  sqlite3_clear_bindings(st_.get());
}

inline void Run::check(int rc, std::string_view what) const {
  if (rc != SQLITE_OK) fail(st_.db(), rc, what);
}

inline Run& Run::bind(int index, std::string_view text) {
  check(sqlite3_bind_text64(st_.get(), index, text.data(), text.size(), SQLITE_TRANSIENT,
                            SQLITE_UTF8),
        "bind text");
  return *this;
}

inline Run& Run::bindBlob(int index, const void* data, std::size_t size) {
  check(sqlite3_bind_blob64(st_.get(), index, data, size, SQLITE_TRANSIENT), "bind blob");
  return *this;
}

inline Run& Run::bind(int index, std::int64_t value) {
  check(sqlite3_bind_int64(st_.get(), index, value), "bind integer");
  return *this;
}

inline Run& Run::bindNull(int index) {
  check(sqlite3_bind_null(st_.get(), index), "bind null");
  return *this;
}

inline bool Run::step() {
  const int rc = sqlite3_step(st_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(st_.db(), rc, std::string("\"") + sqlite3_sql(st_.get()) + "\"");
}

inline std::int64_t Run::int64(int column) const {
  return sqlite3_column_int64(st_.get(), column);
}

inline std::string Run::text(int column) const {
  const unsigned char* p = sqlite3_column_text(st_.get(), column);
  const int n = sqlite3_column_bytes(st_.get(), column);
  if (!p || n <= 0) return {};
  return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
}

inline std::string Run::blob(int column) const {
  const void* p = sqlite3_column_blob(st_.get(), column);
  const int n = sqlite3_column_bytes(st_.get(), column);
  if (!p || n <= 0) return {};
  return std::string(static_cast<const char*>(p), static_cast<std::size_t>(n));
}

inline bool Run::isNull(int column) const {
  return sqlite3_column_type(st_.get(), column) == SQLITE_NULL;
}

// Runs a transaction: commit() makes it stick, otherwise the destructor rolls
// back (also when an exception unwinds through it).
class Transaction {
 public:
  explicit Transaction(Database& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit() {
    db_.exec("COMMIT");
    done_ = true;
  }

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace mesh::relay::sqlite
