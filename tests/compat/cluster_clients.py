#!/usr/bin/env python3
"""Unmodified cluster clients against a running `ringcache demo` cluster.

Checks, each counted as passed or failed:
  - redis-cli -c: SET then GET of keys spread over every shard, following -MOVED;
  - redis-benchmark --cluster: SET and GET complete without errors;
  - redis-py's RedisCluster: SET/GET/DEL/PEXPIRE over 2,000 keys, MGET within a hash tag;
  - pymemcache: a key written through one node's memcached port is read through every other;
  - the forwarding RESP port: a plain redis-py client reads and writes any key, MGET/DEL
    across nodes are split and gathered.

  python3 tests/compat/cluster_clients.py --port 7000 --memcache-port 12000 \
      --forward-port 8000 --nodes 6

The last line is `N passed, M failed`; exit status 1 when anything failed.
"""
import argparse
import subprocess
import sys

import redis
from redis.cluster import RedisCluster
from pymemcache.client.base import Client as Memcache

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--memcache-port", type=int, required=True)
    ap.add_argument("--forward-port", type=int, required=True)
    ap.add_argument("--nodes", type=int, default=6)
    a = ap.parse_args()

    # redis-cli -c follows MOVED from the first node to every owner.
    for i in range(60):
        key = f"cli:{i}"
        out = subprocess.run(["redis-cli", "-c", "-h", a.host, "-p", str(a.port), "set", key, f"v{i}"],
                             capture_output=True, text=True, timeout=10)
        check(f"redis-cli -c set {key}", out.stdout.strip() == "OK", out.stdout + out.stderr)
        out = subprocess.run(["redis-cli", "-c", "-h", a.host, "-p", str(a.port), "get", key],
                             capture_output=True, text=True, timeout=10)
        check(f"redis-cli -c get {key}", out.stdout.strip() == f"v{i}", out.stdout + out.stderr)

    out = subprocess.run(["redis-benchmark", "--cluster", "-h", a.host, "-p", str(a.port), "-t", "set,get",
                          "-n", "20000", "-c", "20", "-q"], capture_output=True, text=True, timeout=120)
    text = out.stdout.replace("\r", "\n")
    for cmd in ("SET", "GET"):
        check(f"redis-benchmark --cluster {cmd}", f"{cmd}: " in text and "requests per second" in text
              and out.returncode == 0 and "error" not in text.lower(), text[-500:] + out.stderr[-500:])

    rc = RedisCluster(host=a.host, port=a.port, decode_responses=True)
    check("redis-py sees every primary", len(rc.get_primaries()) == a.nodes // 2, rc.get_primaries())
    bad = []
    for i in range(2000):
        k = f"py:{i}"
        rc.set(k, i)
        if rc.get(k) != str(i):
            bad.append(k)
    check("redis-py SET/GET over 2000 keys", not bad, bad[:5])
    check("redis-py PEXPIRE/PTTL", rc.pexpire("py:1", 50000) and 0 < rc.pttl("py:1") <= 50000)
    check("redis-py DEL", rc.delete("py:2") == 1 and rc.get("py:2") is None)
    rc.mset({"{tag}a": "1", "{tag}b": "2"})
    check("redis-py MGET in one hash tag", rc.mget("{tag}a", "{tag}b") == ["1", "2"])
    rc.close()
    # redis-py refuses cross-slot MGET itself; a plain connection gets the node's answer.
    try:
        redis.Redis(host=a.host, port=a.port).execute_command("MGET", "py:3", "py:4")
        check("CROSSSLOT refused", False, "MGET across slots succeeded")
    except redis.exceptions.ResponseError as e:
        # redis-py drops the error code word from the message
        check("CROSSSLOT refused", "Keys in request don't hash to the same slot" in str(e), str(e))

    nodes = [Memcache((a.host, a.memcache_port + i), connect_timeout=2, timeout=5) for i in range(a.nodes)]
    for i, writer in enumerate(nodes):
        # noreply=False: wait for STORED. A noreply write through a forwarding node is still
        # on its way to the owner when the call returns (as documented).
        check(f"pymemcache set via {i}", writer.set(f"mc:{i}", f"hello{i}".encode(), noreply=False))
        for j, reader in enumerate(nodes):
            got = reader.get(f"mc:{i}")
            check(f"pymemcache set via {i} get via {j}", got == f"hello{i}".encode(), got)
    many = nodes[1].get_many([f"mc:{i}" for i in range(a.nodes)])
    check("pymemcache get_many across owners", len(many) == a.nodes, many)

    plain = redis.Redis(host=a.host, port=a.forward_port, decode_responses=True)
    for i in range(200):
        plain.set(f"fw:{i}", i)
    check("forwarding port GET any key", all(plain.get(f"fw:{i}") == str(i) for i in range(200)))
    check("forwarding port MGET across nodes",
          plain.mget([f"fw:{i}" for i in range(20)]) == [str(i) for i in range(20)])
    check("forwarding port DEL across nodes", plain.delete(*[f"fw:{i}" for i in range(10)]) == 10)
    check("forwarding port sees the cluster's writes", plain.get("py:5") == "5")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
