#include <gtest/gtest.h>
#include <sodium.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "registry.h"
#include "registry_fixtures.h"

namespace mesh::relay {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kNow = 1'700'000'000'000;
constexpr std::int64_t kDay = 24 * 60 * 60 * 1000;
using namespace test_fixtures;

// A fresh folder per test, removed with everything in it at the end. The
// database goes one level deeper so the registry has to create its folder.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() / ("registry-" + std::string(info ? info->name() : "test") +
                                         "-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(root_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& root() const { return root_; }
  std::string dbPath() const { return (root_ / "data" / "mesh.db").string(); }

 private:
  fs::path root_;
};

// Direct access to the file, bypassing the registry.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      throw std::runtime_error("cannot open test database");
    }
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const std::string& sql) {
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
  }

  // First column of the first row as text, or "<none>".
  std::string scalar(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return std::string("<error: ") + sqlite3_errmsg(db_) + ">";
    }
    std::string out = "<none>";
    if (sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* p = sqlite3_column_text(st, 0);
      out = p ? std::string(reinterpret_cast<const char*>(p)) : std::string("<null>");
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string readBytes(const fs::path& p) {
  std::string out(static_cast<std::size_t>(fs::file_size(p)), '\0');
  std::ifstream in(p, std::ios::binary);
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<std::size_t>(in.gcount()));
  return out;
}

TEST(Registry, CreatesNewMesh) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  EXPECT_EQ(reg.size(), 0u);
  EXPECT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  EXPECT_EQ(reg.size(), 1u);
  auto rec = reg.find("alpha");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->meshId, "alpha");
  EXPECT_EQ(rec->name, "Alpha");
  EXPECT_GT(rec->createdAtMs, 0);
  EXPECT_EQ(rec->createdAtMs, rec->updatedAtMs);
  EXPECT_EQ(rec->lastSeenMs, 0);
  EXPECT_FALSE(reg.find("beta").has_value());
}

TEST(Registry, SameSecretUpdatesName) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  const auto before = reg.find("alpha");
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(reg.registerMesh("alpha", "Alpha Renamed", kSecret), RegisterOutcome::Updated);
  const auto after = reg.find("alpha");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->name, "Alpha Renamed");
  EXPECT_EQ(after->createdAtMs, before->createdAtMs);
  EXPECT_GE(after->updatedAtMs, before->updatedAtMs);
  EXPECT_EQ(reg.size(), 1u);
  EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha Renamed");
}

TEST(Registry, OtherSecretIsConflictAndChangesNothing) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  const auto before = reg.find("alpha");
  EXPECT_EQ(reg.registerMesh("alpha", "Hijacked", kOtherSecret), RegisterOutcome::Conflict);
  const auto after = reg.find("alpha");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->name, "Alpha");
  EXPECT_EQ(after->updatedAtMs, before->updatedAtMs);
  EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
  EXPECT_FALSE(reg.verifySecret("alpha", kOtherSecret).has_value());
}

TEST(Registry, VerifySecretRightWrongUnknown) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
  EXPECT_FALSE(reg.verifySecret("alpha", kOtherSecret).has_value());
  EXPECT_FALSE(reg.verifySecret("alpha", "").has_value());
  EXPECT_FALSE(reg.verifySecret("nobody", kSecret).has_value());
}

