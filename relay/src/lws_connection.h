// A /gateway WebSocket that libwebsockets carries: every connection with TLS
// configured, over HTTP/1.1 or inside HTTP/2. lws reads and frames what the
// peer sends (server.cpp's callbacks hand it to the session); writes go
// through lws_write() from here.
#pragma once

#include <string_view>

#include "connection.h"
#include "mesh/relay/server.h"

struct lws;

namespace mesh::relay {

class LwsConnection final : public Connection {
 public:
  LwsConnection(Server::Impl& server, lws* wsi);

  void flush(Session& s) override;
  void kill(Session& s) override;
  void abandon() override {}  // lws closes its sockets with its context
  [[nodiscard]] bool frontFrameStarted() const override { return false; }

  // LWS_CALLBACK_SERVER_WRITEABLE; non-zero closes the connection.
  int onWriteable(Session& s);
  // LWS_CALLBACK_WS_PEER_INITIATED_CLOSE. Non-zero: lws is to close with
  // the reason set here, not echo the frame.
  int onPeerClose(Session& s, std::string_view payload);

  // The LwsConnection of a session known to have one.
  static LwsConnection& of(Session& s);

 private:
  enum class WriteResult { Ok, Failed, CloseViaLws };
  WriteResult write(Session& s);

  Server::Impl& server_;
  lws* wsi_;
  // A WebSocket on its own TCP connection (not inside HTTP/2): the relay
  // frames and batches its writes itself.
  bool relayFramed_;
  // Inside HTTP/2 the close goes through lws_close_reason() from WRITEABLE.
  bool closeViaLws_ = false;
};

}  // namespace mesh::relay
