// meshctl end to end: the real executable against a real relay, checked by
// exit code and output as a script would.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <signal.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "node_harness.h"
#include "relay_runner.h"

namespace mesh::test {
namespace {

using CtlRun = ProcessResult;

class Meshctl : public ::testing::Test {
 protected:
  void SetUp() override {
    relay = std::make_unique<RelayRunner>(dir);
    relay->setAdminToken(adminToken);
    relay->start();
  }

  // Runs meshctl to its end (bounded) with `env` lines added.
  CtlRun run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    return runToEnd(MESH_MESHCTL_BIN, args, dir, env);
  }

  std::vector<std::string> withCredentials(std::vector<std::string> args, const std::string& id,
                                           const std::string& secret) {
    args.insert(args.end(), {"--url", relay->gatewayUrl(), "--mesh-id", id, "--secret", secret,
                             "--timeout", "5"});
    return args;
  }

  // An admin subcommand against this relay, the token (if any) as a flag and
  // none inherited from the environment.
  CtlRun admin(std::vector<std::string> args, const std::string& token) {
    args.insert(args.end(), {"--url", relay->gatewayUrl(), "--timeout", "5"});
    if (!token.empty()) args.insert(args.end(), {"--admin-token", token});
    return run(args, {"ADMIN_TOKEN="});
  }

  // Whether a node with this secret gets in, by meshctl's exit code.
  int discoverAs(const std::string& id, const std::string& secret) {
    return run(withCredentials({"discover"}, id, secret)).code;
  }