TEST(Registry, RehashesWhenParametersChange) {
  TempDir dir;
  {
    Registry reg(dir.dbPath(), fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  auto stronger = fastParams();
  stronger.opsLimit += 1;
  {
    Registry reg(dir.dbPath(), stronger);
    EXPECT_FALSE(reg.verifySecret("alpha", kOtherSecret).has_value());
    EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
    EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
  }
  RawDb raw(dir.dbPath());
  const std::string hash = raw.scalar("SELECT secret_hash FROM meshes WHERE mesh_id = 'alpha'");
  EXPECT_NE(hash.find(",t=" + std::to_string(stronger.opsLimit) + ","), std::string::npos) << hash;
}

TEST(Registry, StoresOnlyArgon2idHash) {
  TempDir dir;
  {
    Registry reg(dir.dbPath(), fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  {
    RawDb raw(dir.dbPath());
    const std::string hash = raw.scalar("SELECT secret_hash FROM meshes WHERE mesh_id = 'alpha'");
    EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
    EXPECT_EQ(hash.find(kSecret), std::string::npos);
  }
  // Closing the last connection folds the WAL into the main file; look at
  // both in case a WAL is left behind.
  for (const char* suffix : {"", "-wal"}) {
    const fs::path p = dir.dbPath() + suffix;
    if (!fs::exists(p)) continue;
    EXPECT_EQ(readBytes(p).find(kSecret), std::string::npos) << p;
  }
}

TEST(Registry, MigratesZeroByteFile) {
  TempDir dir;
  fs::create_directories(fs::path(dir.dbPath()).parent_path());
  { std::ofstream touch(dir.dbPath()); }
  ASSERT_EQ(fs::file_size(dir.dbPath()), 0u);
  {
    Registry reg(dir.dbPath(), fastParams());
    EXPECT_EQ(reg.size(), 0u);
    EXPECT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  RawDb raw(dir.dbPath());
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), "3");
  EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.scalar("SELECT length(value) FROM meta WHERE key = 'resume_token_key'"), "32");
}

TEST(Registry, CreatesMissingDirectory) {
  TempDir dir;
  ASSERT_FALSE(fs::exists(fs::path(dir.dbPath()).parent_path()));
  Registry reg(dir.dbPath(), fastParams());
  EXPECT_TRUE(fs::exists(dir.dbPath()));
  EXPECT_TRUE(reg.checkWritable());
}

TEST(Registry, ReopenKeepsMeshesAndPersistedToken) {
  TempDir dir;
  ResumeToken token;
  std::int64_t createdAt = 0;
  {
    Registry reg(dir.dbPath(), fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
    ASSERT_EQ(reg.registerMesh("beta", "Beta", kOtherSecret), RegisterOutcome::Created);
    createdAt = reg.find("alpha")->createdAtMs;
    token = reg.issueResumeToken("alpha", kNow, kDay);
    reg.noteSeen("alpha", kNow);
    EXPECT_TRUE(reg.hasPending());
    reg.persistPending();
    EXPECT_FALSE(reg.hasPending());
  }
  Registry reg(dir.dbPath(), fastParams());
  EXPECT_EQ(reg.size(), 2u);
  const auto alpha = reg.find("alpha");
  ASSERT_TRUE(alpha.has_value());
  EXPECT_EQ(alpha->name, "Alpha");
  EXPECT_EQ(alpha->createdAtMs, createdAt);
  EXPECT_EQ(alpha->lastSeenMs, kNow);
  EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
  EXPECT_EQ(reg.verifySecret("beta", kOtherSecret), "Beta");
  EXPECT_EQ(reg.verifyResumeToken("alpha", token.token, kNow + 1), "Alpha");
  EXPECT_FALSE(reg.hasPending());
}

TEST(Registry, UnpersistedTokenIsLostOnReopen) {
  TempDir dir;
  ResumeToken first;
  ResumeToken second;
  {
    Registry reg(dir.dbPath(), fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
    first = reg.issueResumeToken("alpha", kNow, kDay);
    reg.persistPending();
    second = reg.issueResumeToken("alpha", kNow + 10, kDay);
    reg.noteSeen("alpha", kNow + 10);
    EXPECT_FALSE(reg.verifyResumeToken("alpha", first.token, kNow + 20).has_value());
    EXPECT_TRUE(reg.hasPending());
  }
  Registry reg(dir.dbPath(), fastParams());
  // The database still holds the state of the last persistPending().
  EXPECT_EQ(reg.verifyResumeToken("alpha", first.token, kNow + 20), "Alpha");
  EXPECT_FALSE(reg.verifyResumeToken("alpha", second.token, kNow + 20).has_value());
  EXPECT_EQ(reg.find("alpha")->lastSeenMs, 0);
}

TEST(Registry, RefusesNewerSchema) {
  TempDir dir;
  { Registry reg(dir.dbPath(), fastParams()); }
  {
    RawDb raw(dir.dbPath());
    raw.exec("PRAGMA user_version = 99");
  }
  try {
    Registry reg(dir.dbPath(), fastParams());
    FAIL() << "a database from a newer version was opened";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(Registry, RefusesFileThatIsNotADatabase) {
  TempDir dir;
  fs::create_directories(fs::path(dir.dbPath()).parent_path());
  {
    std::ofstream out(dir.dbPath(), std::ios::binary);
    out << std::string(4096, 'x');
  }
  EXPECT_THROW(Registry(dir.dbPath(), fastParams()), std::runtime_error);
}

TEST(Registry, TokenIsUrlSafeAndExpires) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  const ResumeToken t = reg.issueResumeToken("alpha", kNow, kDay);
  ASSERT_EQ(t.token.size(), 43u);
  EXPECT_EQ(
      t.token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
      std::string::npos);
  EXPECT_EQ(t.expiresAtMs, kNow + kDay);
  EXPECT_EQ(reg.verifyResumeToken("alpha", t.token, kNow), "Alpha");
  EXPECT_EQ(reg.verifyResumeToken("alpha", t.token, kNow + kDay - 1), "Alpha");
  EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token, kNow + kDay).has_value());
}

TEST(Registry, RejectsMalformedOrForeignTokens) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  ASSERT_EQ(reg.registerMesh("beta", "Beta", kOtherSecret), RegisterOutcome::Created);
  const ResumeToken t = reg.issueResumeToken("alpha", kNow, kDay);
  EXPECT_FALSE(reg.verifyResumeToken("beta", t.token, kNow).has_value());
  EXPECT_FALSE(reg.verifyResumeToken("nobody", t.token, kNow).has_value());
  EXPECT_FALSE(reg.verifyResumeToken("alpha", "", kNow).has_value());
  EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token.substr(1), kNow).has_value());
  EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token + "A", kNow).has_value());
  std::string bad = t.token;
  bad[5] = '+';
  EXPECT_FALSE(reg.verifyResumeToken("alpha", bad, kNow).has_value());
  std::string flipped = t.token;
  flipped[0] = flipped[0] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(reg.verifyResumeToken("alpha", flipped, kNow).has_value());
  EXPECT_EQ(reg.verifyResumeToken("alpha", t.token, kNow), "Alpha");
}

