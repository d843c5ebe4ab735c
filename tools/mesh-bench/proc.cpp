#include "proc.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "clock.h"

namespace mesh::bench {

ProcSample sample_proc(pid_t pid) {
  ProcSample s;
  if (pid <= 0) return s;
  s.at_ns = now_ns();
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(st, line)) return s;
  auto rp = line.rfind(')');
  if (rp == std::string::npos) return s;
  std::istringstream fields(line.substr(rp + 2));
  // Field 3 (state) is the first after the command; utime/stime are 14/15.
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::strtoull(f.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(f.c_str(), nullptr, 10);
  }
  s.cpu_ticks = utime + stime;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      s.rss_kb = std::strtoull(line.c_str() + 6, nullptr, 10);
      break;
    }
  }
  s.ok = true;
  return s;
}

double ticks_to_seconds(uint64_t ticks) {
  static const long hz = sysconf(_SC_CLK_TCK);
  return static_cast<double>(ticks) / static_cast<double>(hz > 0 ? hz : 100);
}

pid_t find_listening_pid(uint16_t port) {
  std::set<std::string> inodes;
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string sl, local, remote, st, queues, tr, retr, uid, timeout, inode;
      if (!(ls >> sl >> local >> remote >> st >> queues >> tr >> retr >> uid >> timeout >> inode))
        continue;
      if (st != "0A") continue;  // LISTEN
      auto colon = local.rfind(':');
      if (colon == std::string::npos) continue;
      unsigned long p = std::strtoul(local.c_str() + colon + 1, nullptr, 16);
      if (p == port && inode != "0") inodes.insert("socket:[" + inode + "]");
    }
  }
  if (inodes.empty()) return 0;
  DIR* proc = opendir("/proc");
  if (!proc) return 0;
  pid_t found = 0;
  pid_t self = getpid();
  while (dirent* de = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(de->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self) continue;
    std::string fddir = std::string("/proc/") + de->d_name + "/fd";
    DIR* fds = opendir(fddir.c_str());
    if (!fds) continue;
    while (dirent* fe = readdir(fds)) {
      char buf[64];
      std::string link = fddir + "/" + fe->d_name;
      ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
      if (n <= 0) continue;
      buf[n] = '\0';
      if (inodes.count(buf)) {
        found = static_cast<pid_t>(pid);
        break;
      }
    }
    closedir(fds);
    if (found) break;
  }
  closedir(proc);
  return found;
}

}  // namespace mesh::bench
