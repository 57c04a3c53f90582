#!/usr/bin/env python3
"""Time to failover: `kill -9` of a primary until the first successful write of a key in its
slots, over many trials, for ringcache and (optionally) Redis Cluster started the same way.

  python3 bench/failover_trials.py --trials 20                 # ringcache
  python3 bench/failover_trials.py --trials 5 --redis 1000     # also Redis, node timeout 1000 ms

Each system runs 6 nodes on 127.0.0.1 (3 primaries, 3 replicas), on ports 21100-21105 (ringcache)
and 21200-21205, 21300-... (Redis), bus ports 10000 higher, below the ephemeral range. Each trial:
1. kills a random primary with SIGKILL;
2. sends `SET <key> <n>` for a key the primary owned to every live node, every 5 ms, until
   one answers +OK;
3. restarts the node, and waits until it has synced as a replica.

A background writer keeps 200 writes/s going on other keys the whole time, so the cluster is
under (light) load. Prints one line per trial, then p50 and max.

  python3 bench/failover_trials.py --manual --trials 10        # CLUSTER FAILOVER instead

With --manual, each trial sends `CLUSTER FAILOVER` to a random replica instead of killing its
primary, then `SET <key> <n>` for a key of that shard to the replica every millisecond until
it answers +OK (it answers -MOVED while it is still a replica): the time from the command to
the first write acknowledged by the new primary. Nothing is killed; the trial ends once the old
primary has synced as a replica of the new one.
"""
import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RC = os.path.abspath(os.environ.get("RINGCACHE_BIN", os.path.join(ROOT, "target", "release", "ringcache")))


