#!/usr/bin/env python3
"""The connect-time pinger of bench.sh.

    first-reply.py HOST TIMEOUT_S

Sends an ICMP echo request to the IPv4 address HOST every millisecond and prints the wall-clock
time (seconds since the epoch) at which the first echo reply from HOST arrived, then exits.
Prints "ready" first, once the socket is open, so the caller can start the clock after it.
Send errors (no route yet, a kill switch refusing the packet) and ICMP errors are ignored: the
tunnel is not up yet. Exits 1 after TIMEOUT_S seconds without a reply. Needs root (raw socket).

`ping -i` is no substitute: it slows down after errors and stops at the first one with -w.
"""

import os
import select
import socket
import struct
import sys
import time

INTERVAL = 0.001


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"underpass-bench-connect"
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def is_reply(packet: bytes, host: str, ident: int) -> bool:
    if len(packet) < 20:
        return False
    ihl = (packet[0] & 0x0F) * 4
    if socket.inet_ntoa(packet[12:16]) != host or len(packet) < ihl + 8:
        return False
    kind, _code, _sum, got_ident, _seq = struct.unpack("!BBHHH", packet[ihl : ihl + 8])
    return kind == 0 and got_ident == ident


def main() -> int:
    host, timeout = sys.argv[1], float(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    seq = 0
    next_send = time.monotonic()
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            try:
                sock.sendto(echo_request(ident, seq), (host, 0))
            except OSError:
                pass
            next_send = now + INTERVAL
        readable, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        while readable:
            try:
                packet = sock.recv(2048)
            except BlockingIOError:
                break
            if is_reply(packet, host, ident):
                print(f"{time.time():.6f}", flush=True)
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
