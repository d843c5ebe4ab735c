// `mesh-relay import-legacy`: the original gateway's registry.json into the
// relay's database, by the real executable; then a relay on that database
// authenticates the imported meshes and forgets their SHA-256.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "registry.h"
#include "support/relay_process.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

struct CommandResult {
  int code = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs mesh-relay with `args` to its end (bounded); output through files.
CommandResult runRelayCommand(const TempDir& dir, const std::vector<std::string>& args) {
  const std::string outPath = dir.file("command.out");
  const std::string errPath = dir.file("command.err");
  const pid_t pid = fork();
  if (pid == 0) {
    const int out = ::open(outPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    std::vector<std::string> argv{MESH_RELAY_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargs;
    for (auto& a : argv) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    execv(MESH_RELAY_BIN, cargs.data());
    _exit(127);
  }
  CommandResult r;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "mesh-relay did not finish";
      return r;
    }
    std::this_thread::sleep_for(10ms);
  }
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(outPath);
  r.err = slurp(errPath);
  return r;
}

std::string sha256Hex(const std::string& secret) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  char hex[2 * crypto_hash_sha256_BYTES + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return hex;
}

std::string entry(const std::string& meshId, const std::string& hash, const std::string& name) {
  return R"({"meshId":")" + meshId + R"(","secretHash":")" + hash + R"(","name":")" + name + "\"}";
}

// Every row of the meshes table, one line each, ordered: what changed in the
// database and what is still in it.
std::string dumpMeshes(const std::string& dbPath) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(dbPath.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT * FROM meshes ORDER BY mesh_id", -1, &st, nullptr) ==
        SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); ++c) {
          const unsigned char* v = sqlite3_column_text(st, c);
          out += v ? reinterpret_cast<const char*>(v) : "NULL";
          out += '|';
        }
        out += '\n';
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

std::string storedSecretHash(const std::string& dbPath, const std::string& meshId) {
  std::istringstream rows(dumpMeshes(dbPath));
  for (std::string row; std::getline(rows, row);) {
    if (row.rfind(meshId + "|", 0) == 0) {
      // mesh_id|name|secret_hash|...
      const auto first = row.find('|');
      const auto second = row.find('|', first + 1);
      const auto third = row.find('|', second + 1);
      return row.substr(second + 1, third - second - 1);
    }
  }
  return {};
}

std::vector<std::string> relayArgs(const std::string& dbPath) {
  return {"--db", dbPath, "--argon2-ops", "1", "--argon2-mem", "8192"};
}

// A secret-based auth; the first frame of the answer.
std::string authAnswer(std::uint16_t port, const std::string& meshId, const std::string& secret,
                       std::unique_ptr<WsClient>* keep = nullptr) {
  auto c = WsClient::connect(port);
  c->sendText(R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" + secret + "\"}");
  auto m = c->recv();
  if (keep) *keep = std::move(c);
  return m.data;
}

