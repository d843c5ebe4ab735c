#!/usr/bin/env python3
"""A stand-in for an authorize hook (mesh-relay --authorize-url), for trying
the hook out and for benchmarks: it answers every POST with {"allow": true}
(or with the JSON given by --answer) and prints nothing per request.

    tools/authorize-stub.py --port 4390 &
    mesh-relay --authorize-url http://127.0.0.1:4390/authorize ...
"""
import argparse
import http.server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4390)
    parser.add_argument("--answer", default='{"allow":true}', help="JSON body of every answer")
    args = parser.parse_args()
    answer = args.answer.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *unused):
            pass

    # A relay that restarts asks about every mesh at once: a deep backlog.
    http.server.ThreadingHTTPServer.request_queue_size = 1024
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
