// The keyed secret verifier: stored when a secret is known to be right,
// authoritative while it exists, killed by rotation and removal, and useless
// without its key file (a copy of the database falls back to Argon2id).
#include <gtest/gtest.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "registry.h"
#include "registry_fixtures.h"
#include "support/temp_dir.h"

namespace mesh::relay {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

using namespace test_fixtures;

// Meshes whose row holds a verifier, read from the file itself.
int verifierRows(const std::string& dbPath) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(dbPath.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  int n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM meshes WHERE verifier IS NOT NULL", -1, &st,
                         nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    n = sqlite3_column_int(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  return n;
}

TEST(RegistryVerifier, RegistrationStoresAVerifierThatDecides) {
  TempDir dir;
  Registry reg(dir.file("mesh.db"), fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  EXPECT_EQ(reg.verifierCount(), 1u);
  const auto right = reg.checkVerifier("alpha", kSecret);
  EXPECT_EQ(right.outcome, VerifierOutcome::Match);
  EXPECT_EQ(right.name, "Alpha");
  EXPECT_EQ(reg.checkVerifier("alpha", kOtherSecret).outcome, VerifierOutcome::Mismatch);
  // The same secret under another meshId is another verifier.
  ASSERT_EQ(reg.registerMesh("beta", "Beta", kOtherSecret), RegisterOutcome::Created);
  EXPECT_EQ(reg.checkVerifier("beta", kSecret).outcome, VerifierOutcome::Mismatch);
  // Unknown meshes are a mismatch, never Absent (which would cost Argon2id).
  EXPECT_EQ(reg.checkVerifier("nobody", kSecret).outcome, VerifierOutcome::Mismatch);
}

TEST(RegistryVerifier, ReopenWithTheKeyFileKeepsVerifiers) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    Registry reg(db, fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  const fs::path key = Registry::defaultVerifierKeyPath(db);
  ASSERT_TRUE(fs::exists(key));
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Registry reg(db, fastParams());
  EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Match);
  EXPECT_EQ(reg.checkVerifier("alpha", kOtherSecret).outcome, VerifierOutcome::Mismatch);
}

TEST(RegistryVerifier, DatabaseCopyWithoutKeyFallsBackToArgon2id) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    Registry reg(db, fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
    ASSERT_EQ(reg.registerMesh("beta", "Beta", kOtherSecret), RegisterOutcome::Created);
  }
  // The file alone, as a thief (or a restore without the key) would have it.
  const std::string copy = dir.file("copy.db");
  fs::copy_file(db, copy);
  ASSERT_EQ(verifierRows(copy), 2);
  {
    Registry reg(copy, fastParams());
    EXPECT_EQ(verifierRows(copy), 0);  // made with another key: dropped
    EXPECT_EQ(reg.verifierCount(), 0u);
    EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Absent);
    EXPECT_EQ(reg.checkVerifier("alpha", kOtherSecret).outcome, VerifierOutcome::Absent);
    EXPECT_FALSE(reg.verifySecret("alpha", kOtherSecret).has_value());
    EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Absent);
    // Argon2id still decides, and a right secret rebuilds the verifier.
    EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
    EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Match);
    EXPECT_EQ(reg.checkVerifier("beta", kOtherSecret).outcome, VerifierOutcome::Absent);
  }
  EXPECT_EQ(verifierRows(copy), 1);
  // The original with its own key is untouched.
  Registry reg(db, fastParams());
  EXPECT_EQ(reg.checkVerifier("beta", kOtherSecret).outcome, VerifierOutcome::Match);
}

TEST(RegistryVerifier, ExplicitKeyFileMovesWithTheDatabase) {
  TempDir dir;
  const std::string key = dir.file("elsewhere.key");
  {
    Registry reg(dir.file("a.db"), fastParams(), key);
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  EXPECT_FALSE(fs::exists(Registry::defaultVerifierKeyPath(dir.file("a.db"))));
  fs::copy_file(dir.file("a.db"), dir.file("b.db"));
  Registry reg(dir.file("b.db"), fastParams(), key);
  EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Match);
}

TEST(RegistryVerifier, MalformedKeyFileIsRefusedNotReplaced) {
  TempDir dir;
  const std::string key = dir.file("bad.key");
  {
    std::ofstream out(key);
    out << "not a key\n";
  }
  try {
    Registry reg(dir.file("mesh.db"), fastParams(), key);
    FAIL() << "a malformed key file was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("hex digits"), std::string::npos) << e.what();
  }
  std::ifstream in(key);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "not a key");
}

TEST(RegistryVerifier, RotationReplacesAndRemovalKillsTheVerifier) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  Registry reg(db, fastParams());
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  ASSERT_TRUE(reg.rotateSecret("alpha", kOtherSecret));
  EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Mismatch);
  EXPECT_EQ(reg.checkVerifier("alpha", kOtherSecret).outcome, VerifierOutcome::Match);
  EXPECT_FALSE(reg.verifySecret("alpha", kSecret).has_value());
  ASSERT_TRUE(reg.removeMesh("alpha"));
  EXPECT_EQ(reg.checkVerifier("alpha", kOtherSecret).outcome, VerifierOutcome::Mismatch);
  EXPECT_EQ(verifierRows(db), 0);
  // A mesh registered again under the id starts from its new secret only.
  ASSERT_EQ(reg.registerMesh("alpha", "Alpha again", kSecret), RegisterOutcome::Created);
  EXPECT_EQ(reg.checkVerifier("alpha", kOtherSecret).outcome, VerifierOutcome::Mismatch);
  EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Match);
}

