// meshctl against a relay whose certificate comes from a private CA: every
// subcommand takes --ca-file (or MESH_CA_FILE) for wss:// and https://.
#include <gtest/gtest.h>

#include "relay_runner.h"

namespace mesh::test {
namespace {

class MeshctlTls : public ::testing::Test {
 protected:
  void SetUp() override {
    pki = makeTestPki(dir);
    relay = std::make_unique<RelayRunner>(dir, &pki);
    relay->start();
  }

  ProcessResult run(std::vector<std::string> args,
                    const std::vector<std::string>& env = {"MESH_CA_FILE="}) {
    args.insert(args.end(), {"--url", relay->gatewayUrl(), "--timeout", "5"});
    return runToEnd(MESH_MESHCTL_BIN, args, dir, env);
  }

  TempDir dir;
  TestPki pki;
  std::unique_ptr<RelayRunner> relay;
};

const std::string kSecret = "tls-mesh-secret-0123456789";

TEST_F(MeshctlTls, TrustsAPrivateCaFromTheFlagOrTheEnvironment) {
  ASSERT_EQ(relay->gatewayUrl().rfind("wss://", 0), 0u) << relay->gatewayUrl();
  auto reg = run({"register", "--mesh-id", "tls-a", "--name", "TLS A", "--secret", kSecret,
                  "--ca-file", pki.caFile});
  ASSERT_EQ(reg.code, 0) << reg.err;

  auto health = run({"health", "--ca-file", pki.caFile});
  EXPECT_EQ(health.code, 0) << health.err;

  // Over wss://, the CA from the environment.
  auto discover =
      run({"discover", "--mesh-id", "tls-a", "--secret", kSecret}, {"MESH_CA_FILE=" + pki.caFile});
  EXPECT_EQ(discover.code, 0) << discover.err;
  EXPECT_NE(discover.out.find("tls-a"), std::string::npos) << discover.out;
}

TEST_F(MeshctlTls, WithoutTheCaTheRelayIsUnreachableWithAReason) {
  auto health = run({"health"});
  EXPECT_EQ(health.code, 3) << health.err;  // relay unreachable
  EXPECT_NE(health.err.find("certificate"), std::string::npos) << health.err;

  auto wrongCa = run({"health", "--ca-file", pki.otherCaFile});
  EXPECT_EQ(wrongCa.code, 3) << wrongCa.err;

  auto missing = run({"health", "--ca-file", dir.file("no-such-ca.pem")});
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.err.find("no-such-ca.pem"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace mesh::test
