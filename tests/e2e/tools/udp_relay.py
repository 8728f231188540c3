#!/usr/bin/env python3
"""A UDP relay that adds a fixed delay in both directions (this kernel has no netem).

    udp_relay.py LISTEN_IP:PORT TARGET_IP:PORT DELAY_MS LIFETIME_S

It forwards datagrams from the most recent client to the target and the target's answers back
to that client, each after DELAY_MS. It exits by itself after LIFETIME_S seconds.
"""
import heapq
import select
import socket
import sys
import time


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main():
    listen, target = addr(sys.argv[1]), addr(sys.argv[2])
    delay, lifetime = float(sys.argv[3]) / 1000.0, float(sys.argv[4])
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(listen)
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("0.0.0.0", 0))
    client = None
    queue = []  # (due, seq, socket, data, destination)
    seq = 0
    end = time.monotonic() + lifetime
    print("relay ready", flush=True)
    while time.monotonic() < end:
        now = time.monotonic()
        wait = max(0.0, min(queue[0][0] - now, 0.05)) if queue else 0.05
        ready, _, _ = select.select([front, back], [], [], wait)
        for sock in ready:
            data, source = sock.recvfrom(65535)
            if sock is front:
                client = source
                heapq.heappush(queue, (time.monotonic() + delay, seq, back, data, target))
            elif client is not None:
                heapq.heappush(queue, (time.monotonic() + delay, seq, front, data, client))
            seq += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, sock, data, destination = heapq.heappop(queue)
            sock.sendto(data, destination)


if __name__ == "__main__":
    main()
