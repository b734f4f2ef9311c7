#!/usr/bin/python3
"""Drives a lockagent daemon for the benchmarks in scripts/bench as sanlock_driver.py drives
sanlock: the same cycle harness (cycles.py), each client process with one blocking connection to
the control socket, as libvirt's hook client (compiled C) and python3-sanlock's clients have.
Requests are the control protocol's JSON lines (src/control/protocol.ts). Prints one JSON line.

  cycle SOCKET LS PATH START COUNT PROCS [MODE]    as sanlock_driver.py's cycle: lease i at
                                                   i MiB of PATH (at 0 of its own file when PATH
                                                   has {i}), named r%05d
"""
import json
import os
import socket
import sys

import cycles

PROTOCOL_VERSION = 1


class AgentClient:
    """One connection to the agent and one owner (as a registered sanlock client)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        self.owner = {"uuid": "bench-py-%d" % os.getpid(), "name": "bench-py-%d" % os.getpid()}
        self.next_id = 0

    def call(self, req):
        self.next_id += 1
        self.sock.sendall((json.dumps(dict(req, v=PROTOCOL_VERSION, id=self.next_id)) + "\n").encode())
        r = json.loads(self.reader.readline() or b"null")
        if not r or not r.get("ok"):
            raise RuntimeError("%s failed: %s" % (req["op"], (r or {}).get("error", "connection closed")))
        return r["result"]

    def leases(self, ls, i, disks):
        return [{"lockspace": ls, "resource": "r%05d" % i, "path": p, "offset": o} for p, o in disks]

    def acquire(self, ls, i, disks):
        self.call({"op": "acquire", "owner": self.owner, "leases": self.leases(ls, i, disks)})

    def release(self, ls, i, disks):
        self.call({"op": "release", "owner": self.owner, "leases": self.leases(ls, i, disks)})


def cmd_cycle(sock, ls, path, start, count, procs, mode=None):
    r = cycles.run(lambda: AgentClient(sock), ls, lambda i: [cycles.lease_disk(path, i)], int(start), int(count), int(procs), **cycles.mode_args(mode))
    sys.stdout.write(json.dumps(r) + "\n")


def main():
    if len(sys.argv) < 2 or sys.argv[1] != "cycle":
        sys.stderr.write(__doc__)
        sys.exit(2)
    cmd_cycle(*sys.argv[2:])


if __name__ == "__main__":
    main()