TEST(LegacyImport, ImportsOnceRefusesBadEntriesAndUpgradesOnFirstAuth) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir;
  const std::string dbPath = (dir.path() / "data" / "mesh.db").string();
  const std::string secretA = "legacy-secret-of-alpha";
  const std::string secretB = "legacy-secret-of-bravo";
  const std::string takenSecret = TestRelay::secretFor("taken");

  // A mesh registered here already, under the id an old entry also uses.
  {
    RelayProcess relay(MESH_RELAY_BIN, relayArgs(dbPath));
    const std::string body =
        R"({"meshId":"taken","secret":")" + takenSecret + R"(","name":"Here first"})";
    ASSERT_EQ(httpRequest(relay.port(), "POST", "/register", body).status, 201);
    relay.signal(SIGTERM);
    ASSERT_EQ(relay.wait(10000ms), 0);
  }

  const std::string hashA = sha256Hex(secretA);
  const std::string file = dir.file("registry.json");
  {
    std::ofstream out(file);
    out << "[" << entry("alpha", hashA, "Alpha") << ","
        << entry("bravo", sha256Hex(secretB), "Bravo") << ","
        << entry("alpha", sha256Hex("a-second-alpha-secret"), "Alpha again") << ","
        << entry("taken", sha256Hex("the-old-gateways-secret"), "Old taken") << ","
        << entry("bad id!", sha256Hex("whatever-secret-000"), "Bad id") << ","
        << entry("charlie", "not-a-sha256", "Charlie") << ","
        << entry("delta", hashA.substr(0, 63), "Delta") << "]";
  }

  const CommandResult first = runRelayCommand(dir, {"import-legacy", file, "--db", dbPath});
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_NE(first.out.find("imported 2, skipped 2 (already registered), refused 3"),
            std::string::npos)
      << first.out;
  EXPECT_NE(first.err.find("skipped entry 4 (taken)"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("entry 5: bad meshId"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("entry 6 (charlie): bad secretHash"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("entry 7 (delta): bad secretHash"), std::string::npos) << first.err;
  // A hash is as good as the secret to a guesser: never printed.
  EXPECT_EQ(first.err.find(hashA), std::string::npos) << first.err;
  EXPECT_EQ(first.out.find(hashA), std::string::npos) << first.out;

  // The second run changes nothing.
  const std::string afterFirst = dumpMeshes(dbPath);
  EXPECT_EQ(storedSecretHash(dbPath, "alpha"), "$legacy-sha256$" + hashA);
  const CommandResult second = runRelayCommand(dir, {"--db", dbPath, "import-legacy", file});
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_NE(second.out.find("imported 0, skipped 4 (already registered), refused 3"),
            std::string::npos)
      << second.out;
  EXPECT_EQ(dumpMeshes(dbPath), afterFirst);

  // A file that cannot be read or is not an array: non-zero, nothing changes.
  const CommandResult missing =
      runRelayCommand(dir, {"import-legacy", dir.file("nothing.json"), "--db", dbPath});
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.err.find("cannot read"), std::string::npos) << missing.err;
  for (const char* bad : {"{\"meshId\":\"x\"}", "[{\"meshId\":", ""}) {
    std::ofstream(dir.file("bad.json")) << bad;
    const CommandResult invalid =
        runRelayCommand(dir, {"import-legacy", dir.file("bad.json"), "--db", dbPath});
    EXPECT_NE(invalid.code, 0) << bad;
    EXPECT_NE(invalid.err.find("bad.json"), std::string::npos) << invalid.err;
  }
  EXPECT_EQ(dumpMeshes(dbPath), afterFirst);

  // Until the first auth the digest is in the file (checked again below).
  EXPECT_NE(slurp(dbPath).find(hashA), std::string::npos);

  RelayProcess relay(MESH_RELAY_BIN, relayArgs(dbPath));
  const std::uint16_t port = relay.port();

  // A wrong secret is refused, and changes nothing.
  const std::string wrong = authAnswer(port, "alpha", "not-alphas-secret-00");
  EXPECT_EQ(jsonString(wrong, "code"), "invalid_credentials") << wrong;
  EXPECT_EQ(storedSecretHash(dbPath, "alpha"), "$legacy-sha256$" + hashA);

  // The right one gets in; its SHA-256 gives way to an Argon2id hash.
  std::unique_ptr<WsClient> alpha;
  const std::string ok = authAnswer(port, "alpha", secretA, &alpha);
  EXPECT_EQ(jsonString(ok, "type"), "gateway_auth_ok") << ok;
  EXPECT_EQ(jsonString(ok, "name"), "Alpha");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (storedSecretHash(dbPath, "alpha").rfind("$argon2id$", 0) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(storedSecretHash(dbPath, "alpha").rfind("$argon2id$", 0), 0u)
      << storedSecretHash(dbPath, "alpha");
  EXPECT_EQ(dumpMeshes(dbPath).find(hashA), std::string::npos) << dumpMeshes(dbPath);

  // From then on the Argon2id hash decides.
  EXPECT_EQ(jsonString(authAnswer(port, "alpha", "not-alphas-secret-00"), "code"),
            "invalid_credentials");
  alpha.reset();
  EXPECT_EQ(jsonString(authAnswer(port, "alpha", secretA, &alpha), "type"), "gateway_auth_ok");

  // POST /register with the old secret works for an imported mesh (and
  // upgrades it too); with another secret it is a conflict.
  const std::string renameB =
      R"({"meshId":"bravo","secret":")" + secretB + R"(","name":"Bravo renamed"})";
  EXPECT_EQ(httpRequest(port, "POST", "/register", renameB).status, 200);
  const std::string stealB =
      R"({"meshId":"bravo","secret":"someone-elses-secret-0","name":"Mine"})";
  EXPECT_EQ(httpRequest(port, "POST", "/register", stealB).status, 409);
  EXPECT_EQ(storedSecretHash(dbPath, "bravo").rfind("$argon2id$", 0), 0u);
  std::unique_ptr<WsClient> bravo;
  const std::string okB = authAnswer(port, "bravo", secretB, &bravo);
  EXPECT_EQ(jsonString(okB, "name"), "Bravo renamed") << okB;

  // The mesh that was here first kept its own secret.
  EXPECT_EQ(jsonString(authAnswer(port, "taken", "the-old-gateways-secret"), "code"),
            "invalid_credentials");
  EXPECT_EQ(jsonString(authAnswer(port, "taken", takenSecret), "type"), "gateway_auth_ok");

  // The imported meshes relay like any other.
  alpha->sendText(R"({"type":"gateway_relay","targetMeshId":"bravo","payload":{"hi":1}})");
  const std::string incoming = bravo->expectType("gateway_incoming");
  EXPECT_EQ(jsonString(incoming, "fromMeshId"), "alpha") << incoming;

  // Once the relay has stopped, no byte of the files holds the digest.
  alpha.reset();
  bravo.reset();
  relay.signal(SIGTERM);
  ASSERT_EQ(relay.wait(10000ms), 0) << relay.log();
  for (const char* suffix : {"", "-wal"}) {
    const std::string bytes = slurp(dbPath + suffix);
    EXPECT_EQ(bytes.find(hashA), std::string::npos) << "digest still in mesh.db" << suffix;
  }
}

TEST(LegacyImport, RegistryChecksTheDigestInConstantTimeAndReplacesIt) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir;
  const std::string dbPath = dir.file("mesh.db");
  relay::Argon2Params fast;
  fast.opsLimit = 1;
  fast.memLimit = 8192;
  const std::string secret = "the-original-secret-0";
  std::string upper = sha256Hex(secret);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  {
    relay::Registry registry(dbPath, fast);
    EXPECT_EQ(registry.importLegacyMesh("echo", "Echo", upper),
              relay::LegacyImportOutcome::Imported);
    EXPECT_EQ(registry.importLegacyMesh("echo", "Other", sha256Hex("x")),
              relay::LegacyImportOutcome::Exists);
    ASSERT_TRUE(registry.find("echo"));
    EXPECT_EQ(registry.find("echo")->name, "Echo");
    EXPECT_FALSE(registry.verifySecret("echo", "the-original-secret-1"));
    EXPECT_FALSE(registry.verifySecret("echo", ""));
    // No background runner: the upgrade happens in the call.
    EXPECT_EQ(registry.verifySecret("echo", secret), "Echo");
  }
  EXPECT_EQ(storedSecretHash(dbPath, "echo").rfind("$argon2id$", 0), 0u);
  relay::Registry reopened(dbPath, fast);
  EXPECT_EQ(reopened.verifySecret("echo", secret), "Echo");
  EXPECT_FALSE(reopened.verifySecret("echo", "the-original-secret-1"));
}

}  // namespace
}  // namespace mesh::test
