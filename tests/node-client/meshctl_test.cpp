// meshctl end to end: the real executable against a real relay, checked by
// exit code and output as a script would.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "node_harness.h"
#include "relay_runner.h"

namespace mesh::test {
namespace {

struct CtlRun {
  int code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

class Meshctl : public ::testing::Test {
 protected:
  void SetUp() override {
    relay = std::make_unique<RelayRunner>(dir);
    relay->start();
  }

  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Runs meshctl to its end (bounded) with `env` lines added.
  CtlRun run(const std::vector<std::string>& args) {
    const std::string out = dir.file("out" + std::to_string(runs));
    const std::string err = dir.file("err" + std::to_string(runs++));
    const pid_t pid = spawnProcess(MESH_MESHCTL_BIN, args, err, out);
    CtlRun r;
    r.code = waitProcess(pid, std::chrono::seconds(30));
    if (r.code < 0) ::kill(pid, SIGKILL);
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  std::vector<std::string> withCredentials(std::vector<std::string> args, const std::string& id,
                                           const std::string& secret) {
    args.insert(args.end(), {"--url", relay->gatewayUrl(), "--mesh-id", id, "--secret", secret,
                             "--timeout", "5"});
    return args;
  }

  TempDir dir;
  std::unique_ptr<RelayRunner> relay;
  int runs = 0;
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
  const std::string lines = slurp(listenOut);
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

}  // namespace
}  // namespace mesh::test
