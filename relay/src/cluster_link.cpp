#include "cluster_link.h"

#include <nats/nats.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "log.h"
#include "nats_options.h"

namespace mesh::relay {

// One message or connection event as a libnats thread saw it, copied for
// the loop.
struct NatsClusterLink::Inbound {
  enum class Kind { Message, Connected, Disconnected };
  Kind kind = Kind::Message;
  std::string subject;
  std::string reply;
  std::string data;
  bool noResponders = false;
  std::int64_t maxPayload = 0;  // Connected: the server's max_payload
};

// On TLS, libnats's publishes write the socket at once (SendAsap), blocking,
// with the connection's lock held: a NATS server that stops reading would
// stall whoever publishes, for as long as TCP waits. So on TLS the loop
// hands its publishes to this thread, which blocks instead; the socket's
// write deadline (kTlsWriteDeadlineMs) bounds that, after which the
// connection is broken and libnats reconnects.
struct NatsClusterLink::Writer {
  struct Item {
    std::string subject;
    std::string reply;
    std::string data;
  };

  explicit Writer(natsConnection* connection) : nc(connection), thread([this] { run(); }) {}
  ~Writer() { stop(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void push(std::string subject, std::string reply, std::string data) {
    queuedBytes += subject.size() + reply.size() + data.size();
    {
      std::lock_guard lock(mutex);
      items.push_back({std::move(subject), std::move(reply), std::move(data)});
    }
    wake.notify_one();
  }

  // Writes what is queued, then returns.
  void stop() {
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      stopping = true;
    }
    wake.notify_one();
    if (thread.joinable()) thread.join();
  }

  void run() {
    std::unique_lock lock(mutex);
    for (;;) {
      wake.wait(lock, [&] { return stopping || !items.empty(); });
      if (items.empty()) return;
      std::deque<Item> batch;
      batch.swap(items);
      lock.unlock();
      for (Item& item : batch) {
        const int size = static_cast<int>(item.data.size());
        const natsStatus s =
            item.reply.empty()
                ? natsConnection_Publish(nc, item.subject.c_str(), item.data.data(), size)
                : natsConnection_PublishRequest(nc, item.subject.c_str(), item.reply.c_str(),
                                                item.data.data(), size);
        if (s != NATS_OK) {
          LOG_DEBUG("cluster: publish on " << item.subject << " failed: " << natsStatus_GetText(s));
        }
        queuedBytes -= item.subject.size() + item.reply.size() + item.data.size();
      }
      lock.lock();
    }
  }

  natsConnection* nc;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Item> items;  // guarded by mutex
  bool stopping = false;   // guarded by mutex
  std::atomic<std::size_t> queuedBytes{0};
  std::thread thread;  // last: starts once the rest is ready
};

// What libnats's threads may touch: a queue to the loop, while the link
// exists. Callbacks append to it; the loop is woken once per batch (one
// post() for however many messages arrived meanwhile), not once per
// message, and destroys the batch's messages together (see release()). The
// link closes it before it goes; a callback that runs later (libnats may
// still be finishing one) finds it closed and drops what it has. Kept alive
// by every link ever made (see retired()), so a late callback never reads
// freed memory.
struct NatsClusterLink::Shared {
  std::mutex mutex;
  bool open = true;
  bool scheduled = false;  // a drain is posted and has not run yet
  std::vector<Inbound> queue;
  std::vector<natsMsg*> spent;  // the messages `queue` was copied from
  Post post;
  NatsClusterLink* link = nullptr;

  // `msg` (may be null) is destroyed once its copy `in` was handled.
  void push(Inbound in, natsMsg* msg = nullptr) {
    {
      std::lock_guard lock(mutex);
      if (open) {
        queue.push_back(std::move(in));
        if (msg) spent.push_back(msg);
        if (!scheduled) {
          scheduled = true;
          post([this] { drain(); });
        }
        return;
      }
    }
    natsMsg_Destroy(msg);
  }

  // On the loop thread, where the link lives and dies: while it is open,
  // `link` is alive.
  void drain() {
    std::vector<Inbound> batch;
    std::vector<natsMsg*> messages;
    NatsClusterLink* l;
    {
      std::lock_guard lock(mutex);
      scheduled = false;
      if (!open) return;
      batch.swap(queue);
      messages.swap(spent);
      l = link;
    }
    for (Inbound& in : batch) l->handleInbound(in);
    for (natsMsg* msg : messages) natsMsg_Destroy(msg);
  }

