#!/usr/bin/env python3
"""The leak check's probe loop: every 200 ms a UDP datagram, a TCP SYN and a DNS query.

    probe_loop.py TARGET_IP DNS_SERVER_IP ROUNDS

UDP goes to TARGET_IP:9 (discard), the SYN to TARGET_IP:80 (a non-blocking connect, given up
at once), the query (A example.test) to DNS_SERVER_IP:53. Pings run beside it (the harness's
Traffic). Bounded: ROUNDS rounds, then it exits. Every send error is ignored: under a kill
switch most of them are refused, which is the point.
"""
import socket
import struct
import sys
import time


def dns_query(ident):
    header = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    name = b"".join(bytes([len(p)]) + p for p in (b"example", b"test")) + b"\0"
    return header + name + struct.pack(">HH", 1, 1)


def family(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def main():
    target, dns, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(min(rounds, 3000)):
        for send in (
            lambda: socket.socket(family(target), socket.SOCK_DGRAM).sendto(b"probe", (target, 9)),
            lambda: socket.socket(family(dns), socket.SOCK_DGRAM).sendto(dns_query(i), (dns, 53)),
        ):
            try:
                send()
            except OSError:
                pass
        syn = socket.socket(family(target), socket.SOCK_STREAM)
        syn.setblocking(False)
        try:
            syn.connect((target, 80))
        except OSError:
            pass
        time.sleep(0.2)
        syn.close()


if __name__ == "__main__":
    main()
