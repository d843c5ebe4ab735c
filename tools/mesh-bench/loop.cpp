#include "loop.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "ws_conn.h"

namespace mesh::bench {

Loop::Loop() : ep_(epoll_create1(EPOLL_CLOEXEC)) {
  if (ep_ < 0) {
    std::perror("epoll_create1");
    std::exit(2);
  }
}

Loop::~Loop() {
  close(ep_);
}

void Loop::add(WsConn* c, int fd, bool want_write) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0u);
  ev.data.ptr = c;
  epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
}

void Loop::modify(WsConn* c, int fd, bool want_write) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0u);
  ev.data.ptr = c;
  epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &ev);
}

void Loop::remove(int fd) {
  epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
}

void Loop::mark_dirty(WsConn* c) {
  if (!c->dirty) {
    c->dirty = true;
    dirty_.push_back(c);
  }
}

void Loop::flush_dirty() {
  // A flush can fail and close a connection, whose handler may queue more
  // frames elsewhere: swap lists so the iteration stays valid.
  while (!dirty_.empty()) {
    flushing_.swap(dirty_);
    for (WsConn* c : flushing_) {
      c->dirty = false;
      c->flush();
    }
    flushing_.clear();
  }
}

int Loop::run_once(int64_t timeout_ns) {
  flush_dirty();
  epoll_event evs[512];
  timespec ts{};
  if (timeout_ns > 0) {
    ts.tv_sec = timeout_ns / 1'000'000'000;
    ts.tv_nsec = timeout_ns % 1'000'000'000;
  }
  int n = epoll_pwait2(ep_, evs, 512, &ts, nullptr);
  if (n < 0) {
    if (errno == EINTR) return 0;
    std::perror("epoll_pwait2");
    std::exit(2);
  }
  for (int i = 0; i < n; ++i) {
    static_cast<WsConn*>(evs[i].data.ptr)->handle_events(evs[i].events);
  }
  flush_dirty();
  return n;
}

}  // namespace mesh::bench
