// A mesh-relay child process for tests that need more than RelayRunner:
// native TLS with a certificate from a test CA, or pausing the process
// (SIGSTOP) to make the relay go quiet while its sockets stay open.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "relay_runner.h"

namespace mesh::test {

// A private CA and a relay certificate it issued, PEM files in a folder.
struct TestPki {
  std::string caFile;       // the CA certificate: what a node trusts
  std::string certFile;     // the relay's certificate (CN and SAN localhost,
  std::string keyFile;      // SAN IP 127.0.0.1) and its key
  std::string otherCaFile;  // a CA that issued nothing here
};

// Makes the files with the openssl command; throws if it fails.
[[nodiscard]] TestPki makeTestPki(const TempDir& dir);

class SpawnedRelay {
 public:
  // Picks a port; `pki` non-null: the relay speaks only TLS with its files.
  SpawnedRelay(const TempDir& dir, const TestPki* pki = nullptr);
  // SIGCONT then SIGKILL: no process outlives the test.
  ~SpawnedRelay();
  SpawnedRelay(const SpawnedRelay&) = delete;
  SpawnedRelay& operator=(const SpawnedRelay&) = delete;

  // Starts it and waits until /health answers. Throws on failure.
  void start();
  void pause();   // SIGSTOP
  void resume();  // SIGCONT

  // With TLS the host is "localhost", which the certificate names.
  [[nodiscard]] std::string gatewayUrl() const;
  [[nodiscard]] std::string httpUrl() const;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string log() const;
  // Registers a mesh (201 or 200) or throws.
  void registerMesh(const std::string& meshId, const std::string& secret,
                    const std::string& name) const;

 private:
  std::uint16_t port_;
  std::string dbPath_;
  std::string logPath_;
  const TestPki* pki_;
  pid_t pid_ = -1;
};

}  // namespace mesh::test
