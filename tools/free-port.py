#!/usr/bin/env python3
"""Prints a free loopback TCP port that this run has not handed out before.

Usage: free-port.py USED_FILE

The kernel may offer a port again until the server it was meant for has
bound it, so scripts that start several servers one after the other keep
the ports they were given in USED_FILE (one per line) and never get one
twice.
"""
import socket
import sys


def main() -> None:
    path = sys.argv[1]
    try:
        with open(path) as f:
            used = set(f.read().split())
    except FileNotFoundError:
        used = set()
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
        s.close()
        if port not in used:
            break
    with open(path, "a") as f:
        f.write(port + "\n")
    print(port)


if __name__ == "__main__":
    main()
