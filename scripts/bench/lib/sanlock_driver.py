#!/usr/bin/python3
"""Drives a real sanlock daemon through python3-sanlock (its C client library) for the
benchmarks in scripts/bench. The daemon is chosen by $SANLOCK_RUN_DIR. Prints one JSON line.

  join LS HOST_ID PATH IO_TIMEOUT           add_lockspace (waits until joined)
  rem LS HOST_ID PATH                       rem_lockspace
  cycle LS PATH START COUNT PROCS [MODE]    PROCS registered processes acquire+release leases
                                            START..START+COUNT-1 (lease i at i MiB in PATH, named
                                            r%05d), each process one slice, one lease at a time;
                                            a PATH with {i} names one file per lease (lease i at
                                            offset 0 of PATH with {i} replaced by i); MODE "marks"
                                            adds each call's timestamps, "hold=S" releases after
                                            holding the leases S seconds, 8 at a time (cycles.py)
  hold LS PATH START COUNT                  hold COUNT leases (8 per registered process, sanlock's
                                            limit) until stdin closes; then release them
  take LS PATH INDEX [hold]                 acquire one lease, retrying until it is ours; prints
                                            when; with "hold" keeps it until killed or stdin closes
"""
import json
import os
import sys
import time

import sanlock

import cycles

MiB = 1 << 20
MAX_PER_PROC = 8  # SANLK_MAX_RESOURCES


def b(s):
    return s.encode()


def res_name(i):
    return b("r%05d" % i)


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cmd_join(ls, host_id, path, io):
    t = time.monotonic()
    sanlock.add_lockspace(b(ls), int(host_id), path, 0, iotimeout=int(io))
    out({"seconds": time.monotonic() - t})


def cmd_rem(ls, host_id, path):
    t = time.monotonic()
    sanlock.rem_lockspace(b(ls), int(host_id), path, 0)
    out({"seconds": time.monotonic() - t})


class SanlockClient:
    """One registered process: its connection to the daemon (cycles.run's client)."""

    def __init__(self):
        self.fd = sanlock.register()

    def acquire(self, ls, i, disks):
        sanlock.acquire(b(ls), res_name(i), disks, slkfd=self.fd)

    def release(self, ls, i, disks):
        sanlock.release(b(ls), res_name(i), disks, slkfd=self.fd)


def cmd_cycle(ls, path, start, count, procs, mode=None):
    out(cycles.run(SanlockClient, ls, lambda i: [cycles.lease_disk(path, i)], int(start), int(count), int(procs), **cycles.mode_args(mode)))


def cmd_hold(ls, path, start, count):
    start, count = int(start), int(count)
    t = time.monotonic()
    kids = []
    for first in range(start, start + count, MAX_PER_PROC):
        idx = list(range(first, min(first + MAX_PER_PROC, start + count)))
        ready_r, ready_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(ctl_w)
            try:
                fd = sanlock.register()
                for i in idx:
                    sanlock.acquire(b(ls), res_name(i), [(path, i * MiB)], slkfd=fd)
                os.write(ready_w, b"ok\n")
                os.read(ctl_r, 1)  # parent closed: release and go
                for i in idx:
                    sanlock.release(b(ls), res_name(i), [(path, i * MiB)], slkfd=fd)
                os._exit(0)
            except Exception as e:
                os.write(ready_w, ("error %r\n" % (e,)).encode())
                os._exit(1)
        os.close(ready_w)
        os.close(ctl_r)
        line = cycles.read_line(ready_r).decode().strip()
        os.close(ready_r)
        if line != "ok":
            raise SystemExit("hold failed at lease %d: %s" % (first, line))
        kids.append((pid, ctl_w))
    out({"held": count, "procs": len(kids), "seconds": time.monotonic() - t, "pids": [p for p, _ in kids]})
    sys.stdin.read()  # until the benchmark closes stdin
    for pid, w in kids:
        os.close(w)
    for pid, _ in kids:
        os.waitpid(pid, 0)
    out({"released": count})


def cmd_take(ls, path, index, hold=None):
    i = int(index)
    fd = sanlock.register()
    t = time.time()
    attempts, errors = 0, {}
    while True:
        attempts += 1
        try:
            sanlock.acquire(b(ls), res_name(i), [(path, i * MiB)], slkfd=fd)
            break
        except sanlock.SanlockException as e:
            errors[str(e.errno)] = errors.get(str(e.errno), 0) + 1
            time.sleep(0.2)
    out({"acquired_at": time.time() * 1000, "waited_s": time.time() - t, "attempts": attempts, "errors": errors})
    if hold == "hold":
        sys.stdin.read()
    else:
        sanlock.release(b(ls), res_name(i), [(path, i * MiB)], slkfd=fd)


def main():
    cmds = {"join": cmd_join, "rem": cmd_rem, "cycle": cmd_cycle, "hold": cmd_hold, "take": cmd_take}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.stderr.write(__doc__)
        sys.exit(2)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