  // No more callbacks reach the link; what is queued is dropped.
  void close() {
    std::vector<natsMsg*> messages;
    {
      std::lock_guard lock(mutex);
      open = false;
      queue.clear();
      messages.swap(spent);
    }
    for (natsMsg* msg : messages) natsMsg_Destroy(msg);
  }
};

namespace {

using Link = NatsClusterLink;

// Shared states of links already destroyed: libnats gives no promise that
// no callback is still on its way once a connection is destroyed.
std::vector<std::shared_ptr<Link::Shared>>& retired() {
  static std::vector<std::shared_ptr<Link::Shared>> all;
  return all;
}
std::mutex retiredMutex;

// A copy of a message.
Link::Inbound copyOf(natsMsg* msg) {
  Link::Inbound in;
  in.subject = natsMsg_GetSubject(msg);
  if (const char* reply = natsMsg_GetReply(msg)) in.reply = reply;
  if (const char* data = natsMsg_GetData(msg)) {
    in.data.assign(data, static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  }
  in.noResponders = natsMsg_IsNoResponders(msg);
  return in;
}

void onMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<Link::Shared*>(closure)->push(copyOf(msg), msg);
}

void onConnected(natsConnection* nc, void* closure) {
  Link::Inbound in;
  in.kind = Link::Inbound::Kind::Connected;
  in.maxPayload = natsConnection_GetMaxPayload(nc);
  static_cast<Link::Shared*>(closure)->push(std::move(in));
}

void onDisconnected(natsConnection*, void* closure) {
  Link::Inbound in;
  in.kind = Link::Inbound::Kind::Disconnected;
  static_cast<Link::Shared*>(closure)->push(std::move(in));
}

void onError(natsConnection*, natsSubscription*, natsStatus err, void*) {
  // Slow consumer on a subscription: libnats dropped messages for it.
  LOG_WARN("NATS: " << natsStatus_GetText(err));
}

void check(natsStatus s, const char* what) {
  if (s != NATS_OK) {
    throw std::runtime_error(std::string("NATS: ") + what + ": " + natsStatus_GetText(s));
  }
}

}  // namespace

std::int64_t NatsClusterLink::unixMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t NatsClusterLink::nowUs() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

NatsClusterLink::NatsClusterLink(const Config& config, std::string relayId, Router& router,
                                 Post post, struct ev_loop* loop)
    : relayId_(std::move(relayId)), router_(router), shared_(std::make_shared<Shared>()) {
  shared_->post = std::move(post);
  shared_->link = this;
  {
    std::lock_guard lock(retiredMutex);
    retired().push_back(shared_);
  }
  natsStatus s = NATS_OK;
  try {
    NatsOptionsPtr opts = makeNatsOptions(config, "mesh-relay " + relayId_);
    check(natsOptions_SetRetryOnFailedConnect(opts.get(), true, onConnected, shared_.get()),
          "retry at start");
    check(natsOptions_SetReconnectedCB(opts.get(), onConnected, shared_.get()), "reconnected");
    check(natsOptions_SetDisconnectedCB(opts.get(), onDisconnected, shared_.get()), "disconnected");
    check(natsOptions_SetErrorHandler(opts.get(), onError, shared_.get()), "error handler");
    if (NatsLoop::suits(config)) {
      loop_ = std::make_unique<NatsLoop>(loop);
      loop_->install(opts.get());
      loop_->setAfterRead([this] { drainSubscriptions(); });
    } else {
      check(natsOptions_SetWriteDeadline(opts.get(), kTlsWriteDeadlineMs), "write deadline");
    }

    natsInbox* inbox = nullptr;
    check(natsInbox_Create(&inbox), "inbox");
    inbox_ = inbox;
    natsInbox_Destroy(inbox);

    s = natsConnection_Connect(&nc_, opts.get());
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
      check(s, "connect");
    }
    if (s == NATS_OK) maxPayload_ = natsConnection_GetMaxPayload(nc_);
    // Requests carry inbox_.N as their reply subject; the other relays
    // answer on inbox_.N.a (cluster::answerSubject), and only NATS's "no
    // responders" comes to inbox_.N itself. That one has to come through a
    // callback: a synchronous subscription drops it without saying which
    // request it answers.
    const std::string inboxAll = inbox_ + ".*";
    check(natsConnection_Subscribe(&inboxSub_, nc_, inboxAll.c_str(), onMessage, shared_.get()),
          "inbox subscription");
    subscribe(&answerSub_, cluster::answerSubject(inbox_ + ".*"), "answer subscription");
    subscribe(&deliverSub_, cluster::deliverWildcard(relayId_), "deliver subscription");
    subscribe(&controlSub_, cluster::kDirectorySubject, "directory subscription");
    subscribe(&takeoverSub_, cluster::kTakeoverSubject, "takeover subscription");
    subscribe(&broadcastSub_, cluster::kBroadcastSubject, "broadcast subscription");
    if (!loop_) writer_ = std::make_unique<Writer>(nc_);
  } catch (...) {
    // No destructor runs for a constructor that throws: undo what it did.
    shared_->close();
    writer_.reset();
    for (natsSubscription* sub :
         {inboxSub_, answerSub_, deliverSub_, controlSub_, takeoverSub_, broadcastSub_}) {
      if (sub) natsSubscription_Destroy(sub);
    }
    if (nc_) natsConnection_Destroy(nc_);
    throw;
  }
  LOG_INFO("cluster: relay " << relayId_
                             << (s == NATS_OK ? " starts" : " starts, waiting for NATS"));
  if (s == NATS_OK) connectionChanged(true);
}

NatsClusterLink::~NatsClusterLink() {
  leave();
  shared_->close();
  freeSpent();
  if (nc_) {
    // The "bye" out first: on the loop, Close could only wait for it.
    if (loop_) loop_->flushNow();
    if (writer_) writer_->stop();
    natsConnection_Close(nc_);
  }
  for (natsSubscription* sub :
       {inboxSub_, answerSub_, deliverSub_, controlSub_, takeoverSub_, broadcastSub_}) {
    if (sub) natsSubscription_Destroy(sub);
  }
  if (nc_) natsConnection_Destroy(nc_);
}

// With the loop reading the socket, a subscription is read right after
// libnats parsed what came (drainSubscriptions): no thread in between.
// Without it, libnats's delivery thread calls back and the message is
// posted to the loop.
void NatsClusterLink::subscribe(__natsSubscription** sub, std::string_view subject,
                                const char* what) {
  const std::string subj(subject);
  if (loop_) {
    check(natsConnection_SubscribeSync(sub, nc_, subj.c_str()), what);
    syncSubs_.push_back(*sub);
  } else {
    check(natsConnection_Subscribe(sub, nc_, subj.c_str(), onMessage, shared_.get()), what);
  }
}

// libnats frees a message on its garbage-collector thread, and wakes that
// thread when it sleeps: once per message when they come one at a time, a
// futex wake and a context switch each (a tenth of the loop's time at
// 20 000 relays/s). Messages read on the loop are destroyed in batches
// instead, so that one wake frees many.
void NatsClusterLink::release(__natsMsg* msg) {
  spentBytes_ += static_cast<std::size_t>(natsMsg_GetDataLength(msg));
  spent_.push_back(msg);
  if (spent_.size() >= kSpentMessages || spentBytes_ >= kSpentBytes) freeSpent();
}

void NatsClusterLink::freeSpent() {
  for (natsMsg* msg : spent_) natsMsg_Destroy(msg);
  spent_.clear();
  spentBytes_ = 0;
}

void NatsClusterLink::drainSubscriptions() {
  for (natsSubscription* sub : syncSubs_) {
    int pending = 0;
    if (natsSubscription_GetPending(sub, &pending, nullptr) != NATS_OK) continue;
    for (; pending > 0; --pending) {
      natsMsg* msg = nullptr;
      if (natsSubscription_NextMsg(&msg, sub, 0) != NATS_OK) break;
      Inbound in = copyOf(msg);
      release(msg);
      handleInbound(in);
    }
  }
}

void NatsClusterLink::leave() {
  if (left_) return;
  left_ = true;
  if (connected_) {
    cluster::DirectoryMessage bye;
    bye.type = cluster::DirectoryType::Bye;
    bye.relayId = relayId_;
    publishDirectory(bye);
  }
}

void NatsClusterLink::publish(std::string_view subject, std::string_view data,
                              std::string_view reply) {
  if (writer_) {
    writer_->push(std::string(subject), std::string(reply), std::string(data));
    return;
  }
  const std::string subj(subject);
  natsStatus s;
  if (reply.empty()) {
    s = natsConnection_Publish(nc_, subj.c_str(), data.data(), static_cast<int>(data.size()));
  } else {
    const std::string rep(reply);
    s = natsConnection_PublishRequest(nc_, subj.c_str(), rep.c_str(), data.data(),
                                      static_cast<int>(data.size()));
  }
  if (s != NATS_OK) {
    LOG_DEBUG("cluster: publish on " << subj << " failed: " << natsStatus_GetText(s));
  }
}

void NatsClusterLink::publishDirectory(const cluster::DirectoryMessage& m) {
  // After the "bye" this relay says nothing more about its meshes.
  if (left_ && m.type != cluster::DirectoryType::Bye) return;
  publish(cluster::kDirectorySubject, cluster::encodeDirectory(m));
}

void NatsClusterLink::sendHeartbeat() {
  std::vector<MeshInfo> meshes;
  std::vector<std::uint64_t> epochs;
  meshes.reserve(local_.size());
  epochs.reserve(local_.size());
  for (const auto& [meshId, info] : local_) {
    meshes.push_back(info);
    auto c = claims_.find(meshId);
    epochs.push_back(c == claims_.end() ? 0 : c->second.epoch);
  }
  for (const auto& part : cluster::heartbeatParts(relayId_, std::move(meshes), std::move(epochs))) {
    publishDirectory(part);
  }
  lastHeartbeatUs = nowUs();
}

// ---- ClusterLink

void NatsClusterLink::meshOnline(const MeshEntry& mesh) {
  MeshInfo info = mesh;
  info.wantsPresence = false;  // a local choice, not the cluster's business
  local_[mesh.meshId] = info;
  // A new claim, unless takeover() just made it for this authentication.
  Claim& claim = claims_[mesh.meshId];
  if (!claim.justMade) {
    claim.epoch = nextEpoch(claim.epoch);
    claim.relayId.clear();
  }
  claim.justMade = false;
  cluster::DirectoryMessage m;
  m.type = cluster::DirectoryType::Online;
  m.relayId = relayId_;
  m.meshes.push_back(std::move(info));
  m.epochs.push_back(claim.epoch);
  publishDirectory(m);
  publish(cluster::kConnectedSubject, cluster::encodeSessionEvent(mesh.meshId, relayId_, unixMs()));
}

void NatsClusterLink::meshOffline(std::string_view meshId) {
  const std::string id(meshId);
  local_.erase(id);
  if (auto c = claims_.find(id); c != claims_.end() && c->second.relayId.empty()) {
    claims_.erase(c);
  }
  cluster::DirectoryMessage m;
  m.type = cluster::DirectoryType::Offline;
  m.relayId = relayId_;
  m.meshId = id;
  publishDirectory(m);
  publish(cluster::kDisconnectedSubject,
          cluster::encodeSessionEvent(id, relayId_, unixMs(), "closed"));
}

void NatsClusterLink::meshUpdated(const MeshEntry& mesh, MeshChange what) {
  auto it = local_.find(mesh.meshId);
  if (it == local_.end()) return;
  it->second.roomsJson = mesh.roomsJson;
  it->second.participantsJson = mesh.participantsJson;
  it->second.participantCount = mesh.participantCount;
  cluster::DirectoryMessage m;
  m.type = cluster::DirectoryType::Updated;
  m.relayId = relayId_;
  m.change = what;
  m.meshes.push_back(it->second);
  auto c = claims_.find(mesh.meshId);
  m.epochs.push_back(c == claims_.end() ? 0 : c->second.epoch);
  publishDirectory(m);
}

void NatsClusterLink::relay(std::string_view ownerRelayId, std::string_view targetMeshId,
                            std::string incomingText, RelayAnswer answer) {
  if (!up()) {
    ++stats_.unavailable;
    answer(RelayOutcome::Unavailable);
    return;
  }
  // Sent by flush() at the end of this loop turn, with whatever else this
  // turn queued for the same mesh.
  Outgoing& out = outgoing_[std::string(targetMeshId)];
  out.relayId = ownerRelayId;
  out.frames.push_back(std::move(incomingText));
  out.answers.push_back(std::move(answer));
}

void NatsClusterLink::flush() {
  sendQueuedRelays();
  // What this turn published (relays, answers, deltas) leaves in one write.
  if (loop_) loop_->flushNow();
}

void NatsClusterLink::sendQueuedRelays() {
  if (outgoing_.empty()) return;
  auto batches = std::move(outgoing_);
  outgoing_.clear();
  const bool linkUp = up();
  const std::int64_t deadline = nowUs() + kRelayTimeoutUs;
  // No message may exceed the server's max_payload (1 MiB unless its
  // configuration says otherwise): a turn's frames for one mesh go out in
  // as many batches as that takes, in order.
  const std::int64_t serverMax =
      !linkUp ? 0 : (writer_ ? maxPayload_ : natsConnection_GetMaxPayload(nc_));
  const std::size_t maxPayload =
      serverMax > 0 ? static_cast<std::size_t>(serverMax) : std::size_t{1} << 20;
  for (auto& [meshId, out] : batches) {
    const std::string subject = cluster::deliverSubject(out.relayId, meshId);
    const std::size_t count = out.frames.size();
    for (std::size_t first = 0; first < count;) {
      std::size_t end = first;
      std::size_t bytes = 1;
      while (end < count &&
             (end == first ||
              bytes + out.frames[end].size() + cluster::kBatchFrameOverhead <= maxPayload)) {
        bytes += out.frames[end].size() + cluster::kBatchFrameOverhead;
        ++end;
      }
      const std::span<const std::string> frames(out.frames.data() + first, end - first);
      PendingRelay p{
          {std::make_move_iterator(out.answers.begin() + static_cast<std::ptrdiff_t>(first)),
           std::make_move_iterator(out.answers.begin() + static_cast<std::ptrdiff_t>(end))},
          deadline};
      first = end;
      natsStatus s = linkUp && !backedUp() ? NATS_OK : NATS_ERR;
      const std::uint64_t n = nextRequest_++;
      if (s == NATS_OK) {
        std::string reply = inbox_ + "." + std::to_string(n);
        std::string batch = frames.size() == 1 ? std::string() : cluster::encodeRelayBatch(frames);
        if (writer_) {
          writer_->push(subject, std::move(reply),
                        frames.size() == 1 ? frames.front() : std::move(batch));
        } else {
          const std::string& data = frames.size() == 1 ? frames.front() : batch;
          s = natsConnection_PublishRequest(nc_, subject.c_str(), reply.c_str(), data.data(),
                                            static_cast<int>(data.size()));
        }
      }
      if (s != NATS_OK) {
        answerAll(p, RelayOutcome::Unavailable);
        continue;
      }
      stats_.relaysOut += p.answers.size();
      pendingRelays_.emplace(n, std::move(p));
    }
  }
}

bool NatsClusterLink::backedUp() const {
  if (writer_) return writer_->queuedBytes > static_cast<std::size_t>(kMaxBufferedBytes);
  return natsConnection_Buffered(nc_) > kMaxBufferedBytes;
}

// On TLS only the flag the connection events set: natsConnection_Status
// takes the connection's lock, which the writer may hold while it waits
// for the socket.
bool NatsClusterLink::up() const {
  return connected_ && (writer_ || natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED);
}

void NatsClusterLink::answerAll(PendingRelay& p, RelayOutcome outcome) {
  if (outcome == RelayOutcome::Unavailable) stats_.unavailable += p.answers.size();
  for (RelayAnswer& a : p.answers) a(outcome);
}

void NatsClusterLink::broadcast(std::string incomingText, std::string_view fromMeshId,
                                CountAnswer answer) {
  if (!up() || backedUp()) {
    answer(0);
    return;
  }
  const std::uint64_t n = nextRequest_++;
  const std::string reply = inbox_ + "." + std::to_string(n);
  publish(cluster::kBroadcastSubject,
          cluster::encodeBroadcast({relayId_, std::string(fromMeshId), std::move(incomingText)}),
          reply);
  ++stats_.broadcastsOut;
  if (relays_.empty()) {
    answer(0);
    return;
  }
  PendingBroadcast p;
  p.answer = std::move(answer);
  p.expected = relays_.size();
  p.deadlineUs = nowUs() + kBroadcastWaitUs;
  pendingBroadcasts_.emplace(n, std::move(p));
}

void NatsClusterLink::takeover(std::string_view ownerRelayId, std::string_view meshId) {
  ++stats_.takeoversOut;
  moves_[std::string(meshId)] = Move{nowUs(), relayId_};
  // The claim of the authentication that meshOnline() announces next.
  Claim& claim = claims_[std::string(meshId)];
  claim.epoch = nextEpoch(claim.epoch);
  claim.relayId.clear();
  claim.justMade = true;
  publish(cluster::kTakeoverSubject,
          cluster::encodeTakeover(
              {std::string(meshId), std::string(ownerRelayId), relayId_, claim.epoch}));
}

bool NatsClusterLink::mayTakeOver(std::string_view meshId) const {
  auto it = moves_.find(std::string(meshId));
  if (it == moves_.end() || it->second.toRelayId == relayId_) return true;
  if (nowUs() - it->second.atUs >= kTakeoverHoldUs) return true;
  // Unless it moved on since (or went offline there: that forgets the
  // move). Not in the table yet counts as held: the new holder's "online"
  // may still be on its way.
  const MeshEntry* e = router_.find(meshId);
  return e != nullptr && (e->local() || e->relayId != it->second.toRelayId);
}

// ---- from NATS (on the loop thread)

void NatsClusterLink::handleInbound(Inbound& in) {
  if (in.kind != Inbound::Kind::Message) {
    if (in.maxPayload > 0) maxPayload_ = in.maxPayload;
    connectionChanged(in.kind == Inbound::Kind::Connected);
    return;
  }
  if (in.subject.size() > inbox_.size() && in.subject.compare(0, inbox_.size(), inbox_) == 0) {
    onReply(in);
  } else if (auto target = cluster::parseDeliverSubject(in.subject)) {
    onDeliver(*target, in);
  } else if (in.subject == cluster::kDirectorySubject) {
    if (auto m = cluster::decodeDirectory(in.data)) {
      onDirectory(*m);
    } else {
      LOG_WARN("cluster: ignored a malformed directory message");
    }
  } else if (in.subject == cluster::kTakeoverSubject) {
    if (auto t = cluster::decodeTakeover(in.data)) onTakeover(*t);
  } else if (in.subject == cluster::kBroadcastSubject) {
    onBroadcast(in);
  }
}

void NatsClusterLink::connectionChanged(bool up) {
  if (up == connected_) return;
  connected_ = up;
  if (!up) {
    LOG_WARN("cluster: disconnected from NATS; routing to other relays is unavailable");
    failPending();
    return;
  }
  LOG_INFO("cluster: connected to NATS");
  // While this relay was cut off it heard nobody: that says nothing about
  // the others. Their silence counts from now.
  const auto now = nowUs();
  for (auto& [id, r] : relays_) r.lastHeardUs = now;
  cluster::DirectoryMessage hello;
  hello.type = cluster::DirectoryType::Hello;
  hello.relayId = relayId_;
  publishDirectory(hello);
  sendHeartbeat();
}

void NatsClusterLink::failPending() {
  auto relays = std::move(pendingRelays_);
  pendingRelays_.clear();
  for (auto& [n, p] : relays) answerAll(p, RelayOutcome::Unavailable);
  // Queued in this turn and not sent yet.
  auto queued = std::move(outgoing_);
  outgoing_.clear();
  for (auto& [meshId, out] : queued) {
    PendingRelay p{std::move(out.answers), 0};
    answerAll(p, RelayOutcome::Unavailable);
  }
  std::vector<std::uint64_t> broadcasts;
  for (auto& [n, p] : pendingBroadcasts_) broadcasts.push_back(n);
  for (auto n : broadcasts) finishBroadcast(n);
}

void NatsClusterLink::finishBroadcast(std::uint64_t n) {
  auto it = pendingBroadcasts_.find(n);
  if (it == pendingBroadcasts_.end()) return;
  PendingBroadcast p = std::move(it->second);
  pendingBroadcasts_.erase(it);
  p.answer(p.recipients);
}

void NatsClusterLink::onReply(Inbound& in) {
  // inbox_.N ("no responders") or inbox_.N.a (an answer).
  std::uint64_t n = 0;
  const char* begin = in.subject.data() + inbox_.size() + 1;
  const char* end = in.subject.data() + in.subject.size();
  const auto [rest, ec] = std::from_chars(begin, end, n);
  if (ec != std::errc() || (rest != end && std::string_view(rest, end - rest) != ".a")) return;
  if (auto it = pendingRelays_.find(n); it != pendingRelays_.end()) {
    PendingRelay p = std::move(it->second);
    pendingRelays_.erase(it);
    if (p.answers.size() == 1) {
      const bool delivered = !in.noResponders && in.data == cluster::kDeliveredReply;
      p.answers.front()(delivered ? RelayOutcome::Delivered : RelayOutcome::Offline);
      return;
    }
    // A batch: one character per frame; nobody subscribed is offline for all.
    for (std::size_t i = 0; i < p.answers.size(); ++i) {
      const bool delivered =
          !in.noResponders && i < in.data.size() && in.data[i] == cluster::kBatchDelivered;
      p.answers[i](delivered ? RelayOutcome::Delivered : RelayOutcome::Offline);
    }
    return;
  }
  if (auto it = pendingBroadcasts_.find(n); it != pendingBroadcasts_.end()) {
    if (in.noResponders) return;
    auto count = cluster::decodeCount(in.data);
    if (!count) return;
    it->second.recipients += *count;
    if (++it->second.answered >= it->second.expected) finishBroadcast(n);
  }
}

void NatsClusterLink::onDeliver(const cluster::DeliverTarget& target, Inbound& in) {
  const std::string& meshId = target.meshId;
  const MeshEntry* e = router_.find(meshId);
  if (e && !e->local() && !target.forwarded) {
    // Sent here while the sender still saw the mesh here; it has moved on
    // since. Its new holder answers the sender, once: a forwarded request
    // that misses again is answered offline.
    ++stats_.relaysForwarded;
    publish(cluster::deliverSubject(e->relayId, meshId, true), in.data, in.reply);
    return;
  }
  auto batch = cluster::decodeRelayBatch(in.data);
  std::string answers;
  if (batch) {
    stats_.relaysIn += batch->size();
    answers.reserve(batch->size());
    for (std::string_view frame : *batch) {
      const bool delivered = router_.deliverRelay(meshId, frame) == RelayOutcome::Delivered;
      answers += delivered ? cluster::kBatchDelivered : cluster::kBatchOffline;
    }
  } else {
    ++stats_.relaysIn;
    const bool delivered = router_.deliverRelay(meshId, in.data) == RelayOutcome::Delivered;
    answers = delivered ? cluster::kDeliveredReply : cluster::kOfflineReply;
  }
  if (!in.reply.empty()) publish(cluster::answerSubject(in.reply), answers);
}

void NatsClusterLink::onBroadcast(Inbound& in) {
  auto b = cluster::decodeBroadcast(in.data);
  if (!b || b->relayId == relayId_) return;
  ++stats_.broadcastsIn;
  const std::uint32_t n = router_.deliverBroadcast(b->incomingText, b->fromMeshId);
  if (!in.reply.empty()) publish(cluster::answerSubject(in.reply), std::to_string(n));
}

void NatsClusterLink::onDirectory(const cluster::DirectoryMessage& m) {
  using cluster::DirectoryType;
  if (m.relayId == relayId_) return;
  if (m.wire != cluster::kWireVersion) {
    // Its relays would go to subjects nobody here reads, and ours to
    // subjects it does not read: it is not part of this cluster, and its
    // meshes are not listed. Said once per relay, and in /metrics.
    auto [it, isNew] = incompatible_.try_emplace(m.relayId, 0);
    it->second = nowUs();
    if (isNew) {
      LOG_ERROR("cluster: relay " << m.relayId << " speaks cluster wire version " << m.wire
                                  << ", this relay " << cluster::kWireVersion
                                  << "; it is ignored until every relay runs the same release");
    }
    return;
  }
  if (m.type == DirectoryType::Bye) {
    LOG_INFO("cluster: relay " << m.relayId << " left");
    relayGone(m.relayId);
    return;
  }
  auto [it, isNew] = relays_.try_emplace(m.relayId);
  RelayState& r = it->second;
  r.lastHeardUs = nowUs();
  if (isNew) LOG_INFO("cluster: relay " << m.relayId << " joined");
  switch (m.type) {
    case DirectoryType::Hello:
      sendHeartbeat();
      break;
    case DirectoryType::Heartbeat: {
      // The parts of one heartbeat arrive in order; a part missing (this
      // relay was cut off meanwhile) makes it wait for the next whole one.
      if (m.part == 0) {
        r.assembling.clear();
      } else if (m.part != r.nextPart) {
        r.nextPart = 0;
        r.assembling.clear();
        break;
      }
      r.nextPart = m.part + 1;
      for (std::size_t i = 0; i < m.meshes.size(); ++i) {
        const MeshInfo& info = m.meshes[i];
        r.assembling.insert(info.meshId);
        const MeshEntry* e = router_.find(info.meshId);
        if (!e) {
          // Deltas keep the table current; a heartbeat only fills in what
          // this relay missed, and never overrides another holder (a
          // takeover may be on its way).
          if (acceptClaim(info.meshId, m.relayId, m.epochs[i])) {
            router_.remoteOnline(info, m.relayId);
          }
        } else if (e->local()) {
          // Both relays hold it: two claims that crossed, or one made by a
          // relay that had not heard of the other yet. Both sides compare
          // the same two claims; the loser yields.
          if (acceptClaim(info.meshId, m.relayId, m.epochs[i])) {
            movedAway(info.meshId, m.relayId);
            router_.remoteOnline(info, m.relayId);
          }
        } else if (!e->local() && e->relayId == m.relayId) {
          if (e->participantsJson != info.participantsJson) {
            router_.remoteUpdated(info, m.relayId, MeshChange::Participants);
          } else if (e->roomsJson != info.roomsJson) {
            router_.remoteUpdated(info, m.relayId, MeshChange::Rooms);
          }
        }
      }
      if (r.nextPart < m.parts) break;
      for (const std::string& meshId : r.meshes) {
        if (!r.assembling.contains(meshId)) remoteOffline(meshId, m.relayId);
      }
      r.meshes = std::move(r.assembling);
      r.assembling.clear();
      r.nextPart = 0;
      break;
    }
    case DirectoryType::Online:
      // An older claim than the one this relay knows (delayed), or the
      // losing one of two at once, changes nothing.
      if (!acceptClaim(m.meshes.front().meshId, m.relayId, m.epochs.front())) break;
      r.meshes.insert(m.meshes.front().meshId);
      // remoteOnline closes a connection here that held it.
      movedAway(m.meshes.front().meshId, m.relayId);
      router_.remoteOnline(m.meshes.front(), m.relayId);
      break;
    case DirectoryType::Offline:
      r.meshes.erase(m.meshId);
      if (auto mv = moves_.find(m.meshId); mv != moves_.end() && mv->second.toRelayId == m.relayId)
        moves_.erase(mv);
      remoteOffline(m.meshId, m.relayId);
      break;
    case DirectoryType::Updated:
      router_.remoteUpdated(m.meshes.front(), m.relayId, m.change);
      break;
    case DirectoryType::Bye:
      break;
  }
}

void NatsClusterLink::onTakeover(const cluster::Takeover& t) {
  if (t.toRelayId == relayId_) return;
  // The new holder's "online" delta, right behind, updates the claims.
  if (auto c = claims_.find(t.meshId); c != claims_.end()) {
    const std::string& holder = c->second.relayId.empty() ? relayId_ : c->second.relayId;
    if (holder != t.toRelayId &&
        !cluster::claimWins(t.epoch, t.toRelayId, c->second.epoch, holder)) {
      return;
    }
  }
  moves_[t.meshId] = Move{nowUs(), t.toRelayId};
  if (t.fromRelayId != relayId_) return;
  if (movedAway(t.meshId, t.toRelayId)) router_.takenOver(t.meshId);
}

// A claim made now: after every claim this relay knows of, and, when the
// relays' clocks agree, after every claim made before now anywhere (so that
// the latest authentication wins even on a relay that has not heard of an
// earlier one yet).
std::uint64_t NatsClusterLink::nextEpoch(std::uint64_t known) {
  return std::max(known + 1, static_cast<std::uint64_t>(unixMs()));
}

bool NatsClusterLink::acceptClaim(const std::string& meshId, const std::string& relayId,
                                  std::uint64_t epoch) {
  auto [it, fresh] = claims_.try_emplace(meshId);
  Claim& c = it->second;
  if (!fresh) {
    const std::string& holder = c.relayId.empty() ? relayId_ : c.relayId;
    if (holder != relayId && !cluster::claimWins(epoch, relayId, c.epoch, holder)) return false;
  }
  c.relayId = relayId;
  c.epoch = std::max(c.epoch, epoch);
  c.justMade = false;
  return true;
}

void NatsClusterLink::remoteOffline(const std::string& meshId, const std::string& relayId) {
  if (auto c = claims_.find(meshId); c != claims_.end() && c->second.relayId == relayId) {
    claims_.erase(c);
  }
  router_.remoteOffline(meshId, relayId);
}

void NatsClusterLink::relayGone(const std::string& relayId) {
  relays_.erase(relayId);
  std::erase_if(claims_, [&](const auto& kv) { return kv.second.relayId == relayId; });
  router_.relayGone(relayId);
}

// A mesh held here was taken by another relay (its takeover or its online
// delta, whichever came first): no longer announced or subscribed here.
// True when it was still held here; the caller has the Router close the
// connection (session_replaced, 4000).
bool NatsClusterLink::movedAway(const std::string& meshId, const std::string& toRelayId) {
  if (local_.erase(meshId) == 0) return false;
  ++stats_.takeoversIn;
  LOG_INFO("cluster: meshId=" << meshId << " taken over by relay " << toRelayId);
  publish(cluster::kDisconnectedSubject,
          cluster::encodeSessionEvent(meshId, relayId_, unixMs(), "replaced"));
  return true;
}

void NatsClusterLink::tick() {
  // Messages parsed outside a read event (while libnats reconnected).
  if (loop_) drainSubscriptions();
  freeSpent();
  const auto now = nowUs();
  if (connected_) {
    if (now - lastHeartbeatUs >= kHeartbeatUs) sendHeartbeat();
    std::vector<std::string> silent;
    for (const auto& [id, r] : relays_) {
      if (now - r.lastHeardUs >= kSilenceUs) silent.push_back(id);
    }
    for (const std::string& id : silent) {
      LOG_WARN("cluster: relay " << id << " silent for " << kSilenceUs / 1000
                                 << " ms; its meshes are offline");
      ++stats_.relaysLost;
      relayGone(id);
    }
  }
  std::vector<std::uint64_t> late;
  for (const auto& [n, p] : pendingRelays_) {
    if (now >= p.deadlineUs) late.push_back(n);
  }
  for (auto n : late) {
    auto it = pendingRelays_.find(n);
    PendingRelay p = std::move(it->second);
    pendingRelays_.erase(it);
    answerAll(p, RelayOutcome::Unavailable);
  }
  late.clear();
  for (const auto& [n, p] : pendingBroadcasts_) {
    if (now >= p.deadlineUs) late.push_back(n);
  }
  for (auto n : late) finishBroadcast(n);
  std::erase_if(moves_, [&](const auto& kv) { return now - kv.second.atUs >= kTakeoverHoldUs; });
  std::erase_if(incompatible_, [&](const auto& kv) { return now - kv.second >= kSilenceUs; });
}

}  // namespace mesh::relay
