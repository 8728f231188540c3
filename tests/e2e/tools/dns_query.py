#!/usr/bin/env python3
"""One DNS A query over UDP, optionally from a socket carrying a firewall mark (SO_MARK), as
the helper's own marked resolver would send it. Prints the first A record and exits 0 when an
answer came back; exits 1 on a timeout or a refusal (the kill switch rejects with ICMP).

    dns_query.py SERVER NAME [--mark MARK]
"""
import random
import socket
import struct
import sys

SO_MARK = 36


def main() -> int:
    server, name = sys.argv[1], sys.argv[2]
    mark = int(sys.argv[4], 0) if len(sys.argv) > 4 and sys.argv[3] == "--mark" else None
    qid = random.randrange(1 << 16)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        query += bytes([len(label)]) + label.encode()
    query += b"\x00" + struct.pack(">HH", 1, 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    if mark is not None:
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
    s.settimeout(2)
    try:
        s.sendto(query, (server, 53))
        reply, _ = s.recvfrom(4096)
    except OSError as e:
        print(f"no answer: {e}")
        return 1
    if len(reply) < 16 or struct.unpack(">H", reply[:2])[0] != qid:
        print("no answer: garbled reply")
        return 1
    ancount = struct.unpack(">H", reply[6:8])[0]
    if ancount == 0:
        print("no answer: empty")
        return 1
    print(socket.inet_ntoa(reply[-4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
