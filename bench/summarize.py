#!/usr/bin/env python3
"""Summarises bench/compare.sh results: medians per (row, server) and ringcache's ratios.

    python3 bench/summarize.py target/bench/results.jsonl

Server CPU per operation is the server's user+system CPU time over the whole run (warm-up
included) divided by the operations the run would have done at its measured rate over the
same time: the same approximation for every server, so the ratio is fair.
"""
import json
import statistics
import sys
from collections import defaultdict


def main(path):
    everything = [json.loads(line) for line in open(path) if line.strip()]
    memory = [r for r in everything if r["row"] == "memory-1m-keys"]
    churn = [r for r in everything if r["row"] == "memory-churn"]
    cross = [r for r in everything if r["row"].startswith("redis-benchmark")]
    runs = [r for r in everything if "ops_per_sec" in r]
    by = defaultdict(list)
    for r in runs:
        by[(r["row"], r["server"])].append(r)
    rows = []
    for r in runs:
        if r["row"] not in rows:
            rows.append(r["row"])
    print("| row | server | runs | ops/s (median) | ratio | p50 us | p99 us | p99.9 us | CPU us/op | CPU ratio | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        servers = [s for (rw, s) in by if rw == row]
        medians = {}
        for server in servers:
            rs = by[(row, server)]
            ops = statistics.median(r["ops_per_sec"] for r in rs)
            cpu = statistics.median(
                r["server_cpu_secs"] * 1e6
                / max(1.0, r["ops_per_sec"] * (r["duration_secs"] + float(r.get("warmup_secs", 0))))
                for r in rs
            )
            lat = {k: statistics.median(r["latency_us"][k] for r in rs) for k in ("p50", "p99", "p999")}
            errors = sum(r["errors"] for r in rs)
            gets = [r["hits"] + r["misses"] for r in rs]
            hit = statistics.median(r["hits"] / g for r, g in zip(rs, gets) if g) if any(gets) else None
            medians[server] = (ops, cpu, lat, errors, len(rs), hit)
        base = medians.get("ringcache")
        for server in sorted(servers, key=lambda s: s != "ringcache"):
            ops, cpu, lat, errors, n, hit = medians[server]
            hit_text = f"{hit:.3f}" if hit is not None else ""
            ratio = cpu_ratio = ""
            if server != "ringcache" and base:
                ratio = f"{base[0] / ops:.2f}x"
                cpu_ratio = f"{base[1] / cpu:.2f}x" if cpu > 0 else ""
            print(
                f"| {row} | {server} | {n} | {ops:,.0f} | {ratio} | {lat['p50']:.0f} | {lat['p99']:.0f} "
                f"| {lat['p999']:.0f} | {cpu:.2f} | {cpu_ratio} | {hit_text} | {errors} |"
            )

    if memory:
        print()
        print("| memory | server | bytes per key (own accounting) | resident bytes per key |")
        print("|---|---|---|---|")
        for r in memory:
            print(f"| {r['row']} | {r['server']} | {r['accounted_bytes_per_key']:.0f} | {r['rss_bytes_per_key']:.0f} |")
    if cross:
        print()
        print("| redis-benchmark row | ringcache rps (median) | redis rps (median) | ratio |")
        print("|---|---|---|---|")
        for row in sorted({r["row"] for r in cross}):
            med = {s: statistics.median(r["rps"] for r in cross if r["row"] == row and r["server"] == s)
                   for s in ("ringcache", "redis") if any(r["row"] == row and r["server"] == s for r in cross)}
            if len(med) == 2:
                print(f"| {row} | {med['ringcache']:,.0f} | {med['redis']:,.0f} | {med['ringcache'] / med['redis']:.2f}x |")
    for r in churn:
        print()
        print(
            f"churn beyond maxmemory ({r['maxmemory_bytes'] >> 20} MB): resident {r['rss_bytes'] >> 20} MB, "
            f"baseline {r['baseline_rss_bytes'] >> 20} MB, (resident - baseline) / maxmemory = "
            f"{r['rss_over_budget']:.2f}, used_memory {r['used_memory'] >> 20} MB"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/results.jsonl")
