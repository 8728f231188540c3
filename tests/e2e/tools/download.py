#!/usr/bin/env python3
"""One paced TCP download, to check that a flow survives whole.

    download.py serve LISTEN_IP PORT FILE SECONDS   send FILE to the first client, evenly over
                                                    SECONDS, then exit (one connection only)
    download.py fetch SERVER_IP PORT OUT TIMEOUT_S  one connection: write what arrives to OUT,
                                                    exit 0 at EOF, 1 on a reset or a timeout

A reconnect cannot pass: the server serves one connection and the client never makes a second,
so a matching checksum means one flow carried every byte.
"""
import socket
import sys
import time


def serve(ip, port, path, seconds):
    data = open(path, "rb").read()
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        s.listen(1)
        s.settimeout(60)
        conn, _ = s.accept()
        chunk = 16384
        pieces = max(1, len(data) // chunk)
        pause = seconds / pieces
        start = time.monotonic()
        with conn:
            for k, off in enumerate(range(0, len(data), chunk)):
                conn.sendall(data[off:off + chunk])
                delay = start + (k + 1) * pause - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


def fetch(ip, port, out, timeout):
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s, open(out, "wb", buffering=0) as f:
        s.settimeout(timeout)
        s.connect((ip, port))
        while True:
            try:
                b = s.recv(65536)
            except OSError as e:
                print(f"download: {e}", file=sys.stderr)
                return 1
            if not b:
                return 0
            f.write(b)


if __name__ == "__main__":
    mode, ip, port, path, secs = sys.argv[1:6]
    if mode == "serve":
        serve(ip, int(port), path, float(secs))
    else:
        sys.exit(fetch(ip, int(port), path, float(secs)))