def call(port, *args, timeout=0.5):
    """One RESP command; returns the first reply line (without CRLF), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            out = f"*{len(args)}\r\n" + "".join(f"${len(str(a))}\r\n{a}\r\n" for a in args)
            s.sendall(out.encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
            if data.startswith(b"$") and not data.startswith(b"$-1"):
                n = int(data[1:data.index(b"\r\n")])
                while len(data) < data.index(b"\r\n") + 2 + n + 2:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return data.decode(errors="replace")
            return data.split(b"\r\n")[0].decode(errors="replace")
    except OSError:
        return None


class Cluster:
    def __init__(self, kind, base, node_timeout):
        self.kind, self.base, self.node_timeout = kind, base, node_timeout
        self.dir = tempfile.mkdtemp(prefix=f"failover-{kind}-")
        self.ports = [base + i for i in range(6)]
        self.procs = {}

    def start(self, port):
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        log = open(os.path.join(d, "log"), "a")
        if self.kind == "ringcache":
            cmd = [RC, "server", "--cluster-enabled", "--port", str(port), "--no-memcache", "--no-admin",
                   "--threads", "1", "--log", "warn", "--dir", d]
        else:
            cmd = ["redis-server", "--port", str(port), "--cluster-enabled", "yes", "--cluster-config-file",
                   "nodes.conf", "--cluster-node-timeout", str(self.node_timeout), "--save", "",
                   "--appendonly", "no", "--dir", d, "--loglevel", "warning"]
        self.procs[port] = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=d)
        for _ in range(200):
            if call(port, "PING") == "+PONG":
                return
            time.sleep(0.02)
        log.flush()
        tail = open(os.path.join(d, "log")).read()[-500:]
        raise SystemExit(f"{self.kind} node {port} did not start: {tail}")

    def create(self):
        for p in self.ports:
            self.start(p)
        addrs = [f"127.0.0.1:{p}" for p in self.ports]
        if self.kind == "ringcache":
            subprocess.run([RC, "cluster", "create", "--replicas", "1", *addrs], check=True, stdout=subprocess.DEVNULL)
        else:
            subprocess.run(["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL)
            while any(call(p, "CLUSTER", "INFO") is None or "cluster_state:ok" not in info(p) for p in self.ports):
                time.sleep(0.1)
        # Trials start once every replica has synced: a Redis replica that never synced
        # refuses to fail over.
        for _ in range(600):
            if sum("master_link_status:up" in info(p, "replication") for p in self.ports) == 3:
                break
            time.sleep(0.1)

    def primaries(self):
        return [p for p in self.ports if p in self.procs and "role:master" in info(p, "replication")]

    def kill(self, port):
        self.procs.pop(port).send_signal(signal.SIGKILL)

    def stop(self):
        for p in self.procs.values():
            p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def info(port, section="cluster"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            cmd = "CLUSTER INFO" if section == "cluster" else f"INFO {section}"
            s.sendall((cmd + "\r\n").encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                data += chunk
                if not chunk or (data.startswith(b"$") and data.endswith(b"\r\n") and data.count(b"\r\n") > 2):
                    break
            return data.decode(errors="replace")
    except OSError:
        return ""


def owned_key(port):
    for i in range(100000):
        k = f"fo:{i}"
        r = call(port, "GET", k)
        if r is not None and not r.startswith("-MOVED"):
            return k
    raise SystemExit("no key found")


def trial(c, n):
    victim = random.choice(c.primaries())
    key = owned_key(victim)
    c.kill(victim)
    t0 = time.monotonic()
    while True:
        for p in list(c.procs):
            if call(p, "SET", key, str(n), timeout=0.2) == "+OK":
                took = time.monotonic() - t0
                c.start(victim)
                for _ in range(1000):
                    if "master_link_status:up" in info(victim, "replication"):
                        break
                    time.sleep(0.05)
                time.sleep(1.0)
                return took
        time.sleep(0.005)
        if time.monotonic() - t0 > 60:
            return float("inf")


def replicas(c):
    return [p for p in c.ports if p in c.procs and "role:slave" in info(p, "replication")]


def trial_manual(c, n):
    replica = random.choice(replicas(c))
    old = int(info(replica, "replication").split("master_port:")[1].split()[0])
    key = owned_key(old)
    t0 = time.monotonic()
    reply = call(replica, "CLUSTER", "FAILOVER")
    if reply != "+OK":
        raise SystemExit(f"CLUSTER FAILOVER on {replica}: {reply}")
    while True:
        if call(replica, "SET", key, str(n), timeout=0.2) == "+OK":
            took = time.monotonic() - t0
            break
        if time.monotonic() - t0 > 30:
            return float("inf")
        time.sleep(0.001)
    for _ in range(1000):
        r = info(old, "replication")
        if "role:slave" in r and f"master_port:{replica}" in r and "master_link_status:up" in r:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    return took


def load(c, stop):
    """About 200 SETs/s, each sent on to its key's owner when a node answers -MOVED (issue 14:
    5 of 6 writes went to non-owners, so only about 30 a second were real writes)."""
    i = 0
    next_at = time.monotonic()
    while not stop.is_set():
        procs = list(c.procs)
        if not procs:
            time.sleep(0.01)
            continue
        port = procs[i % len(procs)]
        for _ in range(3):
            reply = call(port, "SET", f"load:{i}", i, timeout=0.2)
            if not (reply and reply.startswith("-MOVED ")):
                break
            port = int(reply.split()[2].rsplit(":", 1)[1])
            if port not in c.procs:
                break
        i += 1
        next_at += 1 / 200
        time.sleep(max(0.0, next_at - time.monotonic()))


def measure(kind, base, trials, node_timeout=None, manual=False):
    c = Cluster(kind, base, node_timeout)
    try:
        c.create()
        time.sleep(1)
        stop = threading.Event()
        t = threading.Thread(target=load, args=(c, stop), daemon=True)
        t.start()
        times = []
        for n in range(trials):
            took = trial_manual(c, n) if manual else trial(c, n)
            times.append(took)
            label = kind + ("" if node_timeout is None else f" (node timeout {node_timeout} ms)")
            label += " CLUSTER FAILOVER" if manual else ""
            print(f"{label} trial {n + 1}: {took:.3f} s", flush=True)
        stop.set()
        return times
    finally:
        c.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--redis", type=int, action="append", default=[], help="also Redis Cluster with this node timeout (ms)")
    ap.add_argument("--redis-trials", type=int, default=5)
    ap.add_argument("--manual", action="store_true",
                    help="CLUSTER FAILOVER to a replica instead of kill -9 of its primary")
    a = ap.parse_args()
    results = {}
    suffix = " CLUSTER FAILOVER" if a.manual else ""
    if a.trials > 0:
        results["ringcache" + suffix] = measure("ringcache", 21100, a.trials, manual=a.manual)
    for t in a.redis:
        results[f"redis (node timeout {t} ms){suffix}"] = measure(
            "redis", 21200 + 100 * a.redis.index(t), a.redis_trials, t, manual=a.manual)
    print()
    unit, scale = ("ms", 1000) if a.manual else ("s", 1)
    print(f"| system | trials | p50 {unit} | max {unit} |")
    print("|---|---|---|---|")
    for name, times in results.items():
        print(f"| {name} | {len(times)} | {statistics.median(times) * scale:.3f} | {max(times) * scale:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
