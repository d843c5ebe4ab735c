// The relay's database on a file system that fills up: answers stay prompt,
// the log stays readable, relaying goes on, and everything recovers once
// space is freed. A real tmpfs, mounted by the test (root only).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "support/relay_process.h"
#include "support/test_relay.h"

namespace mesh::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kAdminToken = "full-disk-admin-token-0123456789";

// A small tmpfs of its own, unmounted when the test ends.
class SmallFileSystem {
 public:
  explicit SmallFileSystem(const std::filesystem::path& where) : path_(where) {
    std::filesystem::create_directories(path_);
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, "size=2m,mode=0700") != 0) {
      error_ = std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~SmallFileSystem() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  SmallFileSystem(const SmallFileSystem&) = delete;
  SmallFileSystem& operator=(const SmallFileSystem&) = delete;

  [[nodiscard]] bool mounted() const { return mounted_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

  // Writes a filler file until the file system has no byte left.
  void fill() {
    const int fd = ::open(file("filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    const std::string block(4096, 'x');
    for (;;) {
      const ssize_t n = ::write(fd, block.data(), block.size());
      if (n < static_cast<ssize_t>(block.size())) {
        if (n >= 0) continue;  // a short write: the next one reports ENOSPC
        EXPECT_EQ(errno, ENOSPC) << std::strerror(errno);
        break;
      }
    }
    // The last bytes of a partly used page.
    while (::write(fd, "x", 1) == 1) {
    }
    ::close(fd);
  }
  void release() { std::filesystem::remove(file("filler")); }

 private:
  std::filesystem::path path_;
  bool mounted_ = false;
  std::string error_;
};

std::string registerBody(const std::string& meshId, const std::string& name = "N") {
  return R"({"meshId":")" + meshId + R"(","secret":")" + TestRelay::secretFor(meshId) +
         R"(","name":")" + name + "\"}";
}

std::unique_ptr<WsClient> authenticate(std::uint16_t port, const std::string& meshId,
                                       std::string* token = nullptr) {
  auto c = WsClient::connect(port);
  c->sendText(R"({"type":"gateway_auth","meshId":")" + meshId + R"(","secret":")" +
              TestRelay::secretFor(meshId) + "\"}");
  const std::string ok = c->expectType("gateway_auth_ok");
  if (token) *token = jsonString(ok, "resumeToken");
  return c;
}

// The stored resume-token hash of a mesh, read from the file itself (hex;
// empty when none is stored).
std::string storedTokenHash(const std::string& dbPath, const std::string& meshId) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(dbPath.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT hex(token_hash) FROM meshes WHERE mesh_id = ?1", -1, &st,
                           nullptr) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, meshId.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

// Waits until `pred` holds, up to `limit`.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

std::size_t countLines(const std::string& text, std::size_t from) {
  return static_cast<std::size_t>(
      std::count(text.begin() + static_cast<std::ptrdiff_t>(from), text.end(), '\n'));
}

std::vector<std::string> relayArgs(const std::string& dbPath) {
  return {"--db",          dbPath,      "--argon2-ops",    "1", "--argon2-mem", "8192",
          "--admin-token", kAdminToken, "--drain-timeout", "2"};
}

TEST(FullDisk, RequestsGet503AtOnceRetriesBackOffAndEverythingRecovers) {
  TempDir dir;
  SmallFileSystem fs(dir.path() / "small");
  if (!fs.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs for the full-disk test (needs root): " << fs.error();
  }
  const std::string dbPath = fs.file("mesh.db");
  auto relay = std::make_unique<RelayProcess>(MESH_RELAY_BIN, relayArgs(dbPath));
  const std::uint16_t port = relay->port();
  for (const char* id : {"mesh-a", "mesh-b", "mesh-c"}) {
    ASSERT_EQ(httpRequest(port, "POST", "/register", registerBody(id)).status, 201);
  }
  auto a = authenticate(port, "mesh-a");
  auto b = authenticate(port, "mesh-b");
  ASSERT_TRUE(eventually([&] { return !storedTokenHash(dbPath, "mesh-a").empty(); }, 5000ms));
  const std::string savedBefore = storedTokenHash(dbPath, "mesh-a");

  fs.fill();

  // Registration, new or existing mesh: 503 with a reason, not a hang.
  const auto started = std::chrono::steady_clock::now();
  const HttpResponse fresh =
      httpRequest(port, "POST", "/register", registerBody("mesh-new"), {}, "127.0.0.1", 3000ms);
  EXPECT_EQ(fresh.status, 503) << fresh.body;
  EXPECT_NE(fresh.body.find("full"), std::string::npos) << fresh.body;
  const HttpResponse again = httpRequest(
      port, "POST", "/register", registerBody("mesh-a", "Renamed"), {}, "127.0.0.1", 3000ms);
  EXPECT_EQ(again.status, 503) << again.body;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3000ms);

  // Admin writes and the readiness probe say so too.
  const std::vector<std::string> admin{std::string("Authorization: Bearer ") + kAdminToken};
  const HttpResponse removed =
      httpRequest(port, "DELETE", "/meshes/mesh-c", "", admin, "127.0.0.1", 3000ms);
  EXPECT_EQ(removed.status, 503) << removed.body;
  const HttpResponse rotated =
      httpRequest(port, "POST", "/meshes/mesh-c/secret", "", admin, "127.0.0.1", 3000ms);
  EXPECT_EQ(rotated.status, 503) << rotated.body;
  EXPECT_EQ(httpRequest(port, "GET", "/readyz", "", {}, "127.0.0.1", 3000ms).status, 503);

  // A mesh that reconnects now gets a token the relay cannot save yet.
  a.reset();
  std::string pendingToken;
  a = authenticate(port, "mesh-a", &pendingToken);

  // The failing saves do not flood the log.
  const std::size_t mark = relay->log().size();
  std::this_thread::sleep_for(2500ms);
  const std::string log = relay->log();
  EXPECT_LT(countLines(log, mark), 30u) << log.substr(mark, 4000);
  EXPECT_NE(log.find("saving resume tokens failed"), std::string::npos) << log.substr(0, 4000);

  // Meshes keep relaying meanwhile.
  a->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-b","payload":{"n":1}})");
  const std::string incoming = b->expectType("gateway_incoming");
  EXPECT_NE(incoming.find("\"n\":1"), std::string::npos) << incoming;
  b->sendText(R"({"type":"gateway_relay","targetMeshId":"mesh-a","payload":{"n":2}})");
  EXPECT_NE(a->expectType("gateway_incoming").find("\"n\":2"), std::string::npos);
  EXPECT_EQ(storedTokenHash(dbPath, "mesh-a"), savedBefore);

  fs.release();

  // Registration works again at once, and the retries save the token.
  EXPECT_EQ(httpRequest(port, "POST", "/register", registerBody("mesh-new")).status, 201);
  EXPECT_TRUE(eventually([&] { return storedTokenHash(dbPath, "mesh-a") != savedBefore; }, 20000ms))
      << relay->log();
  EXPECT_EQ(httpRequest(port, "GET", "/readyz").status, 200);
  EXPECT_EQ(httpRequest(port, "DELETE", "/meshes/mesh-c", "", admin).status, 200);
  EXPECT_NE(relay->log().find("saving resume tokens works again"), std::string::npos);

  // Nothing in the failure paths upset a sanitizer build.
  for (const char* report : {"runtime error", "AddressSanitizer"}) {
    EXPECT_EQ(relay->log().find(report), std::string::npos) << relay->log();
  }

  // Saved for real: after a kill, no shutdown save, the token still works.
  relay->signal(SIGKILL);
  relay->wait(5000ms);
  relay.reset();
  RelayProcess restarted(MESH_RELAY_BIN, relayArgs(dbPath));
  auto resumed = WsClient::connect(restarted.port());
  resumed->sendText(R"({"type":"gateway_auth","meshId":"mesh-a","resumeToken":")" + pendingToken +
                    "\"}");
  EXPECT_NO_THROW(resumed->expectType("gateway_auth_ok"));
  restarted.signal(SIGTERM);
  EXPECT_EQ(restarted.wait(10000ms), 0) << restarted.log();
}

}  // namespace
}  // namespace mesh::test
