// A fresh folder under the system temp dir for one test, removed with its
// contents; shared by the in-process relay tests and the node-client tests.
#pragma once

#include <filesystem>
#include <string>

namespace mesh::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace mesh::test