TEST(Registry, NewTokenReplacesOld) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  const ResumeToken first = reg.issueResumeToken("alpha", kNow, kDay);
  const ResumeToken second = reg.issueResumeToken("alpha", kNow + 1, kDay);
  EXPECT_NE(first.token, second.token);
  EXPECT_FALSE(reg.verifyResumeToken("alpha", first.token, kNow + 2).has_value());
  EXPECT_EQ(reg.verifyResumeToken("alpha", second.token, kNow + 2), "Alpha");
}

TEST(Registry, RemoveMeshKillsToken) {
  TempDir dir;
  ResumeToken t;
  {
    Registry reg(dir.dbPath(), fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
    t = reg.issueResumeToken("alpha", kNow, kDay);
    reg.persistPending();
    EXPECT_TRUE(reg.removeMesh("alpha"));
    EXPECT_FALSE(reg.removeMesh("alpha"));
    EXPECT_FALSE(reg.find("alpha").has_value());
    EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token, kNow + 1).has_value());
    EXPECT_FALSE(reg.verifySecret("alpha", kSecret).has_value());
    // The id is free again, for anyone.
    EXPECT_EQ(reg.registerMesh("alpha", "New Alpha", kOtherSecret), RegisterOutcome::Created);
    EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token, kNow + 1).has_value());
  }
  Registry reg(dir.dbPath(), fastParams());
  EXPECT_EQ(reg.find("alpha")->name, "New Alpha");
  EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token, kNow + 1).has_value());
}