  TempDir dir;
  std::string adminToken;  // the relay's; set before SetUp to have one
  std::unique_ptr<RelayRunner> relay;
};

constexpr const char* kAdminToken = "admin-token-for-meshctl-tests-0123";

class MeshctlAdmin : public Meshctl {
 protected:
  MeshctlAdmin() { adminToken = kAdminToken; }
};

std::string valueOf(const std::string& envLines, const std::string& key) {
  std::istringstream in(envLines);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  return {};
}

TEST_F(Meshctl, RegistersAndPrintsEnvLines) {
  const CtlRun r =
      run({"register", "--url", relay->gatewayUrl(), "--mesh-id", "delta", "--name", "Delta"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(valueOf(r.out, "MESH_ID"), "delta");
  EXPECT_EQ(valueOf(r.out, "MESH_GATEWAY_URL"), relay->gatewayUrl());
  const std::string secret = valueOf(r.out, "MESH_SECRET");
  EXPECT_GE(secret.size(), 40u);

  // Same secret again: fine. Another secret: refused with code 4.
  EXPECT_EQ(run({"register", "--url", relay->gatewayUrl(), "--mesh-id", "delta", "--name",
                 "Delta 2", "--secret", secret})
                .code,
            0);
  const CtlRun conflict = run({"register", "--url", relay->gatewayUrl(), "--mesh-id", "delta",
                               "--name", "Delta", "--secret", "some-other-secret-123"});
  EXPECT_EQ(conflict.code, 4);
  EXPECT_NE(conflict.err.find("another secret"), std::string::npos) << conflict.err;
}

TEST_F(Meshctl, HealthDiscoverSendBroadcastAndListen) {
  relay->registerMesh("echo", "echo-secret-0123456789", "Echo");
  relay->registerMesh("fox", "fox-secret-0123456789", "Fox");

  const CtlRun health = run({"health", "--url", relay->gatewayUrl()});
  ASSERT_EQ(health.code, 0) << health.err;
  EXPECT_NE(health.out.find("\"ok\":true"), std::string::npos);

  // listen runs in the background until SIGINT; its lines go to a file.
  const std::string listenOut = dir.file("listen.out");
  const pid_t listener =
      spawnProcess(MESH_MESHCTL_BIN, withCredentials({"listen"}, "echo", "echo-secret-0123456789"),
                   dir.file("listen.err"), listenOut);
  // It is online once discover run as fox lists it.
  bool online = false;
  for (int attempt = 0; attempt < 50 && !online; ++attempt) {
    const CtlRun d = run(withCredentials({"discover"}, "fox", "fox-secret-0123456789"));
    ASSERT_EQ(d.code, 0) << d.err;
    online = d.out.find("\"meshId\":\"echo\"") != std::string::npos;
  }
  ASSERT_TRUE(online);

  const CtlRun sent = run(withCredentials({"send", "echo", R"({"text":"hello echo"})"}, "fox",
                                          "fox-secret-0123456789"));
  ASSERT_EQ(sent.code, 0) << sent.err;
  EXPECT_NE(sent.out.find("\"status\":\"delivered\""), std::string::npos) << sent.out;
  const CtlRun all =
      run(withCredentials({"broadcast", R"({"text":"to all"})"}, "fox", "fox-secret-0123456789"));
  ASSERT_EQ(all.code, 0) << all.err;

  ::kill(listener, SIGINT);
  EXPECT_EQ(waitProcess(listener, std::chrono::seconds(10)), 0);
  const std::string lines = readFile(listenOut);
  EXPECT_NE(lines.find(R"("type":"gateway_auth_ok")"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("payload":{"text":"hello echo"})"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("payload":{"text":"to all"})"), std::string::npos) << lines;
  std::istringstream in(lines);
  for (std::string line; std::getline(in, line);) {
    EXPECT_EQ(line.front(), '{');
    EXPECT_EQ(line.back(), '}');
  }
}

TEST_F(Meshctl, FailuresHaveDistinctExitCodes) {
  relay->registerMesh("golf", "golf-secret-0123456789", "Golf");
  const CtlRun offline =
      run(withCredentials({"send", "nobody", "{}"}, "golf", "golf-secret-0123456789"));
  EXPECT_EQ(offline.code, 5) << offline.err;

  const CtlRun badJson =
      run(withCredentials({"send", "golf", "{not json"}, "golf", "golf-secret-0123456789"));
  EXPECT_EQ(badJson.code, 2);
  EXPECT_NE(badJson.err.find("JSON"), std::string::npos) << badJson.err;

  const CtlRun badSecret = run(withCredentials({"broadcast", "{}"}, "golf", "wrong-secret-000000"));
  EXPECT_EQ(badSecret.code, 4);
  EXPECT_NE(badSecret.err.find("authentication failed"), std::string::npos) << badSecret.err;

  const CtlRun usage = run({"send"});
  EXPECT_EQ(usage.code, 2);

  relay->stop();
  const CtlRun down = run({"health", "--url", relay->gatewayUrl(), "--timeout", "2"});
  EXPECT_EQ(down.code, 3);
  EXPECT_NE(down.err.find("unreachable"), std::string::npos) << down.err;
  const CtlRun downDiscover = run(withCredentials({"discover"}, "golf", "golf-secret-0123456789"));
  EXPECT_EQ(downDiscover.code, 3) << downDiscover.err;
}

// Every admin subcommand refuses to run without a token (usage), and the
// relay refuses a wrong one (bad credentials) with nothing changed; the token
// is never echoed.
TEST_F(MeshctlAdmin, AdminSubcommandsNeedTheRightToken) {
  relay->registerMesh("hotel", "hotel-secret-0123456789", "Hotel");
  const std::string wrong = "not-the-admin-token-42";
  const std::vector<std::vector<std::string>> commands{
      {"meshes"},          {"meshes", "--json"},
      {"mesh", "hotel"},   {"delete", "hotel"},
      {"rotate", "hotel"}, {"rotate", "hotel", "--secret", "chosen-secret-0123456789"},
      {"recent", "hotel"}};
  for (const auto& command : commands) {
    const CtlRun none = admin(command, "");
    EXPECT_EQ(none.code, 2) << command[0] << ": " << none.err;
    EXPECT_NE(none.err.find("--admin-token (or ADMIN_TOKEN) is required"), std::string::npos)
        << none.err;
    EXPECT_EQ(none.out, "");

    const CtlRun bad = admin(command, wrong);
    EXPECT_EQ(bad.code, 4) << command[0] << ": " << bad.err;
    EXPECT_NE(bad.err.find("bad credentials"), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("401"), std::string::npos) << bad.err;
    EXPECT_EQ(bad.out, "");
    EXPECT_EQ(bad.err.find(wrong), std::string::npos) << bad.err;
  }
  // Neither the refused delete nor the refused rotations changed anything.
  EXPECT_EQ(discoverAs("hotel", "hotel-secret-0123456789"), 0);

  // The right token, from the environment this time; it is not printed either.
  const CtlRun listed =
      run({"meshes", "--url", relay->gatewayUrl()}, {std::string("ADMIN_TOKEN=") + kAdminToken});
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_NE(listed.out.find("hotel"), std::string::npos) << listed.out;
  EXPECT_EQ(listed.out.find(kAdminToken), std::string::npos);
  EXPECT_EQ(listed.err.find(kAdminToken), std::string::npos);
  // A flag wins over the environment.
  const CtlRun flagWins = run({"meshes", "--url", relay->gatewayUrl(), "--admin-token", wrong},
                              {std::string("ADMIN_TOKEN=") + kAdminToken});
  EXPECT_EQ(flagWins.code, 4) << flagWins.err;
}

TEST_F(Meshctl, AdminSubcommandsAreRefusedWhenTheRelayHasNoToken) {
  relay->registerMesh("india", "india-secret-0123456789", "India");
  const CtlRun listed = admin({"meshes"}, "any-token-at-all-000");
  EXPECT_EQ(listed.code, 4) << listed.err;
  EXPECT_NE(listed.err.find("bad credentials"), std::string::npos) << listed.err;
  EXPECT_EQ(admin({"delete", "india"}, "any-token-at-all-000").code, 4);
  EXPECT_EQ(discoverAs("india", "india-secret-0123456789"), 0);
}

TEST_F(MeshctlAdmin, ListsMeshesAsTableAndJson) {
  relay->registerMesh("juliet", "juliet-secret-0123456789", "Juliet");
  relay->registerMesh("kilo", "kilo-secret-0123456789", "Kilo Mesh");

  // juliet comes online and stays, as a node would.
  const pid_t listener = spawnProcess(
      MESH_MESHCTL_BIN, withCredentials({"listen"}, "juliet", "juliet-secret-0123456789"),
      dir.file("listen.err"), dir.file("listen.out"));
  bool online = false;
  for (int attempt = 0; attempt < 100 && !online; ++attempt) {
    const CtlRun one = admin({"mesh", "juliet"}, kAdminToken);
    ASSERT_EQ(one.code, 0) << one.err;
    online = one.out.find("\"online\":true") != std::string::npos;
    if (!online) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(online);

  const CtlRun json = admin({"meshes", "--json"}, kAdminToken);
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(std::count(json.out.begin(), json.out.end(), '\n'), 1) << json.out;
  rapidjson::Document doc;
  doc.Parse(json.out.c_str());
  ASSERT_TRUE(!doc.HasParseError() && doc.IsArray()) << json.out;
  ASSERT_EQ(doc.Size(), 2u) << json.out;
  EXPECT_STREQ(doc[0]["meshId"].GetString(), "juliet");
  EXPECT_TRUE(doc[0]["online"].GetBool());
  EXPECT_TRUE(doc[0]["lastSeen"].IsString());
  EXPECT_STREQ(doc[1]["meshId"].GetString(), "kilo");
  EXPECT_STREQ(doc[1]["name"].GetString(), "Kilo Mesh");
  EXPECT_FALSE(doc[1]["online"].GetBool());
  EXPECT_TRUE(doc[1]["lastSeen"].IsNull());
  EXPECT_TRUE(doc[1]["createdAt"].IsString());

  // The table: a header, then one aligned line per mesh.
  const CtlRun table = admin({"meshes"}, kAdminToken);
  ASSERT_EQ(table.code, 0) << table.err;
  std::vector<std::string> lines;
  std::istringstream in(table.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u) << table.out;
  EXPECT_EQ(lines[0].rfind("MESH ID", 0), 0u) << table.out;
  const auto nameColumn = lines[0].find("NAME");
  EXPECT_EQ(lines[1].find("Juliet"), nameColumn) << table.out;
  EXPECT_EQ(lines[2].find("Kilo Mesh"), nameColumn) << table.out;
  EXPECT_NE(lines[1].find("yes"), std::string::npos) << table.out;
  EXPECT_NE(lines[2].find(" no "), std::string::npos) << table.out;
  EXPECT_NE(lines[2].find("never"), std::string::npos) << table.out;

  // One mesh; an unknown one is "not found"; a bad meshId never leaves meshctl.
  const CtlRun one = admin({"mesh", "kilo"}, kAdminToken);
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_NE(one.out.find("\"meshId\":\"kilo\""), std::string::npos) << one.out;
  const CtlRun missing = admin({"mesh", "lima"}, kAdminToken);
  EXPECT_EQ(missing.code, 7) << missing.err;
  EXPECT_NE(missing.err.find("not found"), std::string::npos) << missing.err;
  EXPECT_EQ(admin({"mesh", "kilo/secret"}, kAdminToken).code, 2);

  // The relay's address from MESH_GATEWAY_URL, like every other subcommand.
  const CtlRun fromEnv = run({"mesh", "kilo", "--admin-token", kAdminToken},
                             {"MESH_GATEWAY_URL=" + relay->gatewayUrl()});
  EXPECT_EQ(fromEnv.code, 0) << fromEnv.err;

  ::kill(listener, SIGINT);
  EXPECT_EQ(waitProcess(listener, std::chrono::seconds(10)), 0);
}

TEST_F(MeshctlAdmin, RecentPrintsTheFlightRecorder) {
  relay->registerMesh("oscar", "oscar-secret-0123456789", "Oscar");
  // A relay to a mesh that is not there, and a wrong secret from elsewhere.
  const CtlRun sent = run(withCredentials({"send", "papa", R"({"text":"not recorded"})"}, "oscar",
                                          "oscar-secret-0123456789"));
  EXPECT_EQ(sent.code, 5) << sent.err;
  EXPECT_EQ(discoverAs("oscar", "wrong-secret-0123456789"), 4);

  const CtlRun table = admin({"recent", "oscar"}, kAdminToken);
  ASSERT_EQ(table.code, 0) << table.err;
  std::vector<std::string> lines;
  std::istringstream in(table.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  // Header; auth, relay (offline); the failed auth.
  ASSERT_EQ(lines.size(), 4u) << table.out;
  EXPECT_EQ(lines[0].rfind("TIME", 0), 0u) << table.out;
  const auto outcomeColumn = lines[0].find("OUTCOME");
  EXPECT_EQ(lines[1].find("ok"), outcomeColumn) << table.out;
  EXPECT_NE(lines[2].find("gateway_relay"), std::string::npos) << table.out;
  EXPECT_NE(lines[2].find("to papa"), std::string::npos) << table.out;
  EXPECT_EQ(lines[2].find("offline"), outcomeColumn) << table.out;
  EXPECT_NE(lines[3].find("127.0.0.1"), std::string::npos) << table.out;
  EXPECT_EQ(lines[3].find("invalid_credentials"), outcomeColumn) << table.out;
  EXPECT_EQ(table.out.find("not recorded"), std::string::npos) << table.out;

  const CtlRun json = admin({"recent", "oscar", "--json"}, kAdminToken);
  ASSERT_EQ(json.code, 0) << json.err;
  rapidjson::Document doc;
  doc.Parse(json.out.c_str());
  ASSERT_TRUE(!doc.HasParseError() && doc.IsObject()) << json.out;
  EXPECT_EQ(doc["records"].Size(), 3u) << json.out;

  const CtlRun missing = admin({"recent", "quebec"}, kAdminToken);
  EXPECT_EQ(missing.code, 7) << missing.err;
  EXPECT_EQ(admin({"recent", "bad/id"}, kAdminToken).code, 2);
}

TEST_F(MeshctlAdmin, RotateReplacesTheSecret) {
  relay->registerMesh("mike", "mike-secret-0123456789", "Mike");

  // No secret given: a strong one is made and printed as env lines.
  const CtlRun rotated = admin({"rotate", "mike"}, kAdminToken);
  ASSERT_EQ(rotated.code, 0) << rotated.err;
  EXPECT_EQ(valueOf(rotated.out, "MESH_ID"), "mike");
  EXPECT_EQ(valueOf(rotated.out, "MESH_GATEWAY_URL"), relay->gatewayUrl());
  const std::string generated = valueOf(rotated.out, "MESH_SECRET");
  EXPECT_GE(generated.size(), 40u);
  EXPECT_EQ(rotated.out.find(kAdminToken), std::string::npos);
  EXPECT_EQ(discoverAs("mike", "mike-secret-0123456789"), 4);
  EXPECT_EQ(discoverAs("mike", generated), 0);

  // A chosen secret.
  const std::string chosen = "chosen-secret-for-mike-0123";
  const CtlRun again = admin({"rotate", "mike", "--secret", chosen}, kAdminToken);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(valueOf(again.out, "MESH_SECRET"), chosen);
  EXPECT_EQ(discoverAs("mike", generated), 4);
  EXPECT_EQ(discoverAs("mike", chosen), 0);

  // Refused before asking the relay: a short secret, a bad meshId.
  const CtlRun tooShort = admin({"rotate", "mike", "--secret", "short"}, kAdminToken);
  EXPECT_EQ(tooShort.code, 2);
  EXPECT_NE(tooShort.err.find("16 to 256 bytes"), std::string::npos) << tooShort.err;
  EXPECT_EQ(admin({"rotate", "../health"}, kAdminToken).code, 2);
  EXPECT_EQ(discoverAs("mike", chosen), 0);

  const CtlRun unknown = admin({"rotate", "november"}, kAdminToken);
  EXPECT_EQ(unknown.code, 7) << unknown.err;
  EXPECT_EQ(unknown.out, "");
}

TEST_F(MeshctlAdmin, DeleteRemovesTheMesh) {
  relay->registerMesh("oscar", "oscar-secret-0123456789", "Oscar");
  relay->registerMesh("papa", "papa-secret-0123456789", "Papa");

  const CtlRun deleted = admin({"delete", "oscar"}, kAdminToken);
  ASSERT_EQ(deleted.code, 0) << deleted.err;
  EXPECT_NE(deleted.err.find("deleted oscar"), std::string::npos) << deleted.err;

  EXPECT_EQ(admin({"mesh", "oscar"}, kAdminToken).code, 7);
  const CtlRun listed = admin({"meshes", "--json"}, kAdminToken);
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_EQ(listed.out.find("oscar"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("papa"), std::string::npos) << listed.out;
  EXPECT_EQ(discoverAs("oscar", "oscar-secret-0123456789"), 4);
  EXPECT_EQ(discoverAs("papa", "papa-secret-0123456789"), 0);

  const CtlRun twice = admin({"delete", "oscar"}, kAdminToken);
  EXPECT_EQ(twice.code, 7) << twice.err;
  EXPECT_NE(twice.err.find("not found"), std::string::npos) << twice.err;
  EXPECT_EQ(admin({"delete", "a b"}, kAdminToken).code, 2);
  EXPECT_EQ(admin({"delete"}, kAdminToken).code, 2);

  // The meshId is free again: anyone may register it.
  relay->registerMesh("oscar", "new-oscar-secret-0123456789", "Oscar 2");
  EXPECT_EQ(discoverAs("oscar", "new-oscar-secret-0123456789"), 0);
}

TEST_F(Meshctl, RotateOwnNeedsTheCurrentSecret) {
  relay->registerMesh("quebec", "quebec-secret-0123456789", "Quebec");
  const auto rotateOwn = [this](std::vector<std::string> extra, const std::string& secret) {
    std::vector<std::string> args{"rotate-own"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(withCredentials(args, "quebec", secret));
  };

  const CtlRun wrong = rotateOwn({}, "not-quebecs-secret-000");
  EXPECT_EQ(wrong.code, 4) << wrong.err;
  EXPECT_NE(wrong.err.find("bad credentials"), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.out, "");
  EXPECT_EQ(discoverAs("quebec", "quebec-secret-0123456789"), 0);

  const std::string chosen = "quebec-second-secret-0123";
  const CtlRun rotated = rotateOwn({"--new-secret", chosen}, "quebec-secret-0123456789");
  ASSERT_EQ(rotated.code, 0) << rotated.err;
  EXPECT_EQ(valueOf(rotated.out, "MESH_ID"), "quebec");
  EXPECT_EQ(valueOf(rotated.out, "MESH_SECRET"), chosen);
  EXPECT_EQ(valueOf(rotated.out, "MESH_GATEWAY_URL"), relay->gatewayUrl());
  EXPECT_EQ(discoverAs("quebec", "quebec-secret-0123456789"), 4);
  EXPECT_EQ(discoverAs("quebec", chosen), 0);

  // No new secret given: a strong one; the credentials from the environment.
  const CtlRun generated = run({"rotate-own", "--url", relay->gatewayUrl()},
                               {"MESH_ID=quebec", "MESH_SECRET=" + chosen});
  ASSERT_EQ(generated.code, 0) << generated.err;
  const std::string fresh = valueOf(generated.out, "MESH_SECRET");
  EXPECT_GE(fresh.size(), 40u);
  EXPECT_EQ(discoverAs("quebec", chosen), 4);
  EXPECT_EQ(discoverAs("quebec", fresh), 0);

  // Usage errors, and an unknown mesh looks like a wrong secret.
  EXPECT_EQ(rotateOwn({"--new-secret", "short"}, fresh).code, 2);
  EXPECT_EQ(
      run({"rotate-own", "--url", relay->gatewayUrl(), "--mesh-id", "quebec"}, {"MESH_SECRET="})
          .code,
      2);
  EXPECT_EQ(run(withCredentials({"rotate-own"}, "romeo", fresh)).code, 4);
  EXPECT_EQ(discoverAs("quebec", fresh), 0);
}

TEST_F(MeshctlAdmin, UnreachableRelay) {
  relay->stop();
  const CtlRun listed = admin({"meshes"}, kAdminToken);
  EXPECT_EQ(listed.code, 3) << listed.err;
  EXPECT_NE(listed.err.find("unreachable"), std::string::npos) << listed.err;
  EXPECT_EQ(admin({"rotate", "sierra"}, kAdminToken).code, 3);
  EXPECT_EQ(run(withCredentials({"rotate-own"}, "sierra", "sierra-secret-0123456789")).code, 3);
}

class MeshctlListen : public MeshctlAdmin {
 protected:
  // Starts `meshctl listen` as `id` in the background (output in
  // listen.out and listen.err) and waits until the relay lists it online.
  pid_t listenAs(const std::string& id, const std::string& secret) {
    const pid_t pid = spawnProcess(MESH_MESHCTL_BIN, withCredentials({"listen"}, id, secret),
                                   dir.file("listen.err"), dir.file("listen.out"));
    relay->registerMesh("watcher", "watcher-secret-0123456789", "Watcher");
    for (int attempt = 0; attempt < 50; ++attempt) {
      const CtlRun d = run(withCredentials({"discover"}, "watcher", "watcher-secret-0123456789"));
      if (d.out.find("\"meshId\":\"" + id + "\"") != std::string::npos) return pid;
    }
    ::kill(pid, SIGKILL);
    (void)waitProcess(pid, std::chrono::seconds(5));
    ADD_FAILURE() << "listen never came online: " << readFile(dir.file("listen.err"));
    return -1;
  }
};

TEST_F(MeshctlListen, ExitsWithTheReasonWhenAnotherConnectionTakesOver) {
  relay->registerMesh("tango", "tango-secret-0123456789", "Tango");
  const pid_t listener = listenAs("tango", "tango-secret-0123456789");
  ASSERT_GT(listener, 0);
  // The same mesh connects elsewhere: the listener's session is replaced.
  ASSERT_EQ(discoverAs("tango", "tango-secret-0123456789"), 0);
  const int code = waitProcess(listener, std::chrono::seconds(15));
  if (code == -1) ::kill(listener, SIGKILL);
  EXPECT_EQ(code, 8) << readFile(dir.file("listen.err"));
  const std::string err = readFile(dir.file("listen.err"));
  EXPECT_NE(err.find("listen stopped"), std::string::npos) << err;
  EXPECT_NE(err.find("another connection"), std::string::npos) << err;
  // The transcript shows the auth, but not the resume token it carried.
  const std::string out = readFile(dir.file("listen.out"));
  EXPECT_NE(out.find(R"("type":"gateway_auth_ok")"), std::string::npos) << out;
  EXPECT_EQ(out.find("resumeToken"), std::string::npos) << out;
}

TEST_F(MeshctlListen, ExitsWithTheReasonWhenItsCredentialsAreRevoked) {
  relay->registerMesh("uniform", "uniform-secret-0123456789", "Uniform");
  const pid_t listener = listenAs("uniform", "uniform-secret-0123456789");
  ASSERT_GT(listener, 0);
  ASSERT_EQ(admin({"rotate", "uniform"}, kAdminToken).code, 0);
  const int code = waitProcess(listener, std::chrono::seconds(15));
  if (code == -1) ::kill(listener, SIGKILL);
  EXPECT_EQ(code, 4) << readFile(dir.file("listen.err"));
  const std::string err = readFile(dir.file("listen.err"));
  EXPECT_NE(err.find("listen stopped: authentication failed"), std::string::npos) << err;
  EXPECT_EQ(readFile(dir.file("listen.out")).find("resumeToken"), std::string::npos);
  // Other meshes are served as before.
  EXPECT_EQ(discoverAs("watcher", "watcher-secret-0123456789"), 0);
}

TEST_F(MeshctlListen, SaysSoWhenTheConnectionDropsAndComesBack) {
  relay->registerMesh("xray", "xray-secret-0123456789", "Xray");
  const pid_t listener = listenAs("xray", "xray-secret-0123456789");
  ASSERT_GT(listener, 0);
  const auto stderrHas = [this](const std::string& text, std::size_t times) {
    for (int i = 0; i < 200; ++i) {
      const std::string err = readFile(dir.file("listen.err"));
      std::size_t found = 0;
      for (auto at = err.find(text); at != std::string::npos; at = err.find(text, at + 1)) ++found;
      if (found >= times) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  ASSERT_EQ(relay->stop(), 0);
  EXPECT_TRUE(stderrHas("meshctl: disconnected", 1)) << readFile(dir.file("listen.err"));
  relay->start();
  EXPECT_TRUE(stderrHas("meshctl: connected", 2)) << readFile(dir.file("listen.err"));
  ::kill(listener, SIGINT);
  EXPECT_EQ(waitProcess(listener, std::chrono::seconds(10)), 0);
}

TEST_F(Meshctl, RegisterReadsMeshIdAndSecretFromTheEnvironment) {
  const std::string secret = "victor-secret-0123456789";
  const CtlRun r = run({"register", "--url", relay->gatewayUrl(), "--name", "Victor"},
                       {"MESH_ID=victor", "MESH_SECRET=" + secret});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(valueOf(r.out, "MESH_ID"), "victor");
  EXPECT_EQ(valueOf(r.out, "MESH_SECRET"), secret);
  EXPECT_EQ(discoverAs("victor", secret), 0);
  // A flag still wins over the environment.
  const CtlRun flagged =
      run({"register", "--url", relay->gatewayUrl(), "--name", "Whiskey", "--mesh-id", "whiskey"},
          {"MESH_ID=victor", "MESH_SECRET=whiskey-secret-0123456789"});
  ASSERT_EQ(flagged.code, 0) << flagged.err;
  EXPECT_EQ(valueOf(flagged.out, "MESH_ID"), "whiskey");
  EXPECT_EQ(discoverAs("whiskey", "whiskey-secret-0123456789"), 0);
  // Neither: a usage error that names both.
  const CtlRun none =
      run({"register", "--url", relay->gatewayUrl(), "--name", "X"}, {"MESH_ID=", "MESH_SECRET="});
  EXPECT_EQ(none.code, 2) << none.err;
  EXPECT_NE(none.err.find("MESH_ID"), std::string::npos) << none.err;
}

TEST_F(Meshctl, UnknownSubcommandIsNamed) {
  const CtlRun r = run({"frobnicate", "--url", relay->gatewayUrl()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown subcommand 'frobnicate'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("register"), std::string::npos) << r.err;
  // The relay was not asked, and known subcommands still work.
  EXPECT_EQ(run({"health", "--url", relay->gatewayUrl()}).code, 0);
}

}  // namespace
}  // namespace mesh::test
