"""The acquire+release cycle harness of the benchmark drivers (sanlock_driver.py, agent_driver.py):
both tools are timed by the same Python code, each through a blocking client of its own.

run() forks PROCS client processes; each makes one client (its connection to the daemon), waits
at a common start barrier, then acquires and releases its slice of the leases START..START+COUNT-1
(process p takes START+p, START+p+PROCS, ...), one lease at a time, timing each call. Returns the
seconds from the barrier to the last result, and every acquire and release time in ms.

With hold=S (seconds) each process instead acquires its leases 8 at a time (sanlock's limit per
registered process), holds them S seconds and then releases them one by one: a release as a
domain's stop makes it, long after the acquire (each file's I/O thread has gone idle meanwhile).
"""
import json
import os
import time

MiB = 1 << 20


def lease_disk(path, i):
    """Lease i: at i MiB of PATH, or at 0 of its own file when PATH has {i}."""
    return (path.replace("{i}", str(i)), 0) if "{i}" in path else (path, i * MiB)


def read_line(fd):
    buf = b""
    while not buf.endswith(b"\n"):
        c = os.read(fd, 65536)
        if not c:
            break
        buf += c
    return buf


HOLD_GROUP = 8  # SANLK_MAX_RESOURCES: leases one registered sanlock process may hold


def _held(client, ls, disks_of, idx, hold):
    acq, rel = [], []
    for g in range(0, len(idx), HOLD_GROUP):
        group = idx[g:g + HOLD_GROUP]
        for i in group:
            t0 = time.time()
            client.acquire(ls, i, disks_of(i))
            acq.append((time.time() - t0) * 1000)
        time.sleep(hold)
        for i in group:
            t0 = time.time()
            client.release(ls, i, disks_of(i))
            rel.append((time.time() - t0) * 1000)
    return acq, rel


def _child(make_client, ls, disks_of, idx, go_r, res_w, marks, hold):
    client = make_client()
    os.read(go_r, 1)  # start barrier
    acq, rel, mk = [], [], []
    if hold:
        acq, rel = _held(client, ls, disks_of, idx, hold)
    else:
        for i in idx:
            disks = disks_of(i)
            t0 = time.time()
            client.acquire(ls, i, disks)
            t1 = time.time()
            client.release(ls, i, disks)
            t2 = time.time()
            acq.append((t1 - t0) * 1000)
            rel.append((t2 - t1) * 1000)
            if marks:
                mk.append([t0 * 1000, t1 * 1000, t2 * 1000])
    os.write(res_w, (json.dumps({"acq": acq, "rel": rel, "marks": mk}) + "\n").encode())


def run(make_client, ls, disks_of, start, count, procs, marks=False, hold=0.0):
    """make_client() -> an object with acquire(ls, i, disks) and release(ls, i, disks);
    disks_of(i) -> the lease's [(path, offset)]."""
    go_r, go_w = os.pipe()
    kids = []
    for p in range(procs):
        idx = list(range(start + p, start + count, procs))
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(res_r)
            code = 0
            try:
                _child(make_client, ls, disks_of, idx, go_r, res_w, marks, hold)
            except Exception as e:  # report and fail
                os.write(res_w, (json.dumps({"error": repr(e)}) + "\n").encode())
                code = 1
            os._exit(code)
        os.close(res_w)
        kids.append((pid, res_r))
    os.close(go_r)
    time.sleep(0.2)  # let every child connect
    t = time.monotonic()
    os.write(go_w, b"x" * procs)
    results = [json.loads(read_line(r) or b"{}") for _, r in kids]
    seconds = time.monotonic() - t
    for pid, r in kids:
        os.waitpid(pid, 0)
        os.close(r)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SystemExit("cycle failed: " + "; ".join(errors))
    acq = [x for r in results for x in r["acq"]]
    rel = [x for r in results for x in r["rel"]]
    mk = [x for r in results for x in r["marks"]]
    return {"seconds": seconds, "cycles": len(acq), "acquire_ms": acq, "release_ms": rel, "marks": mk}


def mode_args(mode):
    """The drivers' optional last argument: "marks" (timestamps of every call) or "hold=S"."""
    if not mode:
        return {}
    if mode == "marks":
        return {"marks": True}
    if mode.startswith("hold="):
        return {"hold": float(mode[5:])}
    raise SystemExit("unknown cycle mode %r (marks or hold=SECONDS)" % mode)
