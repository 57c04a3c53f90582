#!/usr/bin/env python3
"""Replica lag under full write load: how long after a primary made a change its replica
applied it, with the cluster saturated by `ringcache bench --cluster`.

  cargo build --release -p ringcache && python3 bench/replica_lag.py --duration 30

1. starts `ringcache demo --detach` (6 nodes on 127.0.0.1, 3 shards of a primary and a
   replica, ports from --base-port) and waits until the 3 replicas have synced;
2. runs `ringcache bench --cluster --ratio 0:1` (SETs only, closed loop) for --duration
   seconds after a 2 s warm-up, sampling each replica's `INFO replication` every second;
3. right after the load, reads on each replica the lag of the changes of the last 10-20 s
   (`master_lag_p50_ms`, `master_lag_p99_ms`, `master_lag_max_ms`: the end of the load) and
   the whole run's histogram (`ringcache_replication_lag_seconds` from /metrics, quantiles
   interpolated within buckets as Prometheus does);
4. prints them per replica and overall, and stops the nodes.

The lag is measured with the wall clocks of the primary and the replica: one machine here.
RINGCACHE_BIN picks the binary (default target/release/ringcache).
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RC = os.path.abspath(os.environ.get("RINGCACHE_BIN", os.path.join(ROOT, "target", "release", "ringcache")))


def info(port):
    """`INFO replication` of the node on `port` as a dict ({} if it can't be reached)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            s.sendall(b"INFO replication\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                data += chunk
                if not chunk or (data.count(b"\r\n") > 2 and data.endswith(b"\r\n")):
                    break
    except OSError:
        return {}
    out = {}
    for line in data.decode(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def histogram(admin_port):
    """The replica's cumulative lag histogram: [(upper bound s, count)], count."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=2).read().decode()
    buckets = []
    for m in re.finditer(r'^ringcache_replication_lag_seconds_bucket\{le="([^"]+)"\} (\d+)', text, re.M):
        buckets.append((float(m.group(1)), int(m.group(2))))
    count = re.search(r"^ringcache_replication_lag_seconds_count (\d+)", text, re.M)
    return buckets, int(count.group(1)) if count else 0


def quantile(buckets, count, q):
    """Quantile q of a cumulative histogram, interpolated within its bucket as Prometheus's
    histogram_quantile does."""
    rank, lower, below = q * count, 0.0, 0
    for bound, n in buckets:
        if n >= rank and n > below:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (n - below)
        lower, below = bound, n
    return lower


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=30, help="seconds of measured load")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="load generator threads")
    ap.add_argument("--value-size", default="100")
    ap.add_argument("--base-port", type=int, default=7400)
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="replica-lag-")
    b = a.base_port
    out = subprocess.run(
        [RC, "demo", "--detach", "--dir", d, "--base-port", str(b), "--memcache-base-port", str(b + 100),
         "--forward-base-port", str(b + 200), "--admin-base-port", str(b + 300)],
        capture_output=True, text=True)
    m = re.search(r"kill ([\d ]+)", out.stdout)
    if out.returncode != 0 or not m:
        sys.exit(f"demo failed: {out.stdout}{out.stderr}")
    pids = m.group(1).split()
    try:
        ports = list(range(b, b + 6))
        deadline = time.time() + 30
        while True:
            replicas = [p for p in ports if info(p).get("master_link_status") == "up"]
            if len(replicas) == 3:
                break
            if time.time() > deadline:
                sys.exit("replicas did not sync")
            time.sleep(0.2)

        samples = {p: [] for p in replicas}
        done = threading.Event()

        def sample():
            while not done.wait(1.0):
                for p in replicas:
                    i = info(p)
                    if i:
                        samples[p].append((float(i["master_lag_ms"]), float(i["master_lag_p99_ms"])))

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        bench = subprocess.run(
            [RC, "bench", "--cluster", "--port", str(b), "--ratio", "0:1", "--keys", "100000",
             "--value-size", a.value_size, "--connections", str(a.connections), "--pipeline",
             str(a.pipeline), "--threads", str(a.threads), "--warmup", "2s", "--duration", f"{a.duration}s"],
            capture_output=True, text=True)
        done.set()
        t.join()
        end = {p: info(p) for p in replicas}
        hist = {p: histogram(b + 300 + (p - b)) for p in replicas}
        if bench.returncode != 0:
            sys.exit(f"bench failed: {bench.stderr}")
        print(f"# {a.duration} s of SETs ({a.value_size}-byte values, {a.connections} connections, "
              f"pipeline {a.pipeline}) through `ringcache bench --cluster`; 6 nodes, 3 shards x 2")
        for line in bench.stdout.splitlines():
            if re.search(r"ops/s|throughput|requests", line, re.I):
                print("#", line.strip())
        print()
        print("| replica | changes (run) | p50 ms (last 10-20 s) | p99 ms | max ms | "
              "p50 / p99 ms (run, from buckets) | peak p99 ms (sampled each second) |")
        print("|---|---|---|---|---|---|---|")
        worst = [0.0, 0.0, 0.0]
        for p in replicas:
            e = end[p]
            p50, p99, mx = (float(e[f"master_lag_{k}_ms"]) for k in ("p50", "p99", "max"))
            worst = [max(worst[0], p50), max(worst[1], p99), max(worst[2], mx)]
            buckets, count = hist[p]
            run = f"{quantile(buckets, count, 0.5) * 1000:.2f} / {quantile(buckets, count, 0.99) * 1000:.2f}"
            peak = max((s[1] for s in samples[p]), default=0.0)
            print(f"| :{p} | {count} | {p50:.3f} | {p99:.3f} | {mx:.3f} | {run} | {peak:.3f} |")
        print()
        print(f"all replicas, end of the load: p50 {worst[0]:.3f} ms, p99 {worst[1]:.3f} ms, "
              f"max {worst[2]:.3f} ms")
        for p in replicas:
            series = " ".join(f"{s[1]:.1f}" for s in samples[p])
            print(f"  :{p} p99 of the last 10-20 s, sampled each second (ms): {series}")
    finally:
        for pid in pids:
            try:
                os.kill(int(pid), 15)
            except OSError:
                pass
        time.sleep(1)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
