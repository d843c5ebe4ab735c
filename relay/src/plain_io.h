// What the files of the plain /gateway path share (plain_listener.cpp,
// plain_upgrade.cpp, plain_reader.cpp, plain_writer.cpp): the libev
// callbacks of their watchers and a best-effort send for short answers.
#pragma once

#include <ev.h>

#include <string_view>

#include "server_impl.h"

namespace mesh::relay::plain {

// The server whose loop this thread turns (set by servePlainOnThisThread()):
// libev hands a callback only its watcher.
Server::Impl* loopOwner();

// Watcher callbacks: an Upgrade's socket (w->data is the Upgrade) and a
// session's (w->data is the Session).
void onUpgradeEvent(struct ev_loop* loop, ev_io* w, int revents);
void onSessionEvent(struct ev_loop* loop, ev_io* w, int revents);

// Best effort, for an answer on a new socket whose send buffer is empty.
bool sendAll(int fd, std::string_view bytes);

}  // namespace mesh::relay::plain