TEST(Registry, RotateSecretKillsToken) {
  TempDir dir;
  ResumeToken t;
  {
    Registry reg(dir.dbPath(), fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
    t = reg.issueResumeToken("alpha", kNow, kDay);
    reg.persistPending();
    EXPECT_TRUE(reg.rotateSecret("alpha", kOtherSecret));
    EXPECT_FALSE(reg.rotateSecret("nobody", kOtherSecret));
    EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token, kNow + 1).has_value());
    EXPECT_FALSE(reg.verifySecret("alpha", kSecret).has_value());
    EXPECT_EQ(reg.verifySecret("alpha", kOtherSecret), "Alpha");
  }
  Registry reg(dir.dbPath(), fastParams());
  EXPECT_FALSE(reg.verifyResumeToken("alpha", t.token, kNow + 1).has_value());
  EXPECT_EQ(reg.verifySecret("alpha", kOtherSecret), "Alpha");
  EXPECT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Conflict);
}

TEST(Registry, PersistsManyTokensAtOnce) {
  TempDir dir;
  constexpr int kMeshes = 200;
  std::vector<ResumeToken> tokens;
  {
    Registry reg(dir.dbPath(), fastParams());
    for (int i = 0; i < kMeshes; ++i) {
      ASSERT_EQ(reg.registerMesh("m" + std::to_string(i), "Mesh", kSecret),
                RegisterOutcome::Created);
    }
    for (int i = 0; i < kMeshes; ++i) {
      tokens.push_back(reg.issueResumeToken("m" + std::to_string(i), kNow, kDay));
      reg.noteSeen("m" + std::to_string(i), kNow + i);
    }
    reg.persistPending();
    EXPECT_FALSE(reg.hasPending());
    // Unknown ids are ignored rather than queued.
    reg.noteSeen("nobody", kNow);
    EXPECT_FALSE(reg.hasPending());
  }
  Registry reg(dir.dbPath(), fastParams());
  ASSERT_EQ(reg.list().size(), static_cast<std::size_t>(kMeshes));
  for (int i = 0; i < kMeshes; ++i) {
    const std::string id = "m" + std::to_string(i);
    EXPECT_EQ(reg.verifyResumeToken(id, tokens[static_cast<std::size_t>(i)].token, kNow), "Mesh");
    EXPECT_EQ(reg.find(id)->lastSeenMs, kNow + i);
  }
}

TEST(Registry, ListIsSortedById) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  for (const char* id : {"charlie", "alpha", "bravo"}) {
    ASSERT_EQ(reg.registerMesh(id, id, kSecret), RegisterOutcome::Created);
  }
  const auto all = reg.list();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].meshId, "alpha");
  EXPECT_EQ(all[1].meshId, "bravo");
  EXPECT_EQ(all[2].meshId, "charlie");
}

TEST(Registry, CheckWritableSucceedsOnHealthyFile) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  EXPECT_TRUE(reg.checkWritable());
  EXPECT_TRUE(reg.checkWritable());
}

TEST(Registry, ConcurrentRegisterCreatesOnce) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  constexpr int kThreads = 8;
  std::atomic<int> created{0};
  std::atomic<int> updated{0};
  std::atomic<int> conflicts{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      // Half use the owner's secret, half another one.
      const std::string& secret = i % 2 == 0 ? kSecret : kOtherSecret;
      switch (reg.registerMesh("race", "Race", secret)) {
        case RegisterOutcome::Created:
          ++created;
          break;
        case RegisterOutcome::Updated:
          ++updated;
          break;
        case RegisterOutcome::Conflict:
          ++conflicts;
          break;
      }
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(created + updated + conflicts, kThreads);
  // Whoever won, the three others with the same secret saw Updated and the
  // four with the other secret saw Conflict.
  EXPECT_EQ(updated.load(), kThreads / 2 - 1);
  EXPECT_EQ(conflicts.load(), kThreads / 2);
  EXPECT_EQ(reg.size(), 1u);
  const bool ownerWon = reg.verifySecret("race", kSecret).has_value();
  const bool otherWon = reg.verifySecret("race", kOtherSecret).has_value();
  EXPECT_NE(ownerWon, otherWon);
}

