#include "nats_loop.h"

#include <nats/nats.h>

#include <stdexcept>
#include <string>

namespace mesh::relay {

namespace {

using Change = NatsLoop::Change;

natsStatus attachCb(void** userData, void* loop, natsConnection* nc, natsSock fd) {
  // `loop` is what install() gave natsOptions_SetEventLoop: this adapter.
  auto* self = static_cast<NatsLoop*>(loop);
  *userData = self;
  self->change({Change::Kind::Attach, true, nc, static_cast<int>(fd)});
  return NATS_OK;
}

natsStatus readCb(void* userData, bool add) {
  static_cast<NatsLoop*>(userData)->change({Change::Kind::Read, add, nullptr, -1});
  return NATS_OK;
}

natsStatus writeCb(void* userData, bool add) {
  static_cast<NatsLoop*>(userData)->change({Change::Kind::Write, add, nullptr, -1});
  return NATS_OK;
}

natsStatus detachCb(void* userData) {
  static_cast<NatsLoop*>(userData)->change({Change::Kind::Detach, false, nullptr, -1});
  return NATS_OK;
}

}  // namespace

NatsLoop::NatsLoop(struct ev_loop* loop) : loop_(loop), loopThread_(std::this_thread::get_id()) {
  ev_io_init(&readIo_, onRead, -1, EV_READ);
  ev_io_init(&writeIo_, onWrite, -1, EV_WRITE);
  readIo_.data = this;
  writeIo_.data = this;
  ev_async_init(&async_, onAsync);
  async_.data = this;
  ev_async_start(loop_, &async_);
}

NatsLoop::~NatsLoop() {
  ev_io_stop(loop_, &readIo_);
  ev_io_stop(loop_, &writeIo_);
  ev_async_stop(loop_, &async_);
}

bool NatsLoop::suits(const Config& config) {
  if (!config.natsCaPath.empty()) return false;
  for (const std::string& url : config.natsUrls) {
    if (url.rfind("tls://", 0) == 0) return false;
  }
  return true;
}

void NatsLoop::install(__natsOptions* opts) {
  const natsStatus s = natsOptions_SetEventLoop(opts, this, attachCb, readCb, writeCb, detachCb);
  if (s != NATS_OK) {
    throw std::runtime_error(std::string("NATS: event loop: ") + natsStatus_GetText(s));
  }
}

void NatsLoop::change(const Change& c) {
  if (std::this_thread::get_id() == loopThread_) {
    // After whatever another thread asked for before.
    applyQueued();
    apply(c);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    queued_.push_back(c);
  }
  ev_async_send(loop_, &async_);
}

void NatsLoop::applyQueued() {
  std::vector<Change> changes;
  {
    std::lock_guard lock(mutex_);
    if (queued_.empty()) return;
    changes.swap(queued_);
  }
  for (const Change& c : changes) apply(c);
}

void NatsLoop::apply(const Change& c) {
  switch (c.kind) {
    case Change::Kind::Attach:
      // A new socket (the first, or after a reconnect): reads from now on;
      // writes when libnats has something to write.
      ev_io_stop(loop_, &readIo_);
      ev_io_stop(loop_, &writeIo_);
      writeWanted_ = false;
      nc_ = c.nc;
      ev_io_set(&readIo_, c.fd, EV_READ);
      ev_io_set(&writeIo_, c.fd, EV_WRITE);
      ev_io_start(loop_, &readIo_);
      break;
    case Change::Kind::Read:
      if (c.add && nc_) {
        ev_io_start(loop_, &readIo_);
      } else {
        ev_io_stop(loop_, &readIo_);
      }
      break;
    case Change::Kind::Write:
      // Written by flushNow() at the end of the turn; the watcher only
      // when the socket did not take it all.
      writeWanted_ = c.add && nc_;
      if (!writeWanted_) ev_io_stop(loop_, &writeIo_);
      break;
    case Change::Kind::Detach:
      ev_io_stop(loop_, &readIo_);
      ev_io_stop(loop_, &writeIo_);
      nc_ = nullptr;
      writeWanted_ = false;
      break;
  }
}

void NatsLoop::flushNow() {
  applyQueued();
  if (!nc_ || !writeWanted_ || ev_is_active(&writeIo_)) return;
  // Takes back its wish (a Write change) when the socket took everything.
  natsConnection_ProcessWriteEvent(nc_);
  if (writeWanted_) ev_io_start(loop_, &writeIo_);
}

void NatsLoop::onRead(struct ev_loop*, ev_io* w, int) {
  auto* self = static_cast<NatsLoop*>(w->data);
  if (!self->nc_) return;
  natsConnection_ProcessReadEvent(self->nc_);
  if (self->afterRead_) self->afterRead_();
}

void NatsLoop::onWrite(struct ev_loop*, ev_io* w, int) {
  auto* self = static_cast<NatsLoop*>(w->data);
  if (self->nc_) natsConnection_ProcessWriteEvent(self->nc_);
}

void NatsLoop::onAsync(struct ev_loop*, ev_async* w, int) {
  static_cast<NatsLoop*>(w->data)->applyQueued();
}

}  // namespace mesh::relay
