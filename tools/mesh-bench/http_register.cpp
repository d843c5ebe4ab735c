#include "http_register.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>

#include "clock.h"

namespace mesh::bench {

namespace {

// Reads one HTTP response; returns the status code, 0 on failure. Sets
// keep_alive to false when the server will close the connection.
int read_response(int fd, bool& keep_alive) {
  std::string buf;
  char tmp[4096];
  size_t header_end = std::string::npos;
  while (header_end == std::string::npos) {
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return 0;
    buf.append(tmp, static_cast<size_t>(n));
    header_end = buf.find("\r\n\r\n");
    if (buf.size() > 65536) return 0;
  }
  if (buf.size() < 12 || buf.compare(0, 5, "HTTP/") != 0) return 0;
  int status = 0;
  std::from_chars(buf.data() + 9, buf.data() + 12, status);
  std::string head = buf.substr(0, header_end);
  for (auto& ch : head) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  keep_alive =
      head.find("connection: close") == std::string::npos && head.compare(0, 8, "http/1.0") != 0;
  size_t body_len = 0;
  auto cl = head.find("content-length:");
  if (cl != std::string::npos) {
    size_t p = cl + 15;
    while (p < head.size() && head[p] == ' ') ++p;
    std::from_chars(head.data() + p, head.data() + head.size(), body_len);
  } else if (head.find("transfer-encoding: chunked") != std::string::npos) {
    // Read until the terminating chunk.
    while (buf.find("0\r\n\r\n", header_end + 4) == std::string::npos) {
      ssize_t n = recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return status;
      buf.append(tmp, static_cast<size_t>(n));
    }
    return status;
  } else {
    keep_alive = false;
  }
  while (buf.size() < header_end + 4 + body_len) {
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
  }
  return status;
}

bool send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::vector<MeshCred> make_meshes(const std::string& prefix, const std::string& role, size_t n) {
  std::vector<MeshCred> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].id = prefix + "-" + role + std::to_string(i);
    out[i].secret = "s3cret-" + prefix + "-" + std::to_string(i * 7919 + 17) + "-padpadpad";
    out[i].name = "bench " + role + std::to_string(i);
  }
  return out;
}

RegisterResult register_meshes(const Endpoint& ep, const std::vector<MeshCred>& meshes,
                               int parallel) {
  RegisterResult res;
  int64_t t0 = now_ns();
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> ok{0}, failed{0};
  std::mutex err_mu;
  auto worker = [&] {
    int fd = -1;
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= meshes.size()) break;
      const MeshCred& m = meshes[i];
      std::string body = "{\"meshId\":\"" + m.id + "\",\"secret\":\"" + m.secret +
                         "\",\"name\":\"" + m.name + "\"}";
      std::string req =
          "POST /register HTTP/1.1\r\nHost: " + ep.host + ":" + std::to_string(ep.port) +
          "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
          "\r\n\r\n" + body;
      int status = 0;
      int refused = 0;
      for (int attempt = 0; attempt < 3 && (status == 0 || status == 429); ++attempt) {
        if (status == 429) {
          // Registration rate limit: wait, without counting it as an attempt.
          if (++refused > 600) break;
          usleep(100'000);
          --attempt;
          status = 0;
        }
        if (fd < 0) fd = blocking_connect(ep, 2000);
        if (fd < 0) continue;
        bool keep = false;
        if (send_all(fd, req)) status = read_response(fd, keep);
        if (status == 0 || !keep) {
          close(fd);
          fd = -1;
        }
      }
      if (status == 200 || status == 201) {
        ok.fetch_add(1);
      } else {
        failed.fetch_add(1);
        std::lock_guard lk(err_mu);
        if (res.first_error.empty())
          res.first_error = "POST /register " + m.id + " -> " +
                            (status ? "HTTP " + std::to_string(status) : std::string("no answer"));
      }
    }
    if (fd >= 0) close(fd);
  };
  std::vector<std::thread> threads;
  int n = parallel < 1 ? 1 : parallel;
  if (static_cast<size_t>(n) > meshes.size()) n = static_cast<int>(meshes.size());
  for (int i = 0; i < n; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  res.ok = ok.load();
  res.failed = failed.load();
  res.seconds = static_cast<double>(now_ns() - t0) / 1e9;
  return res;
}

}  // namespace mesh::bench
