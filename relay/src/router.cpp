// Routing tables, takeover, presence and participants (router.h).
#include "router.h"

#include "mesh/proto/codec.h"

namespace mesh::relay {

MeshEntry* Router::findEntry(std::string_view meshId) {
  auto it = meshes_.find(meshId);
  return it == meshes_.end() ? nullptr : &it->second;
}

const MeshEntry* Router::find(std::string_view meshId) const {
  auto it = meshes_.find(meshId);
  return it == meshes_.end() ? nullptr : &it->second;
}

LocalConn Router::localConn(std::string_view meshId) const {
  const MeshEntry* e = find(meshId);
  return e && e->local() ? e->conn : nullptr;
}

void Router::index(MeshEntry& e) {
  if (e.local()) {
    ++localCount_;
    if (e.wantsPresence) presenceWatchers_.insert(&e);
  }
  if (e.participantCount > 0) withParticipants_.insert(&e);
}

void Router::unindex(MeshEntry& e) {
  if (e.local()) {
    --localCount_;
    presenceWatchers_.erase(&e);
  }
  withParticipants_.erase(&e);
}

void Router::erase(Table::iterator it) {
  unindex(it->second);
  meshes_.erase(it);
}

std::vector<LocalConn> Router::localsBut(LocalConn except) const {
  std::vector<LocalConn> out;
  out.reserve(localCount_);
  for (const auto& [meshId, e] : meshes_) {
    if (e.local() && e.conn != except) out.push_back(e.conn);
  }
  return out;
}

bool Router::localOnline(MeshInfo info, LocalConn conn) {
  bool takeover = false;
  auto it = meshes_.find(info.meshId);
  if (it != meshes_.end()) {
    takeover = true;
    MeshEntry& old = it->second;
    const LocalConn oldConn = old.conn;
    const std::string oldRelay = old.relayId;
    erase(it);
    if (oldRelay.empty()) {
      if (oldConn != conn) local_.replaced(oldConn);
    } else {
      cluster_->takeover(oldRelay, info.meshId);
    }
  }
  const std::string meshId = info.meshId;
  MeshEntry entry;
  static_cast<MeshInfo&>(entry) = std::move(info);
  entry.conn = conn;
  MeshEntry& e = meshes_.emplace(meshId, std::move(entry)).first->second;
  index(e);
  cluster_->meshOnline(e);

  // Participant exchange: the newcomer learns the others' non-empty lists,
  // the others learn the newcomer's if it has one.
  sendOthersParticipants(e);
  // The deliveries above may have closed connections (slow consumers):
  // look the newcomer up again.
  const MeshEntry* now = find(meshId);
  if (!now || now->conn != conn) return takeover;
  if (now->participantCount > 0) pushParticipants(*now);
  now = find(meshId);
  if (!takeover && now && now->conn == conn) sendPresence(*now, true);
  return takeover;
}

void Router::localOffline(std::string_view meshId, LocalConn conn, bool announce) {
  auto it = meshes_.find(meshId);
  if (it == meshes_.end() || !it->second.local() || it->second.conn != conn) return;
  // Kept for the presence frame: the entry is gone before it is sent.
  MeshEntry gone = std::move(it->second);
  erase(it);
  cluster_->meshOffline(gone.meshId);
  if (announce) sendPresence(gone, false);
}

void Router::localRoomsUpdated(std::string_view meshId, std::string_view roomsJson) {
  MeshEntry* e = findEntry(meshId);
  if (!e || !e->local()) return;
  e->roomsJson.assign(roomsJson);
  cluster_->meshUpdated(*e, MeshChange::Rooms);
}

void Router::localParticipantsUpdated(std::string_view meshId, std::string_view participantsJson,
                                      std::size_t participantCount) {
  MeshEntry* e = findEntry(meshId);
  if (!e || !e->local()) return;
  e->participantsJson.assign(participantsJson);
  e->participantCount = participantCount;
  if (participantCount > 0) {
    withParticipants_.insert(e);
  } else {
    withParticipants_.erase(e);
  }
  cluster_->meshUpdated(*e, MeshChange::Participants);
  pushParticipants(*e);
}

Router::RelayResult Router::relay(const Sender& from, std::string_view targetMeshId,
                                  std::string_view payloadJson,
                                  const std::optional<std::string>& id, std::int64_t arrivalUs,
                                  FunctionRef<RelayAnswer()> later) {
  const MeshEntry* target = find(targetMeshId);
  if (!target) return {RelayOutcome::Offline, nullptr};
  std::optional<std::string_view> idView;
  if (id) idView = *id;
  if (target->local()) {
    const LocalConn to = target->conn;
    local_.deliver(
        std::span<const LocalConn>(&to, 1),
        [&](std::string& out) {
          proto::encodeIncoming(out, from.meshId, from.name, payloadJson, idView);
        },
        arrivalUs);
    return {RelayOutcome::Delivered, to};
  }
  if (!cluster_->active()) return {RelayOutcome::Unavailable, nullptr};
  std::string text;
  proto::encodeIncoming(text, from.meshId, from.name, payloadJson, idView);
  cluster_->relay(target->relayId, target->meshId, std::move(text), later());
  return {std::nullopt, nullptr};
}

Router::BroadcastResult Router::broadcast(const Sender& from, std::string_view payloadJson,
                                          const std::optional<std::string>& id,
                                          std::int64_t arrivalUs,
                                          FunctionRef<CountAnswer()> later) {
  std::optional<std::string_view> idView;
  if (id) idView = *id;
  // Collected first: a slow consumer closed while frames are queued leaves
  // the table.
  const std::vector<LocalConn> recipients = localsBut(from.conn);
  const auto localRecipients = static_cast<std::uint32_t>(recipients.size());
  if (!cluster_->active()) {
    local_.deliver(
        recipients,
        [&](std::string& out) {
          proto::encodeIncoming(out, from.meshId, from.name, payloadJson, idView);
        },
        arrivalUs);
    return {localRecipients, false};
  }
  std::string text;
  proto::encodeIncoming(text, from.meshId, from.name, payloadJson, idView);
  local_.deliver(
      recipients, [&](std::string& out) { out.append(text); }, arrivalUs);
  CountAnswer answer = later();
  cluster_->broadcast(std::move(text), from.meshId,
                      [localRecipients, answer = std::move(answer)](std::uint32_t remote) {
                        answer(localRecipients + remote);
                      });
  return {localRecipients, true};
}

void Router::discover(LocalConn to, const std::optional<std::string>& id) {
  std::vector<proto::InstanceView> instances;
  instances.reserve(meshes_.size());
  for (const auto& [meshId, e] : meshes_) instances.push_back({e.meshId, e.name, e.roomsJson});
  std::optional<std::string_view> idView;
  if (id) idView = *id;
  local_.deliver(
      std::span<const LocalConn>(&to, 1),
      [&](std::string& out) { proto::encodeDiscoverResult(out, instances, idView); }, 0);
}

void Router::sendPresence(const MeshEntry& about, bool online) {
  if (presenceWatchers_.empty()) return;
  std::vector<LocalConn> recipients;
  recipients.reserve(presenceWatchers_.size());
  for (const MeshEntry* watcher : presenceWatchers_) {
    if (watcher != &about && watcher->meshId != about.meshId) recipients.push_back(watcher->conn);
  }
  local_.deliver(
      recipients,
      [&](std::string& out) { proto::encodePresence(out, about.meshId, about.name, online); }, 0);
}

void Router::pushParticipants(const MeshEntry& about) {
  const std::vector<proto::ParticipantsView> list{
      {about.meshId, about.name, about.participantsJson}};
  local_.deliver(
      localsBut(about.local() ? about.conn : nullptr),
      [&](std::string& out) { proto::encodeParticipants(out, list); }, 0);
}

void Router::sendOthersParticipants(const MeshEntry& newcomer) {
  if (!newcomer.local()) return;
  std::vector<proto::ParticipantsView> others;
  for (const MeshEntry* other : withParticipants_) {
    if (other != &newcomer) others.push_back({other->meshId, other->name, other->participantsJson});
  }
  if (others.empty()) return;
  const LocalConn to = newcomer.conn;
  local_.deliver(
      std::span<const LocalConn>(&to, 1),
      [&](std::string& out) { proto::encodeParticipants(out, others); }, 0);
}

// ---- from the cluster

void Router::remoteOnline(MeshInfo info, std::string_view relayId) {
  bool wasOnline = false;
  auto it = meshes_.find(info.meshId);
  if (it != meshes_.end()) {
    wasOnline = true;
    MeshEntry& old = it->second;
    const LocalConn oldConn = old.local() ? old.conn : nullptr;
    erase(it);
    if (oldConn) local_.replaced(oldConn);
  }
  const std::string meshId = info.meshId;
  MeshEntry entry;
  static_cast<MeshInfo&>(entry) = std::move(info);
  entry.relayId.assign(relayId);
  MeshEntry& e = meshes_.emplace(meshId, std::move(entry)).first->second;
  index(e);
  if (e.participantCount > 0) pushParticipants(e);
  if (wasOnline) return;
  if (const MeshEntry* now = find(meshId)) sendPresence(*now, true);
}

void Router::remoteOffline(std::string_view meshId, std::string_view relayId) {
  auto it = meshes_.find(meshId);
  if (it == meshes_.end() || it->second.local() || it->second.relayId != relayId) return;
  MeshEntry gone = std::move(it->second);
  erase(it);
  sendPresence(gone, false);
}

void Router::remoteUpdated(MeshInfo info, std::string_view relayId, MeshChange what) {
  MeshEntry* e = findEntry(info.meshId);
  if (!e || e->local() || e->relayId != relayId) return;
  unindex(*e);
  static_cast<MeshInfo&>(*e) = std::move(info);
  index(*e);
  if (what == MeshChange::Participants) pushParticipants(*e);
}

void Router::relayGone(std::string_view relayId) {
  std::vector<std::string> gone;
  for (const auto& [meshId, e] : meshes_) {
    if (!e.local() && e.relayId == relayId) gone.push_back(meshId);
  }
  for (const std::string& meshId : gone) remoteOffline(meshId, relayId);
}

RelayOutcome Router::deliverRelay(std::string_view targetMeshId, std::string_view incomingText) {
  const LocalConn to = localConn(targetMeshId);
  if (!to) return RelayOutcome::Offline;
  local_.deliver(
      std::span<const LocalConn>(&to, 1), [&](std::string& out) { out.append(incomingText); }, 0);
  return RelayOutcome::Delivered;
}

std::uint32_t Router::deliverBroadcast(std::string_view incomingText, std::string_view fromMeshId) {
  const std::vector<LocalConn> recipients = localsBut(localConn(fromMeshId));
  local_.deliver(
      recipients, [&](std::string& out) { out.append(incomingText); }, 0);
  return static_cast<std::uint32_t>(recipients.size());
}

void Router::takenOver(std::string_view meshId) {
  auto it = meshes_.find(meshId);
  if (it == meshes_.end() || !it->second.local()) return;
  const LocalConn conn = it->second.conn;
  erase(it);
  local_.replaced(conn);
}

}  // namespace mesh::relay