// ---- cluster mode: replicas from the shared bucket ----

TEST(Registry, MigratesVersion2FileKeepingMeshesForTheCluster) {
  TempDir dir;
  fs::create_directories(fs::path(dir.dbPath()).parent_path());
  char hash[crypto_pwhash_STRBYTES];
  ASSERT_EQ(crypto_pwhash_str(hash, kSecret.data(), kSecret.size(), fastParams().opsLimit,
                              fastParams().memLimit),
            0);
  {
    RawDb raw(dir.dbPath());
    // Schema 2 as a relay of the previous release left it.
    raw.exec(
        "CREATE TABLE meshes (mesh_id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,"
        " secret_hash TEXT NOT NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT"
        " NULL, last_seen_ms INTEGER NOT NULL DEFAULT 0, token_hash BLOB NULL,"
        " token_expires_ms INTEGER NOT NULL DEFAULT 0, verifier BLOB NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);"
        "PRAGMA user_version = 2;");
    raw.exec(std::string("INSERT INTO meshes(mesh_id, name, secret_hash, created_at_ms,"
                         " updated_at_ms) VALUES ('old', 'Old', '") +
             hash + "', 1000, 2000)");
  }
  Registry reg(dir.dbPath(), fastParams());
  auto r = reg.replica("old");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->revision, 0u);       // never in a bucket: uploaded on the first clustered start
  EXPECT_EQ(r->secretSetMs, 2000);  // the last change is the best guess
  EXPECT_EQ(r->secretHash, hash);
  EXPECT_TRUE(reg.verifySecret("old", kSecret).has_value());
  EXPECT_EQ(reg.appliedRevision(), 0u);
  RawDb raw(dir.dbPath());
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), "3");
}

ReplicaRecord replicaOf(const Registry& reg, const std::string& id) {
  auto r = reg.replica(id);
  return r ? *r : ReplicaRecord{};
}

TEST(Registry, AppliesReplicasByRevision) {
  TempDir dir;
  Registry reg(dir.dbPath(), fastParams());
  ReplicaRecord r{"m", "Name", reg.hashSecret(kSecret), 1000, 1000, 1000, 5};
  EXPECT_EQ(reg.applyReplica(r), ReplicaChange::Added);
  EXPECT_TRUE(reg.verifySecret("m", kSecret).has_value());
  EXPECT_EQ(reg.applyReplica(r), ReplicaChange::None);  // the same revision again

  // A rename: the secret, its verifier and the token stay.
  const ResumeToken t = reg.issueResumeToken("m", kNow, kDay);
  r.name = "Renamed";
  r.revision = 6;
  EXPECT_EQ(reg.applyReplica(r), ReplicaChange::Renamed);
  EXPECT_EQ(reg.find("m")->name, "Renamed");
  EXPECT_TRUE(reg.verifyResumeToken("m", t.token, kNow).has_value());
  // An older revision arriving late changes nothing.
  ReplicaRecord stale = r;
  stale.name = "Stale";
  stale.revision = 4;
  EXPECT_EQ(reg.applyReplica(stale), ReplicaChange::None);
  EXPECT_EQ(reg.find("m")->name, "Renamed");

  // A new secret: the old one, its verifier and the token die.
  r.secretHash = reg.hashSecret(kOtherSecret);
  r.secretSetMs = 3000;
  r.revision = 7;
  EXPECT_EQ(reg.applyReplica(r), ReplicaChange::SecretChanged);
  EXPECT_FALSE(reg.verifySecret("m", kSecret).has_value());
  EXPECT_TRUE(reg.verifySecret("m", kOtherSecret).has_value());
  EXPECT_FALSE(reg.verifyResumeToken("m", t.token, kNow).has_value());

  // Removal only by a later revision; and it survives a reopen.
  EXPECT_FALSE(reg.applyReplicaRemoval("m", 7));
  EXPECT_TRUE(reg.applyReplicaRemoval("m", 8));
  EXPECT_FALSE(reg.find("m").has_value());
  reg.applyReplica(ReplicaRecord{"n", "N", reg.hashSecret(kSecret), 1, 1, 1, 9});
  reg.setAppliedRevision(9);
  {
    Registry again(dir.dbPath(), fastParams());
    EXPECT_FALSE(again.find("m").has_value());
    EXPECT_EQ(replicaOf(again, "n").revision, 9u);
    EXPECT_EQ(again.appliedRevision(), 9u);
  }
}