// A check of the old secret that finishes after a rotation must not store
// the old secret's verifier over the new one.
TEST(RegistryVerifier, ArgonCheckRacingARotationStoresNothingStale) {
  TempDir dir;
  const std::string copy = dir.file("copy.db");
  {
    Registry reg(dir.file("mesh.db"), fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  fs::copy_file(dir.file("mesh.db"), copy);
  Registry reg(copy, fastParams());  // no verifiers: every check is Argon2id
  for (int i = 0; i < 20; ++i) {
    const std::string next = i % 2 ? kSecret : kOtherSecret;
    const std::string prev = i % 2 ? kOtherSecret : kSecret;
    std::thread checker([&] { (void)reg.verifySecret("alpha", prev); });
    ASSERT_TRUE(reg.rotateSecret("alpha", next));
    checker.join();
    EXPECT_EQ(reg.checkVerifier("alpha", prev).outcome, VerifierOutcome::Mismatch) << i;
    EXPECT_EQ(reg.checkVerifier("alpha", next).outcome, VerifierOutcome::Match) << i;
  }
}

// With a verifier, neither the gateway, nor /rotate-secret, nor a repeated
// registration looks at the hash: shown by a hash that says otherwise.
TEST(RegistryVerifier, VerifierDecidesWithoutTheHash) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    Registry reg(db, fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  {
    char other[crypto_pwhash_STRBYTES];
    ASSERT_EQ(crypto_pwhash_str(other, kOtherSecret.data(), kOtherSecret.size(),
                                crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN),
              0);
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    const std::string sql =
        "UPDATE meshes SET secret_hash = '" + std::string(other) + "' WHERE mesh_id = 'alpha'";
    ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  Registry reg(db, fastParams());
  EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
  EXPECT_FALSE(reg.verifySecret("alpha", kOtherSecret).has_value());
  EXPECT_EQ(reg.registerMesh("alpha", "Alpha 2", kSecret), RegisterOutcome::Updated);
  EXPECT_EQ(reg.registerMesh("alpha", "Alpha 3", kOtherSecret), RegisterOutcome::Conflict);
  EXPECT_EQ(reg.find("alpha")->name, "Alpha 2");
  EXPECT_FALSE(reg.verifySecret("nobody", kSecret).has_value());
}

TEST(RegistryVerifier, MatchAsksForARehashWhenTheCostChanged) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    Registry reg(db, fastParams());
    ASSERT_EQ(reg.registerMesh("alpha", "Alpha", kSecret), RegisterOutcome::Created);
  }
  auto stronger = fastParams();
  stronger.opsLimit += 1;
  Registry reg(db, stronger);
  const auto before = reg.checkVerifier("alpha", kSecret);
  EXPECT_EQ(before.outcome, VerifierOutcome::Match);
  EXPECT_TRUE(before.rehash);
  EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
  const auto after = reg.checkVerifier("alpha", kSecret);
  EXPECT_EQ(after.outcome, VerifierOutcome::Match);
  EXPECT_FALSE(after.rehash);
}

// An imported mesh (the original gateway's SHA-256) has no verifier until
// its first auth with the right secret, which stores one with the Argon2id
// hash that replaces the digest.
TEST(RegistryVerifier, LegacyImportGetsAVerifierAtItsFirstAuth) {
  TempDir dir;
  Registry reg(dir.file("mesh.db"), fastParams());
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(kSecret.data()),
                     kSecret.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  ASSERT_EQ(reg.importLegacyMesh("echo", "Echo", hex), LegacyImportOutcome::Imported);
  EXPECT_EQ(reg.checkVerifier("echo", kSecret).outcome, VerifierOutcome::Absent);
  EXPECT_FALSE(reg.verifySecret("echo", kOtherSecret).has_value());
  EXPECT_EQ(reg.checkVerifier("echo", kSecret).outcome, VerifierOutcome::Absent);
  EXPECT_EQ(reg.verifySecret("echo", kSecret), "Echo");  // no runner: upgraded in the call
  EXPECT_EQ(reg.checkVerifier("echo", kSecret).outcome, VerifierOutcome::Match);
  EXPECT_EQ(reg.checkVerifier("echo", kOtherSecret).outcome, VerifierOutcome::Mismatch);
}

TEST(RegistryVerifier, MigratesAVersionOneDatabase) {
  TempDir dir;
  const std::string db = dir.file("mesh.db");
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    // Schema 1 as it shipped, with one mesh hashed by a relay of that time.
    char hash[crypto_pwhash_STRBYTES];
    ASSERT_EQ(crypto_pwhash_str(hash, kSecret.data(), kSecret.size(), crypto_pwhash_OPSLIMIT_MIN,
                                crypto_pwhash_MEMLIMIT_MIN),
              0);
    const std::string sql =
        "CREATE TABLE meshes (mesh_id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,"
        " secret_hash TEXT NOT NULL, created_at_ms INTEGER NOT NULL,"
        " updated_at_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL DEFAULT 0,"
        " token_hash BLOB NULL, token_expires_ms INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);"
        "INSERT INTO meshes(mesh_id, name, secret_hash, created_at_ms, updated_at_ms)"
        " VALUES ('alpha', 'Alpha', '" +
        std::string(hash) + "', 1, 1); PRAGMA user_version = 1;";
    ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  Registry reg(db, fastParams());
  EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Absent);
  EXPECT_EQ(reg.verifySecret("alpha", kSecret), "Alpha");
  EXPECT_EQ(reg.checkVerifier("alpha", kSecret).outcome, VerifierOutcome::Match);
}

}  // namespace
}  // namespace mesh::relay