TEST(Registry, TokenReplicasFromAnotherRelayVerifyHere) {
  TempDir a, b;
  Registry issuer(a.dbPath(), fastParams());
  Registry other(b.dbPath(), fastParams());
  other.adoptTokenKey(issuer.tokenKey());
  const ReplicaRecord r{"m", "M", issuer.hashSecret(kSecret), 1, 1, 1000, 3};
  issuer.applyReplica(r);
  other.applyReplica(r);
  std::vector<TokenReplica> shared;
  issuer.setTokenListener([&](const TokenReplica& t) { shared.push_back(t); });
  const ResumeToken t1 = issuer.issueResumeToken("m", kNow, kDay);
  ASSERT_EQ(shared.size(), 1u);
  EXPECT_EQ(shared[0].secretSetMs, 1000);
  EXPECT_FALSE(other.verifyResumeToken("m", t1.token, kNow).has_value());
  EXPECT_TRUE(other.applyTokenReplica(shared[0]));
  EXPECT_TRUE(other.verifyResumeToken("m", t1.token, kNow).has_value());
  // An older token arriving after a newer one is ignored.
  const ResumeToken t2 = issuer.issueResumeToken("m", kNow + 1000, kDay);
  ASSERT_EQ(shared.size(), 2u);
  EXPECT_TRUE(other.applyTokenReplica(shared[1]));
  EXPECT_FALSE(other.applyTokenReplica(shared[0]));
  EXPECT_TRUE(other.verifyResumeToken("m", t2.token, kNow).has_value());
  EXPECT_FALSE(other.verifyResumeToken("m", t1.token, kNow).has_value());
  // A token of the mesh's previous secret is ignored.
  ReplicaRecord rotated = r;
  rotated.secretSetMs = 2000;
  rotated.revision = 4;
  other.applyReplica(rotated);
  EXPECT_FALSE(other.applyTokenReplica(shared[1]));
  EXPECT_FALSE(other.verifyResumeToken("m", t2.token, kNow).has_value());
}

TEST(Registry, AdoptedTokenKeySurvivesReopen) {
  TempDir a, b;
  Registry issuer(a.dbPath(), fastParams());
  issuer.registerMesh("m", "M", kSecret);
  const ResumeToken t = issuer.issueResumeToken("m", kNow, kDay);
  issuer.persistPending();
  const std::string key = issuer.tokenKey();
  {
    Registry other(b.dbPath(), fastParams());
    EXPECT_NE(other.tokenKey(), key);
    other.adoptTokenKey(key);
  }
  Registry reopened(b.dbPath(), fastParams());
  EXPECT_EQ(reopened.tokenKey(), key);
  EXPECT_THROW(reopened.adoptTokenKey("short"), std::runtime_error);
  (void)t;
}

}  // namespace
}  // namespace mesh::relay
