#!/usr/bin/env python3
"""Differential random-sequence test: ringcache against redis-server and memcached.

Seeded random sequences of commands (good and bad: wrong arity, malformed options,
non-numbers, huge numbers, binary and empty values, values up to 4 KB) over a small keyspace
of 40 keys (some sharing the hash tags {t1} and {t2}, so multi-key commands can stay in one
slot, the others spread over the slots) are sent to ringcache and to a reference server, and
every reply is compared, after masking what legitimately differs (CAS numbers; TTLs, which
are compared as "has a TTL or not": every TTL used is >= 100 s). After each sequence the
whole keyspace is compared (each key's value and whether it has a TTL; for memcached its
flags too), so a command that was refused but half applied shows up.

Entry points (each sequence starts with a flush of both sides):

    standalone    a standalone ringcache node's RESP port       vs redis-server
    cluster       a `ringcache demo` cluster through its cluster ports, following -MOVED
                  and -ASK as `redis-cli -c` does                vs a cluster-enabled
                  redis-server serving all 16384 slots (so -CROSSSLOT compares too)
    forward       the demo's forwarding port of one node (varies by sequence): multi-key
                  MGET/MSET/DEL/UNLINK/EXISTS/TOUCH across slots are split and gathered
                                                                 vs redis-server
    memcached     a standalone node's memcached port (text and meta protocol) vs memcached
    memcached-fwd the demo's memcached port of one node (varies by sequence), so most keys
                  are forwarded to their owner                   vs memcached

A quarter of the RESP sequences switch to RESP3 first (HELLO 3). The final state is read
with GET and PTTL of every key (and, standalone, KEYS *), or with `mg <key> v f t s`.

Two things are done on the side so that a sequence can go on after a deliberate
difference: an allowlist entry marked `resync` copies the keys of the step from the
reference to both sides; and after each memcached incr/decr/ma, a number that memcached
left space-padded (ringcache doesn't pad: docs/memcached.md) is rewritten unpadded on both
sides (counted as known difference "memcached-incr-no-space-padding"). Before a delayed
`flush_all <n>`, the reference memcached reads every key once, since memcached flushes
lazily and shows items flushed earlier again while a delayed flush is pending.

Counting: one check per sequence and entry point. A sequence passes when every step's
reply and the final state match (or differ only as an allowlisted deliberate difference).
On a failure the sequence stops there; the first failure of each entry point is printed
in full with the seed, the sequence as replayable commands, and a shrunk version (steps
removed while the same command still fails); later ones in one line each.

Deliberate differences are listed in known_differences_random.toml next to this file; see
that file for the entry format. ringcache bugs are not listed there: they fail the test.

Usage (scripts/compat.sh passes the ports of the servers it started):

    python3 tests/compat/diff_random.py --ringcache-bin target/debug/ringcache
        starts everything it is not given a port for (redis-server, a cluster-mode
        redis-server, memcached, a ringcache node, a `ringcache demo`) on free ports
    python3 tests/compat/diff_random.py --redis-port P --redis-cluster-port P \\
        --memcached-port P --rc-port P --rc-mc-port P --demo-base-port P \\
        --demo-forward-base-port P --demo-memcache-base-port P --demo-nodes 6

    --seed N            the seed (default: random; printed)
    --sequences N       sequences per entry point (default 300); --long: 2000
    --length N          steps per sequence (default 40)
    --entry LIST        comma-separated entry points (default: all)
    --sequence I        run only sequence I of each entry (replays a printed failure)
    --no-shrink         don't shrink a failing sequence
    -v                  print every step with both replies

Sequence I of entry E under seed S is generated from S, E, I (and --length) alone, so
`--seed S --entry E --sequence I` replays it (absolute expiry times are taken from the clock
again). The default run (300 sequences of 40 steps per entry point) takes about 45 s against
a debug build on 2 cores; --long about 5 minutes.

Exit status: 0 = no unexpected difference, 1 = some, 2 = could not run. The last line of
the output is `N passed, M failed`.
"""
import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import diff_vs_redis as R  # noqa: E402  (the RESP client and helpers)
import diff_vs_memcached as M  # noqa: E402  (the memcached client and helpers)

tomllib = R.tomllib
HOST = "127.0.0.1"
DEFAULT_KNOWN = os.path.join(HERE, "known_differences_random.toml")
ENTRIES = ("standalone", "cluster", "forward", "memcached", "memcached-fwd")
RESP_ENTRIES = ("standalone", "cluster", "forward")
SPLIT_CMDS = {b"MGET", b"MSET", b"DEL", b"UNLINK", b"EXISTS", b"TOUCH"}


def b(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, int):
        return str(x).encode()
    return x.encode("latin-1")


# ---------------------------------------------------------------------------
# the keyspace and random values
# ---------------------------------------------------------------------------

TAG1 = [b"{t1}" + bytes([c]) for c in b"abcdefghij"]        # one slot
TAG2 = [b"{t2}x%d" % i for i in range(6)]                   # another slot
PLAIN = [b"k%d" % i for i in range(21)]                      # spread over slots
RESP_KEYS = PLAIN + TAG1 + TAG2 + [b"", b"bin\x00key", b"\xff\xfe\r\n"]  # binary-safe keys
MC_KEYS = PLAIN + TAG1 + TAG2 + [b"key:with:colons", b"K" * 250, b"k21"]
assert len(RESP_KEYS) == 40 and len(MC_KEYS) == 40

NUMBERS = [b"0", b"1", b"-1", b"42", b"007", b"+5", b" 3", b"3 ", b"10", b"99", b"100",
           b"9223372036854775807", b"-9223372036854775808", b"9223372036854775806",
           b"18446744073709551615", b"18446744073709551614", b"1.5", b"-0.25", b"3.0",
           b"1e3", b"abc", b"0.1", b"-0", b"12345678"]


def rand_value(rng):
    r = rng.random()
    if r < 0.08:
        return b""
    if r < 0.38:
        if rng.random() < 0.2:
            return b"%d" % rng.randint(-100000, 100000)
        return rng.choice(NUMBERS)
    if r < 0.58:
        return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 8)))
    if r < 0.76:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    if r < 0.9:
        n = rng.randint(33, 512)
    else:
        n = rng.randint(1000, 4096)
    if rng.random() < 0.5:
        return bytes(rng.randrange(256) for _ in range(n))
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(n))


class TTLs:
    """TTLs (all >= 100 s) that differ from each other by at least 30 s within a sequence,
    so that GT/LT comparisons and the like never depend on how fast the servers run."""

    def __init__(self, rng, now):
        self.rng, self.now, self.used = rng, now, []

    def secs(self):
        for _ in range(100):
            s = self.rng.choice([100, 1000, 10000, 100000, 1000000]) + 40 * self.rng.randint(0, 200)
            if all(abs(s - u) >= 30 for u in self.used):
                self.used.append(s)
                return s
        return 2000000 + 40 * len(self.used)

    def abs_secs(self):
        return self.now + self.secs()


# ---------------------------------------------------------------------------
# steps and sequences
# ---------------------------------------------------------------------------

class Step:
    """One request. For RESP, args (a list of bytes); for memcached, data (bytes, or a
    function (ctx, side) -> bytes for requests carrying a side's own CAS), and a label."""

    def __init__(self, args=None, data=None, label=None, keys=(), mode="exact", kind=None):
        self.args, self.data, self.keys, self.mode, self.kind = args, data, list(keys), mode, kind
        if label is None:
            label = R.cmd_label([a.decode("latin-1") for a in args]) if args is not None \
                else M.label_of(data)
        self.label = label

    def name(self):
        if self.args is not None:
            return self.args[0].upper().decode("latin-1") if self.args else ""
        d = self.data if isinstance(self.data, bytes) else b"cas"
        return d.split(b"\r\n")[0].split(b" ")[0].decode("latin-1")


def replay_text(step):
    """A step as something to paste: redis-cli arguments, or the memcached request bytes."""
    if step.args is not None:
        out = []
        for a in step.args:
            if len(a) > 300:
                out.append("<%d bytes: %s...>" % (len(a), repr(a[:40])))
            elif a and all(32 < c < 127 and c not in b"'\"\\" for c in a):
                out.append(a.decode())
            else:
                out.append('"' + "".join(
                    chr(c) if 32 <= c < 127 and c not in b"'\"\\" else "\\x%02x" % c for c in a) + '"')
        return " ".join(out)
    return step.label


# ---------------------------------------------------------------------------
# RESP generator
# ---------------------------------------------------------------------------

class RespGen:
    def __init__(self, rng, entry, now):
        self.rng, self.entry = rng, entry
        self.ttl = TTLs(rng, now)

    def key(self):
        return self.rng.choice(RESP_KEYS)

    def same_slot_keys(self, n):
        group = self.rng.choice([TAG1, TAG2, [self.rng.choice(PLAIN)]])
        return [self.rng.choice(group) for _ in range(n)]

    def keys(self, n, cmd):
        """n keys for a multi-key command: in cluster mode mostly one hash tag (else both
        sides answer CROSSSLOT); on the forwarding port anything for the commands it splits,
        and mostly one slot for the others."""
        rng = self.rng
        if self.entry == "cluster" and rng.random() < 0.8:
            return self.same_slot_keys(n)
        if self.entry == "forward" and cmd not in SPLIT_CMDS and rng.random() < 0.85:
            return self.same_slot_keys(n)
        return [self.key() for _ in range(n)]

    def int_arg(self):
        return self.rng.choice([b"1", b"-1", b"0", b"5", b"100", b"-100", b"9223372036854775807",
                                b"-9223372036854775808", b"x", b"1.5", b"", b" 1", b"01", b"+1",
                                b"99999999999999999999", b"%d" % self.rng.randint(-1000, 1000)])

    def float_arg(self):
        r = self.rng.random()
        if r < 0.06:  # beyond a double, hex: deliberate differences
            return self.rng.choice([b"1e400", b"0x10"])
        return self.rng.choice([b"1", b"1.5", b"-0.25", b"0.1", b"10", b"-3", b"2.5e2", b"1e3", b"abc",
                                b"", b"inf", b"-inf", b"nan", b"3.0", b"-7.125", b" 1", b"1 ",
                                b"%d" % self.rng.randint(-1000, 1000)])

    def range_arg(self):
        return self.rng.choice([b"0", b"-1", b"1", b"3", b"-5", b"100", b"-100", b"abc", b"",
                                b"9223372036854775807", b"-9223372036854775808", b"2", b"-2"])

    def expiry_opt(self, kind=None):
        """A valid expiry option of SET/GETEX."""
        rng, t = self.rng, self.ttl
        kind = kind or rng.choice(["EX", "PX", "EXAT", "PXAT"])
        if kind == "EX":
            return [b"EX", b"%d" % t.secs()]
        if kind == "PX":
            return [b"PX", b"%d" % (t.secs() * 1000 + rng.randint(0, 999))]
        if kind == "EXAT":
            return [b"EXAT", b"%d" % t.abs_secs()] if rng.random() < 0.9 else [b"EXAT", b"1"]
        return [b"PXAT", b"%d" % (t.abs_secs() * 1000)] if rng.random() < 0.9 else [b"PXAT", b"1000"]

    def bad_expiry_opt(self):
        rng = self.rng
        return rng.choice([
            [b"EX"], [b"EX", b"notanumber"], [b"EX", b"0"], [b"EX", b"-5"], [b"PX", b"0"],
            [b"EX", b"1.5"], [b"EX", b"9223372036854775807"], [b"PX", b"9223372036854775807"],
            [b"EXAT", b"0"], [b"PXAT", b"-1"], [b"EX", b""], [b"EX", b"100", b"PX", b"100000"],
            [b"ex", b"%d" % self.ttl.secs()], [b"FOO"], [b"EX", b"99999999999999999999"],
            [b"EX", b"9999999999999"], [b"PX", b" 100000"],
        ])

    def set_opts(self):
        rng = self.rng
        opts = []
        if rng.random() < 0.15:
            return self.bad_expiry_opt() + ([b"NX"] if rng.random() < 0.3 else [])
        r = rng.random()
        if r < 0.35:
            opts.append(self.expiry_opt())
        elif r < 0.45:
            opts.append([b"KEEPTTL"])
        r = rng.random()
        if r < 0.2:
            opts.append([b"NX"])
        elif r < 0.4:
            opts.append([b"XX"])
        elif r < 0.43:
            opts.append([b"NX", b"XX"])
        if rng.random() < 0.25:
            opts.append([b"GET"])
        if rng.random() < 0.04:
            opts.append([b"KEEPTTL"] if rng.random() < 0.5 else self.expiry_opt())  # conflicts
        rng.shuffle(opts)
        return [a for o in opts for a in o]

    def getex_opts(self):
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return []
        if r < 0.75:
            return self.expiry_opt()
        if r < 0.85:
            return [b"PERSIST"]
        return rng.choice([[b"EX"], [b"EX", b"abc"], [b"EX", b"0"], [b"PERSIST", b"EX", b"100"],
                           [b"EX", b"100", b"PX", b"100000"], [b"FOO"], [b"PERSIST", b"PERSIST"],
                           [b"KEEPTTL"], [b"NX"], [b"PX", b"-1"]])

    def expire_args(self, cmd):
        rng, t = self.rng, self.ttl
        r = rng.random()
        if cmd == b"EXPIRE":
            n = b"%d" % t.secs() if r < 0.75 else rng.choice([b"0", b"-1", b"abc", b"", b"9223372036854775807",
                                                              b"99999999999999999999", b"1.5"])
        elif cmd == b"PEXPIRE":
            n = b"%d" % (t.secs() * 1000 + rng.randint(0, 999)) if r < 0.75 else \
                rng.choice([b"0", b"-1", b"abc", b"9223372036854775807", b"-9223372036854775808"])
        elif cmd == b"EXPIREAT":
            n = b"%d" % t.abs_secs() if r < 0.7 else rng.choice([b"1", b"0", b"-1", b"abc", b"9223372036854775807"])
        else:
            n = b"%d" % (t.abs_secs() * 1000) if r < 0.7 else rng.choice([b"1", b"0", b"abc", b"9223372036854775807"])
        flags = []
        r = rng.random()
        if r < 0.35:
            flags = [rng.choice([b"NX", b"XX", b"GT", b"LT", b"nx", b"gt"])]
        elif r < 0.42:
            flags = rng.choice([[b"NX", b"XX"], [b"GT", b"LT"], [b"NX", b"GT"], [b"FOO"], [b"XX", b"GT"],
                                [b"XX", b"XX"]])
        return [n] + flags

    def step(self):
        rng = self.rng
        k = self.key
        v = lambda: rand_value(rng)  # noqa: E731
        table = [
            (10, lambda: [b"GET", k()]),
            (14, lambda: [b"SET", k(), v()] + self.set_opts()),
            (2, lambda: [b"SETNX", k(), v()]),
            (2, lambda: [b"SETEX", k(), rng.choice([b"%d" % self.ttl.secs()] * 4 + [b"0", b"-1", b"abc"]), v()]),
            (2, lambda: [b"PSETEX", k(), rng.choice([b"%d" % (self.ttl.secs() * 1000)] * 4 + [b"0", b"x"]), v()]),
            (2, lambda: [b"GETSET", k(), v()]),
            (2, lambda: [b"GETDEL", k()]),
            (3, lambda: [b"GETEX", k()] + self.getex_opts()),
            (4, lambda: [b"MGET"] + self.keys(rng.randint(1, 6), b"MGET")),
            (4, lambda: self.mset(b"MSET")),
            (2, lambda: self.mset(b"MSETNX")),
            (3, lambda: [b"INCR", k()]),
            (2, lambda: [b"DECR", k()]),
            (3, lambda: [b"INCRBY", k(), self.int_arg()]),
            (2, lambda: [b"DECRBY", k(), self.int_arg()]),
            (3, lambda: [b"INCRBYFLOAT", k(), self.float_arg()]),
            (3, lambda: [b"APPEND", k(), v()]),
            (2, lambda: [b"STRLEN", k()]),
            (3, lambda: [rng.choice([b"GETRANGE", b"GETRANGE", b"SUBSTR"]), k(), self.range_arg(), self.range_arg()]),
            (3, lambda: [b"SETRANGE", k(), rng.choice([b"0", b"1", b"5", b"100", b"1000", b"4095", b"-1",
                                                      b"abc", b"600000000", b""]), v()]),
            (3, lambda: self.multi(b"DEL")),
            (1, lambda: self.multi(b"UNLINK")),
            (3, lambda: self.multi(b"EXISTS")),
            (1, lambda: self.multi(b"TOUCH")),
            (2, lambda: [b"TYPE", k()]),
            (2, lambda: ([b"TTL", k()], "ttl")),
            (2, lambda: ([b"PTTL", k()], "ttl")),
            (1, lambda: ([rng.choice([b"EXPIRETIME", b"PEXPIRETIME"]), k()], "ttl")),
            (4, lambda: [b"EXPIRE", k()] + self.expire_args(b"EXPIRE")),
            (2, lambda: [b"PEXPIRE", k()] + self.expire_args(b"PEXPIRE")),
            (1, lambda: [b"EXPIREAT", k()] + self.expire_args(b"EXPIREAT")),
            (1, lambda: [b"PEXPIREAT", k()] + self.expire_args(b"PEXPIREAT")),
            (2, lambda: [b"PERSIST", k()]),
            (2, lambda: [b"RENAME"] + self.keys(2, b"RENAME")),
            (2, lambda: [b"RENAMENX"] + self.keys(2, b"RENAMENX")),
            (1, lambda: rng.choice([[b"FOO", k()], [b"GET"], [b"SET", k()], [b"MGET"], [b"DEL"],
                                    [b"GETRANGE", k(), b"0"], [b"INCRBY", k()], [b"RENAME", k()],
                                    [b"EXPIRE", k()], [b"TTL", k(), k()], [b"INCR", k(), b"1"],
                                    [b"SETEX", k(), b"100"], [b"GETDEL", k(), k()], [b"STRLEN"],
                                    [b"APPEND", k()], [b"PERSIST", k(), k()], [b"EXISTS"]])),
        ]
        if self.entry == "standalone":  # keyless commands act on one node in a cluster
            # (not DBSIZE: Redis counts a key that SET ... EXAT <past> left expired until it
            # is reclaimed, which depends on timing)
            table.append((1, lambda: ([b"KEYS", rng.choice([b"*", b"k*", b"{t1}*", b"*a*", b"k?", b"[a-k]*",
                                                            b"\\{*", b"k1*", b"bin*"])], "sorted")))
        total = sum(w for w, _ in table)
        x = rng.uniform(0, total)
        for w, f in table:
            x -= w
            if x <= 0:
                break
        out = f()
        mode = "exact"
        if isinstance(out, tuple):
            out, mode = out
        args = list(out)
        r = rng.random()
        if r < 0.03 and len(args) > 1:
            args.pop()                      # wrong arity, or a missing option argument
        elif r < 0.05:
            args.append(self.key())         # an extra argument (a keyspace key)
        if rng.random() < 0.1:
            args[0] = bytes(c ^ 0x20 if rng.random() < 0.5 and 65 <= c <= 90 else c for c in args[0])
        keys = [a for a in args[1:] if a in RESP_KEYS]
        return Step(args=args, keys=keys, mode=mode)

    def mset(self, cmd):
        n = self.rng.randint(1, 4)
        ks = self.keys(n, cmd)
        args = [cmd]
        for key in ks:
            args += [key, rand_value(self.rng)]
        r = self.rng.random()
        if r < 0.15:
            args.pop()                      # an odd number of arguments: MSET a 1 b
        elif r < 0.22:
            args.append(self.rng.choice(RESP_KEYS if self.entry != "cluster" else ks))  # MSET a 1 b 2 c
        return args

    def multi(self, cmd):
        return [cmd] + self.keys(self.rng.randint(1, 5), cmd)


def resp_sequence(rng, entry, length, now):
    g = RespGen(rng, entry, now)
    steps = []
    if rng.random() < 0.25:
        steps.append(Step(args=[b"HELLO", b"3"], mode="ignore"))
    steps += [g.step() for _ in range(length)]
    return steps


# ---------------------------------------------------------------------------
# memcached generator
# ---------------------------------------------------------------------------

MB = 1024 * 1024
BOGUS_CAS = 99999999999


def st(cmd, key, flags, exptime, data, extra=b""):
    return b"%s %s %s %s %d%s\r\n%s\r\n" % (b(cmd), key, b(flags), b(exptime), len(data),
                                            (b" " + extra) if extra else b"", data)


class McGen:
    def __init__(self, rng, entry, now):
        self.rng, self.entry = rng, entry
        self.ttl = TTLs(rng, now)

    def key(self):
        return self.rng.choice(MC_KEYS)

    def exptime(self):
        r = self.rng.random()
        if r < 0.55:
            return b"0"
        if r < 0.9:
            return b"%d" % self.ttl.secs()
        if r < 0.95:
            return b"-1"                       # expired at once
        return b"%d" % self.ttl.abs_secs()     # absolute (more than 30 days)

    def flags(self):
        return self.rng.choice([b"0", b"0", b"0", b"1", b"42", b"4294967295", b"65536"])

    def noreply(self):
        return b"noreply" if self.rng.random() < 0.15 else b""

    def cas_step(self, key, flags, exptime, data, nr):
        use_tracked = self.rng.random() < 0.75

        def make(ctx, side):
            cas = ctx.cas[side].get(key) if use_tracked else None
            return st(b"cas", key, flags, exptime, data,
                      b"%d%s" % (cas if cas is not None else BOGUS_CAS, (b" " + nr) if nr else b""))
        label = M.label_of(st(b"cas", key, flags, exptime, data,
                              (b"<cas of %s>" % key if use_tracked else b"%d" % BOGUS_CAS) + ((b" " + nr) if nr else b"")))
        return Step(data=make, label=label, keys=[key], kind="cas")

    def meta_flags(self, choices, n):
        fl = self.rng.sample(choices, min(len(choices), self.rng.randint(0, n)))
        return fl

    def step(self):
        rng = self.rng
        k = self.key()
        r = rng.random()
        keys = [k]
        kind = None
        if r < 0.16:
            n = rng.randint(1, 5)
            keys = [k] + [self.key() for _ in range(n - 1)]
            data = b"%s %s\r\n" % (rng.choice([b"get", b"get", b"gets"]), b" ".join(keys))
        elif r < 0.20:
            keys = [k] + [self.key() for _ in range(rng.randint(0, 3))]
            data = b"%s %s %s\r\n" % (rng.choice([b"gat", b"gats"]), self.exptime(), b" ".join(keys))
        elif r < 0.40:
            cmd = rng.choice([b"set", b"set", b"set", b"add", b"replace", b"append", b"prepend"])
            data = st(cmd, k, self.flags(), self.exptime(), rand_value(rng), self.noreply())
        elif r < 0.44:
            return self.cas_step(k, self.flags(), self.exptime(), rand_value(rng), self.noreply())
        elif r < 0.49:
            data = b"delete %s%s\r\n" % (k, rng.choice([b"", b"", b" noreply", b" 0"]))
        elif r < 0.57:
            amount = rng.choice([b"1", b"1", b"5", b"0", b"100", b"18446744073709551615", b"abc", b"-1",
                                 b"18446744073709551616", b"%d" % rng.randint(0, 1000)])
            data = b"%s %s %s%s\r\n" % (rng.choice([b"incr", b"decr"]), k, amount,
                                         rng.choice([b"", b"", b"", b" noreply"]))
            kind = "arith"
        elif r < 0.61:
            data = b"touch %s %s%s\r\n" % (k, self.exptime(), rng.choice([b"", b"", b" noreply"]))
        elif r < 0.71:
            fl = self.meta_flags([b"v", b"f", b"t", b"s", b"k", b"c", b"q", b"O%d" % rng.randint(0, 999)], 5)
            if rng.random() < 0.12:
                fl.insert(0, b"T%d" % self.ttl.secs())   # T before t: memcached reports the new TTL
            if rng.random() < 0.06:
                fl.append(b"N%d" % self.ttl.secs())
            data = b"mg %s%s\r\n" % (k, b"".join(b" " + f for f in fl))
        elif r < 0.79:
            fl = self.meta_flags([b"T%d" % self.ttl.secs(), b"F%s" % self.flags(), b"q", b"k", b"c",
                                  b"O%d" % rng.randint(0, 999),
                                  b"M" + rng.choice([b"E", b"A", b"P", b"R", b"S", b"e", b"a"])], 3)
            if rng.random() < 0.1:
                fl.append(rng.choice([b"C%d" % BOGUS_CAS, b"MX", b"Tabc", b"Fx"]))
            val = rand_value(rng)
            data = b"ms %s %d%s\r\n%s\r\n" % (k, len(val), b"".join(b" " + f for f in fl), val)
            kind = "meta-set"
        elif r < 0.83:
            fl = self.meta_flags([b"q", b"k", b"O%d" % rng.randint(0, 999)], 2)
            if rng.random() < 0.1:
                fl.append(rng.choice([b"C%d" % BOGUS_CAS, b"I", b"I T%d" % self.ttl.secs()]))
            data = b"md %s%s\r\n" % (k, b"".join(b" " + f for f in fl))
        elif r < 0.89:
            fl = self.meta_flags([b"v", b"t", b"c", b"q", b"k", b"O%d" % rng.randint(0, 999),
                                  b"D%s" % rng.choice([b"1", b"5", b"100", b"18446744073709551615"]),
                                  b"M" + rng.choice([b"I", b"D", b"+", b"-", b"i", b"d"])], 4)
            if rng.random() < 0.2:
                fl += [b"N%d" % self.ttl.secs(), b"J%d" % rng.choice([0, 5, 100])]
            if rng.random() < 0.05:
                fl.append(rng.choice([b"Dabc", b"D-1", b"MX", b"Jabc"]))
            data = b"ma %s%s\r\n" % (k, b"".join(b" " + f for f in fl))
            kind = "arith"
        elif r < 0.94:
            data = rng.choice([
                b"get\r\n", b"gets\r\n", b"set %s 0 0\r\n" % k, b"set %s\r\n" % k, b"incr %s\r\n" % k,
                b"incr %s abc\r\n" % k, b"decr %s -1\r\n" % k, b"touch %s\r\n" % k, b"touch %s abc\r\n" % k,
                b"delete\r\n", b"delete %s 1\r\n" % k, b"bogus %s\r\n" % k, b"mg\r\n", b"ms %s\r\n" % k,
                b"ms %s abc\r\n" % k, b"ma\r\n", b"md\r\n", b"gat 100\r\n", b"gat abc %s\r\n" % k,
                b"set %s 0 0 1\r\nxyz\r\n" % k, b"set %s 0 0 3 noreply\r\nabcde\r\n" % k,
                b"set %s 0 0 -1\r\n" % k, b"set %s 0 0 abc\r\n" % k, b"incr %s 1 2\r\n" % k,
                b"get " + b"K" * 251 + b"\r\n", b"set " + b"K" * 251 + b" 0 0 1\r\nx\r\n",
                b"SET %s 0 0 1\r\nx\r\n" % k, b"GET %s\r\n" % k, b"\r\n", b"  \r\n",
            ])
        elif r < 0.96:  # a value over the 1 MiB item limit
            big = b"x" * (MB + rng.choice([1000, 4096, 100000]))
            if rng.random() < 0.6:
                data = st(rng.choice([b"set", b"set", b"add", b"replace", b"append"]), k, 0, 0, big, self.noreply())
            else:
                data = b"ms %s %d%s\r\n%s\r\n" % (k, len(big), rng.choice([b"", b" q", b" MA"]), big)
        elif r < 0.975 and self.entry == "memcached":
            data = rng.choice([b"flush_all\r\n", b"flush_all 0\r\n", b"flush_all noreply\r\n",
                               b"flush_all %d\r\n" % rng.choice([1000, 100000])])
            if re.match(rb"flush_all [1-9]", data):
                kind = "delayed-flush"
        else:
            data = b"verbosity 1\r\n" if rng.random() < 0.3 else b"get %s\r\n" % k
        if kind is None and data.split(b" ")[0] in (b"incr", b"decr", b"ma"):
            kind = "arith"  # a malformed one may still run (memcached ignores extra tokens)
        return Step(data=data, keys=keys, kind=kind)


def mc_sequence(rng, entry, length, now):
    g = McGen(rng, entry, now)
    return [g.step() for _ in range(length)]


# ---------------------------------------------------------------------------
# targets: where a step goes
# ---------------------------------------------------------------------------

class RespTarget:
    """One RESP connection (a standalone server, or a forwarding port)."""

    def __init__(self, port, name):
        self.port, self.name = port, name
        self.conn = None
        self.proto3 = False

    def connect(self):
        self.close()
        self.conn = R.Conn(self.port, timeout=10)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, args):
        if self.conn is None:
            self.connect()
            if self.proto3:
                self.conn.command(b"HELLO", b"3")
        try:
            raw, _ = self.conn.command(*args)
            if args and args[0].upper() == b"HELLO" and raw[:1] in (b"%", b"*"):
                self.proto3 = args[1:2] == [b"3"]
            return raw
        except (R.Closed, OSError) as e:
            self.close()
            return b"<CLOSED:%s>" % str(e).encode()


class ClusterTarget:
    """A Redis Cluster client: starts at one node, follows -MOVED (remembering the slot's
    node) and -ASK (with ASKING), as redis-cli -c does."""

    def __init__(self, start_port, name):
        self.start, self.name = start_port, name
        self.conns = {}
        self.slots = {}
        self.proto3 = False

    def connect(self):
        self.close()

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}
        self.slots = {}

    def _conn(self, port):
        c = self.conns.get(port)
        if c is None:
            c = R.Conn(port, timeout=10)
            if self.proto3:
                c.command(b"HELLO", b"3")
            self.conns[port] = c
        return c

    def call(self, args):
        if args and args[0].upper() == b"HELLO":
            raw = b""
            for port in list(self.conns) or [self.start]:
                raw, _ = self._conn(port).command(*args)
            self.proto3 = args[1:2] == [b"3"] and raw[:1] in (b"%", b"*")
            return raw
        key = args[1] if len(args) > 1 else None
        port = self.slots.get(slot_of(key), self.start) if key is not None else self.start
        asking = False
        for _ in range(6):
            try:
                c = self._conn(port)
                if asking:
                    c.command(b"ASKING")
                raw, _ = c.command(*args)
            except (R.Closed, OSError) as e:
                self.conns.pop(port, None)
                return b"<CLOSED:%s>" % str(e).encode()
            m = re.match(rb"-(MOVED|ASK) (\d+) [^:]+:(\d+)\r\n$", raw)
            if not m:
                return raw
            port = int(m.group(3))
            asking = m.group(1) == b"ASK"
            if not asking:
                self.slots[int(m.group(2))] = port
        return raw


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot_of(key):
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % 16384


class McConn(M.Conn):
    def request1(self, data):
        """Sends data and the sync `mn`; returns everything before its MN (the generator
        never sends an mn of its own)."""
        self.send(data + M.SYNC)
        return self.until_mn(1)


class McTarget:
    def __init__(self, port, name):
        self.port, self.name = port, name
        self.conn = None

    def connect(self):
        self.close()
        self.conn = McConn(self.port, timeout=5)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, data):
        if self.conn is None:
            self.connect()
        try:
            return self.conn.request1(data)
        except M.Closed as e:
            partial = self.conn.buf
            self.close()
            return partial + b"<%s>" % str(e).encode()
        except OSError as e:
            self.close()
            return b"<OSERROR %s>" % str(e).encode()


# ---------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------

def norm_resp(step, raw):
    if step.mode == "ttl":
        m = re.match(rb"^:(\d+)\r\n$", raw)
        if m:
            return b":<has ttl>\r\n"
    if step.mode == "sorted" and raw[:1] in (b"*", b"~"):
        c = FakeConn(raw)
        try:
            v, _ = c._parse(0)
            return b"sorted:" + repr(sorted(v)).encode()
        except Exception:
            return raw
    return raw


class FakeConn(R.Conn):
    def __init__(self, raw):
        self.buf = raw

    def _fill(self):
        raise R.Closed("short")


def norm_mc(raw):
    """Masks CAS numbers (VALUE lines, meta c tokens but c0) and meta TTLs (t<n> with
    n >= 0 becomes t<ttl>; t-1 stays)."""
    out = []
    for header, chunk in M.split_replies(raw):
        if header:
            toks = chunk.split(b" ")
            if toks[0] == b"VALUE" and len(toks) == 5 and toks[4].isdigit():
                toks[4] = b"<cas>"
            if M.META_HEAD.match(chunk):
                for i, t in enumerate(toks[1:], 1):
                    if re.fullmatch(rb"c[1-9]\d*", t):  # c0 (no item) is compared as is
                        toks[i] = b"c<cas>"
                    elif re.fullmatch(rb"t\d+", t):
                        toks[i] = b"t<ttl>"
            chunk = b" ".join(toks) + b"\r\n"
        out.append(chunk)
    return b"".join(out)


# ---------------------------------------------------------------------------
# the allowlist
# ---------------------------------------------------------------------------

ENTRY_KEYS = {"id", "reason", "documented", "entry", "commands", "command_regex", "reference",
              "ringcache", "check", "resync"}


class Known:
    """One entry of known_differences_random.toml; see the comment at its top."""

    def __init__(self, d, source):
        unknown = set(d) - ENTRY_KEYS
        if unknown:
            raise ValueError("%s: entry %r: unknown keys %s" % (source, d.get("id"), sorted(unknown)))
        for k in ("id", "reason", "entry"):
            if k not in d:
                raise ValueError("%s: entry %r lacks %r" % (source, d.get("id"), k))
        if "commands" not in d and "command_regex" not in d:
            raise ValueError("%s: entry %r needs commands or command_regex" % (source, d["id"]))
        if d.get("check") not in (None, "cross_slot", *CHECKS):
            raise ValueError("%s: entry %r: unknown check %r" % (source, d["id"], d["check"]))
        self.id, self.reason = d["id"], d["reason"]
        self.documented = d.get("documented", True)
        self.entries = [d["entry"]] if isinstance(d["entry"], str) else list(d["entry"])
        bad = set(self.entries) - set(ENTRIES)
        if bad:
            raise ValueError("%s: entry %r: unknown entry points %s" % (source, d["id"], sorted(bad)))
        self.commands = d.get("commands")
        self.command_re = re.compile(d["command_regex"], re.S) if "command_regex" in d else None
        self.ref_re = re.compile(d["reference"], re.S) if "reference" in d else None
        self.rc_re = re.compile(d["ringcache"], re.S) if "ringcache" in d else None
        self.check = d.get("check")
        self.resync = bool(d.get("resync", False))
        self.hits = 0

    def matches(self, entry, label, ref, rc, keys=()):
        if entry not in self.entries:
            return False
        if not ((self.commands is not None and label in self.commands)
                or (self.command_re is not None and self.command_re.fullmatch(label))):
            return False
        if self.ref_re is not None and not self.ref_re.search(ref.decode("latin-1")):
            return False
        if self.rc_re is not None and not self.rc_re.search(rc.decode("latin-1")):
            return False
        if self.check == "cross_slot":
            return len({slot_of(k) for k in keys}) > 1
        if self.check is not None:
            return CHECKS[self.check](ref, rc)
        return True


def ttl_masked(a, b):
    """Equal once every meta t<n> token (t-1 included) is masked."""
    mask = lambda raw: re.sub(rb"(?m)(^(?:VA \d+|HD|EN|NF|NS|EX)(?: [^ \r\n]+)*?) t-?\d+", rb"\1 t<ttl>",  # noqa: E731
                              norm_mc(raw))
    return mask(a) == mask(b)


def nul_cut(ref, rc):
    """ringcache's reply, with each argument it echoes cut at its first NUL as Redis does,
    equals Redis's."""
    return re.sub(rb"\x00[^'\r]*", b"", rc) == ref


def float_close_raw(a, b):  # noqa: E302
    """Two RESP bulk (or RESP3 double) replies holding decimals within 1e-16 relative."""
    va, vb = bulk_value(a), bulk_value(b)
    return va is not None and vb is not None and R.float_close(va, vb)


def bulk_value(raw):
    m = re.match(rb"^[$](\d+)\r\n(.*)\r\n$", raw, re.S)
    if m:
        return m.group(2)
    m = re.match(rb"^,(.*)\r\n$", raw)
    return m.group(1) if m else None


CHECKS = {"float_close": float_close_raw, "ttl_masked": ttl_masked, "nul_cut": nul_cut}


def load_known(path):
    with open(path, "rb") as f:
        data = tomllib.load(f)
    unknown = set(data) - {"difference"}
    if unknown:
        raise ValueError("%s: unknown top-level keys %s" % (path, sorted(unknown)))
    entries = [Known(d, path) for d in data.get("difference", [])]
    ids = [e.id for e in entries]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise ValueError("duplicate allowlist ids: %s" % dups)
    return entries


# ---------------------------------------------------------------------------
# running a sequence
# ---------------------------------------------------------------------------

class Failure:
    def __init__(self, index, label, ref, rc, name, where="step"):
        self.index, self.label, self.ref, self.rc, self.name, self.where = index, label, ref, rc, name, where

    def signature(self):
        return (self.where, self.name)

    def show(self, ref_name):
        head = ("step %d" % (self.index + 1)) if self.where == "step" else "final state"
        return "  %s: %s\n    %-10s %s\n    %-10s %s" % (head, self.label, ref_name + ":", R.clip(self.ref),
                                                       "ringcache:", R.clip(self.rc))


class Entry:
    """An entry point: how to reach ringcache and the reference, flush them, read state."""

    def __init__(self, name, ref, rc, flush_ref, flush_rc, ref_name, rc_for_sequence=None):
        self.name, self.ref, self.rc = name, ref, rc
        self.flush_ref, self.flush_rc = flush_ref, flush_rc
        self.ref_name = ref_name
        self.rc_for_sequence = rc_for_sequence  # index -> (target, description)
        self.resp = name in RESP_ENTRIES
        self.via = ""


class Ctx:
    def __init__(self):
        self.cas = ({}, {})   # per side: key -> the last CAS seen in a reply


class Runner:
    def __init__(self, known):
        self.known = known

    def allowed(self, entry, label, ref, rc, keys=()):
        for k in self.known:
            if k.matches(entry.name, label, ref, rc, keys):
                return k
        return None

    def run(self, entry, steps, index=None, verbose=False):
        """Runs steps on both sides after a flush; returns (None or Failure, known ids hit)."""
        if index is not None and entry.rc_for_sequence:
            entry.rc, entry.via = entry.rc_for_sequence(index)
        entry.flush_ref()
        entry.flush_rc()
        for t in (entry.ref, entry.rc):
            t.connect()
            t.proto3 = False
        ctx = Ctx()
        hits = []
        for i, step in enumerate(steps):
            if entry.resp:
                rr, cr = entry.ref.call(step.args), entry.rc.call(step.args)
                same = step.mode == "ignore" or norm_resp(step, rr) == norm_resp(step, cr)
            else:
                if step.kind == "delayed-flush":
                    self.reap(entry)
                datas = [step.data(ctx, s) if callable(step.data) else step.data for s in (0, 1)]
                rr, cr = entry.ref.call(datas[0]), entry.rc.call(datas[1])
                same = norm_mc(rr) == norm_mc(cr)
                self.track_cas(ctx, step, (rr, cr))
            if verbose:
                print("  [%s] %s %s\n      R: %s\n      C: %s" % (entry.name, "ok " if same else "BAD",
                                                             step.label, R.clip(rr), R.clip(cr)))
            if not same:
                k = self.allowed(entry, step.label, rr, cr, step.keys)
                if k is None:
                    return Failure(i, step.label, rr, cr, step.name()), hits
                hits.append(k)
                if not entry.resp:  # the CAS numbers the two replies showed may not agree
                    for key in step.keys:
                        ctx.cas[0].pop(key, None)
                        ctx.cas[1].pop(key, None)
                if k.resync:
                    self.resync(entry, ctx, step.keys)
            if not entry.resp and step.kind == "arith":
                hit = self.unpad(entry, step.keys[0])
                if hit:
                    hits.append(hit)
        f = self.compare_state(entry, hits, verbose)
        return f, hits

    # memcached: CAS numbers seen on each side, for `cas` requests
    def track_cas(self, ctx, step, replies):
        for side, raw in enumerate(replies):
            for header, chunk in M.split_replies(raw):
                if not header:
                    continue
                toks = chunk.split(b" ")
                if toks[0] == b"VALUE" and len(toks) == 5 and toks[4].isdigit():
                    ctx.cas[side][toks[1]] = int(toks[4])
                elif M.META_HEAD.match(chunk) and step.keys:
                    for t in toks[1:]:
                        if re.fullmatch(rb"c\d+", t):
                            ctx.cas[side][step.keys[0]] = int(t[1:])

    def reap(self, entry):
        """memcached flushes lazily: a flushed item stays in its hash table until something
        reads it, and while a delayed flush_all is pending, such items are visible again (its
        oldest_live is in the future). So before a delayed flush_all, the reference reads
        every key once (a classic get, which has no side effects on meta tokens), which
        unlinks the items flushed before; ringcache has no such items."""
        entry.ref.call(b"get " + b" ".join(MC_KEYS) + b"\r\n")

    def unpad(self, entry, key):
        """memcached stores an incremented number shorter than the old value in place,
        padded with spaces; ringcache stores the number alone (deliberate, documented in
        docs/memcached.md). After each incr/decr/ma, a classic get (which has no side
        effects on meta tokens) looks for a padded value on the reference; if there is one,
        the same requests go to both sides: an mg for the TTL, then an ms writing the
        unpadded number with the same flags and TTL ("has one or not"), so the sequence goes
        on comparing everything else, with both sides in the same state."""
        raw = entry.ref.call(b"get %s\r\n" % key)
        m = re.match(rb"^VALUE \S+ (\d+) \d+\r\n(\d+)( +)\r\nEND\r\n$", raw)
        if not m:
            return None
        flags, num = m.group(1), m.group(2)
        raw = entry.ref.call(b"mg %s t\r\n" % key)
        entry.rc.call(b"mg %s t\r\n" % key)
        t = re.search(rb" t(-?\d+)", raw)
        ttl = max(int(t.group(1)), 0) if t else 0
        for side in (entry.ref, entry.rc):
            side.call(b"ms %s %d F%s T%d\r\n%s\r\n" % (key, len(num), flags, ttl, num))
        return PADDING

    def resync(self, entry, ctx, keys):
        """After an allowlisted difference that leaves the two sides' data apart (on
        purpose), the keys it touched are copied from the reference to both sides."""
        for key in dict.fromkeys(keys):
            if entry.resp:
                v = entry.ref.call([b"GET", key])
                ttl = entry.ref.call([b"PTTL", key])
                for t in (entry.ref, entry.rc):
                    t.call([b"DEL", key])
                    m = re.match(rb"^[$](\d+)\r\n(.*)\r\n$", v, re.S)
                    if m:
                        args = [b"SET", key, m.group(2)]
                        tm = re.match(rb"^:(\d+)\r\n$", ttl)
                        if tm and int(tm.group(1)) > 0:
                            args += [b"PX", tm.group(1)]
                        t.call(args)
            else:  # as in unpad: only requests without side effects, or the same to both
                raw = entry.ref.call(b"get %s\r\n" % key)
                m = re.match(rb"^VALUE \S+ (\d+) \d+\r\n(.*)\r\nEND\r\n$", raw, re.S)
                tr = entry.ref.call(b"mg %s t\r\n" % key)
                entry.rc.call(b"mg %s t\r\n" % key)
                t = re.search(rb" t(-?\d+)", tr)
                ttl = max(int(t.group(1)), 0) if t else 0
                for side in (entry.ref, entry.rc):
                    if m:
                        side.call(st(b"set", key, m.group(1), b"%d" % ttl, m.group(2)))
                    else:
                        side.call(b"delete %s\r\n" % key)

    def state_steps(self, entry):
        if entry.resp:
            steps = []
            for key in RESP_KEYS:
                steps.append(Step(args=[b"GET", key]))
                steps.append(Step(args=[b"PTTL", key], mode="ttl"))
            if entry.name == "standalone":
                steps.append(Step(args=[b"KEYS", b"*"], mode="sorted"))
            return steps
        return [Step(data=b"mg %s v f t s\r\n" % key) for key in MC_KEYS]

    def compare_state(self, entry, hits, verbose):
        for t in (entry.ref, entry.rc):  # a fresh RESP2 connection: the same replies for both
            t.connect()
            t.proto3 = False
        for step in self.state_steps(entry):
            if entry.resp:
                rr, cr = entry.ref.call(step.args), entry.rc.call(step.args)
                same = norm_resp(step, rr) == norm_resp(step, cr)
            else:
                rr, cr = entry.ref.call(step.data), entry.rc.call(step.data)
                same = norm_mc(rr) == norm_mc(cr)
            label = "state: " + step.label
            if verbose and not same:
                print("  [%s] BAD %s\n      R: %s\n      C: %s" % (entry.name, label, R.clip(rr), R.clip(cr)))
            if not same:
                k = self.allowed(entry, label, rr, cr)
                if k is None:
                    return Failure(-1, label, rr, cr, "state", where="state")
                hits.append(k)
        return None


class _Padding:
    id = "memcached-incr-no-space-padding"
    reason = "incr/decr/ma store the new number without memcached's space padding (memcached.md)"
    hits = 0


PADDING = _Padding()


# ---------------------------------------------------------------------------
# shrinking a failing sequence
# ---------------------------------------------------------------------------

def shrink(runner, entry, steps, index, sig, budget_s):
    """Removes steps (chunks, then one at a time) while the sequence still fails the same
    way (the same command, or the final state). Returns (steps, failure) of the smallest
    failing sequence found (failure None if even the whole sequence no longer fails)."""
    deadline = time.time() + budget_s

    def fails(cand):
        f, _ = runner.run(entry, cand, index)
        return f if f is not None and f.signature() == sig else None

    best = fails(steps)
    if best is None:
        return steps, None
    n = 2
    while len(steps) >= 2 and time.time() < deadline:
        chunk = max(1, len(steps) // n)
        removed = False
        for i in range(0, len(steps), chunk):
            if time.time() >= deadline:
                break
            cand = steps[:i] + steps[i + chunk:]
            f = fails(cand) if cand else None
            if f is not None:
                steps, best = cand, f
                n = max(n - 1, 2)
                removed = True
                break
        if not removed:
            if chunk == 1:
                break
            n = min(len(steps), n * 2)
    if best.where == "step" and best.index + 1 < len(steps):  # what follows the failing step
        f = fails(steps[:best.index + 1])
        if f is not None:
            steps, best = steps[:best.index + 1], f
    return steps, best


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_free(p):
    s = socket.socket()
    try:
        s.bind((HOST, p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port(port, proc=None, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return True
        except OSError:
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.05)
    return False


class Servers:
    """Starts what the command line gave no port for; stops it at the end."""

    def __init__(self, a):
        self.a = a
        self.procs = []
        self.demo_pids = []
        self.dir = tempfile.mkdtemp(prefix="diff-random-")

    def spawn(self, name, argv, port):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir)
        self.procs.append(p)
        if not wait_port(port, p):
            log.close()
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                tail = f.read()[-2000:].decode("latin-1")
            raise RuntimeError("%s did not start on port %d; its log ends:\n%s" % (name, port, tail))

    def redis(self):
        p = free_port()
        self.spawn("redis", ["redis-server", "--port", str(p), "--bind", HOST, "--save", "",
                             "--appendonly", "no", "--dir", self.dir], p)
        return p

    def redis_cluster(self):
        # its cluster bus listens on port + 10000, which must exist and be free too
        rng = random.Random()
        for _ in range(100):  # below the usual ephemeral range (32768-), bus port included
            p = rng.randrange(10000, 22000)
            if port_free(p) and port_free(p + 10000):
                break
        else:
            raise RuntimeError("no free port pair for a cluster-mode redis-server")
        d = os.path.join(self.dir, "redis-cluster")
        os.makedirs(d, exist_ok=True)
        self.spawn("redis-cluster", ["redis-server", "--port", str(p), "--bind", HOST, "--save", "",
                                     "--appendonly", "no", "--dir", d, "--cluster-enabled", "yes",
                                     "--cluster-config-file", os.path.join(d, "nodes.conf")], p)
        c = R.Conn(p)
        raw, _ = c.command(b"CLUSTER", b"ADDSLOTSRANGE", b"0", b"16383")
        if not raw.startswith(b"+OK"):
            raise RuntimeError("cluster-mode redis-server: CLUSTER ADDSLOTSRANGE answered %r" % raw)
        end = time.time() + 20
        while time.time() < end:
            _, info = c.command(b"CLUSTER", b"INFO")
            if b"cluster_state:ok" in (info or b""):
                c.close()
                return p
            time.sleep(0.1)
        raise RuntimeError("cluster-mode redis-server: cluster_state is not ok")

    def memcached(self):
        p = free_port()
        argv = ["memcached", "-p", str(p), "-U", "0", "-t", "2", "-m", "1024", "-l", HOST]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        self.spawn("memcached", argv, p)
        return p

    def ringcache(self, bin_):
        p, mp = free_port(), free_port()
        while mp == p:
            mp = free_port()
        self.spawn("ringcache", [bin_, "server", "--port", str(p), "--admin-port", "0",
                                 "--memcache-port", str(mp)], p)
        wait_port(mp)
        return p, mp

    def demo(self, bin_, nodes):
        rng = random.Random()
        for _ in range(50):  # all below the usual ephemeral range (32768-), bus ports included
            base = rng.randrange(10000, 22000)
            ports = [base + o + i for o in (0, 100, 200, 300, 10000) for i in range(nodes)]
            if all(port_free(x) for x in ports):
                break
        else:
            raise RuntimeError("no free ports for a demo cluster")
        out = subprocess.run([bin_, "demo", "--detach", "--dir", os.path.join(self.dir, "demo"),
                              "--nodes", str(nodes), "--base-port", str(base),
                              "--memcache-base-port", str(base + 100), "--forward-base-port", str(base + 200),
                              "--admin-base-port", str(base + 300), "--maxmemory", "64mb"],
                             capture_output=True, text=True, timeout=120)
        m = re.search(r"Detached\. Stop the nodes with: kill -INT ([\d ]+)", out.stdout)
        if out.returncode != 0 or not m:
            raise RuntimeError("ringcache demo did not start:\n" + out.stdout + out.stderr)
        self.demo_pids = [int(x) for x in m.group(1).split()]
        return base

    def stop(self):
        import signal
        for pid in self.demo_pids:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        end = time.time() + 5
        for pid in self.demo_pids:
            while time.time() < end:
                try:
                    os.kill(pid, 0)
                    time.sleep(0.05)
                except OSError:
                    break
        shutil.rmtree(self.dir, ignore_errors=True)


def flush_resp(ports):
    def f():
        for p in ports:
            c = R.Conn(p, timeout=10)
            c.command(b"FLUSHALL")
            c.close()
    return f


def flush_mc(ports):
    def f():
        for p in ports:
            c = McConn(p, timeout=5)
            c.request1(b"flush_all\r\n")
            c.close()
    return f


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--sequences", type=int, default=None)
    ap.add_argument("--long", action="store_true", help="2000 sequences per entry point")
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--entry", default=",".join(ENTRIES))
    ap.add_argument("--sequence", type=int, default=None, help="run only this sequence index")
    ap.add_argument("--no-shrink", action="store_true")
    ap.add_argument("--shrink-seconds", type=float, default=6)
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--ringcache-bin", default=None)
    ap.add_argument("--redis-port", type=int)
    ap.add_argument("--redis-cluster-port", type=int)
    ap.add_argument("--memcached-port", type=int)
    ap.add_argument("--rc-port", type=int, help="a standalone ringcache node's RESP port")
    ap.add_argument("--rc-mc-port", type=int, help="a standalone ringcache node's memcached port")
    ap.add_argument("--demo-base-port", type=int, help="RESP (cluster) port of the demo's first node")
    ap.add_argument("--demo-forward-base-port", type=int)
    ap.add_argument("--demo-memcache-base-port", type=int)
    ap.add_argument("--demo-nodes", type=int, default=6)
    ap.add_argument("--extra-known", action="append", default=[], metavar="FILE")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 10**9)
    nseq = a.sequences if a.sequences is not None else (2000 if a.long else 300)
    entries = [e.strip() for e in a.entry.split(",") if e.strip()]
    bad = [e for e in entries if e not in ENTRIES]
    if bad:
        print("error: unknown entry points %s (known: %s)" % (bad, ", ".join(ENTRIES)))
        return 2
    if tomllib is None:
        print("error: reading the allowlist needs Python 3.11 (tomllib) or the tomli package")
        return 2
    try:
        known = []
        for path in [DEFAULT_KNOWN] + a.extra_known:
            known += load_known(path)
    except (OSError, ValueError, tomllib.TOMLDecodeError, re.error) as e:
        print("error: bad allowlist: %s" % e)
        return 2

    servers = Servers(a)
    try:
        return run_all(a, servers, seed, nseq, entries, known)
    except RuntimeError as e:
        print("error: %s" % e)
        print("0 passed, 1 failed")
        return 2
    finally:
        servers.stop()


def run_all(a, servers, seed, nseq, entries, known):
    bin_ = a.ringcache_bin
    need_demo = any(e in entries for e in ("cluster", "forward", "memcached-fwd"))
    if a.redis_port is None and any(e in entries for e in ("standalone", "forward")):
        a.redis_port = servers.redis()
    if a.redis_cluster_port is None and "cluster" in entries:
        a.redis_cluster_port = servers.redis_cluster()
    if a.memcached_port is None and any(e in entries for e in ("memcached", "memcached-fwd")):
        a.memcached_port = servers.memcached()
    if ("standalone" in entries and a.rc_port is None) or ("memcached" in entries and a.rc_mc_port is None):
        if bin_ is None:
            print("error: no ringcache node given (--rc-port/--rc-mc-port) and no --ringcache-bin")
            return 2
        p, mp = servers.ringcache(bin_)
        a.rc_port = a.rc_port or p
        a.rc_mc_port = a.rc_mc_port or mp
    if need_demo and a.demo_base_port is None:
        if bin_ is None:
            print("error: no demo cluster given (--demo-base-port ...) and no --ringcache-bin")
            return 2
        base = servers.demo(bin_, a.demo_nodes)
        a.demo_base_port, a.demo_memcache_base_port, a.demo_forward_base_port = base, base + 100, base + 200
    n = a.demo_nodes
    demo_ports = [a.demo_base_port + i for i in range(n)] if a.demo_base_port else []

    print("seed %d: %d sequences of %d steps per entry point (replay: --seed %d)"
          % (seed, nseq, a.length, seed), flush=True)

    def builders():
        if "standalone" in entries:
            yield Entry("standalone", RespTarget(a.redis_port, "redis"), RespTarget(a.rc_port, "ringcache"),
                        flush_resp([a.redis_port]), flush_resp([a.rc_port]), "redis")
        if "cluster" in entries:
            def via(i):
                p = demo_ports[i % n]
                return ClusterTarget(p, "ringcache"), "starting at node port %d" % p
            e = Entry("cluster", RespTarget(a.redis_cluster_port, "redis-cluster"), None,
                      flush_resp([a.redis_cluster_port]), flush_resp(demo_ports), "redis(cluster)", via)
            yield e
        if "forward" in entries:
            def via(i):
                p = a.demo_forward_base_port + i % n
                return RespTarget(p, "ringcache"), "through forwarding port %d" % p
            yield Entry("forward", RespTarget(a.redis_port, "redis"), None, flush_resp([a.redis_port]),
                        flush_resp(demo_ports), "redis", via)
        if "memcached" in entries:
            yield Entry("memcached", McTarget(a.memcached_port, "memcached"), McTarget(a.rc_mc_port, "ringcache"),
                        flush_mc([a.memcached_port]), flush_mc([a.rc_mc_port]), "memcached")
        if "memcached-fwd" in entries:
            def via(i):
                p = a.demo_memcache_base_port + i % n
                return McTarget(p, "ringcache"), "through memcached port %d" % p
            yield Entry("memcached-fwd", McTarget(a.memcached_port, "memcached"), None,
                        flush_mc([a.memcached_port]), flush_resp(demo_ports), "memcached", via)

    runner = Runner(known)
    passed = failed = 0
    status = 0
    started = time.time()
    summary = []
    for entry in builders():
        t0 = time.time()
        e_pass = e_fail = 0
        first = True
        hit_ids = {}
        indices = [a.sequence] if a.sequence is not None else range(nseq)
        for i in indices:
            rng = random.Random("%d:%s:%d" % (seed, entry.name, i))
            now = int(time.time())
            steps = (resp_sequence if entry.resp else mc_sequence)(rng, entry.name, a.length, now)
            try:
                f, hits = runner.run(entry, steps, i, a.v)
            except (OSError, R.Closed, M.Closed) as ex:
                # a flush or a connection failed: a server is gone; the entry can't go on
                traceback.print_exc()
                print("FAIL [%s] sequence %d: a server could not be reached (%s); skipping the rest of %s"
                      % (entry.name, i, ex, entry.name), flush=True)
                e_fail += 1
                break
            for h in hits:
                h.hits += 1
                hit_ids[h.id] = hit_ids.get(h.id, 0) + 1
            if f is None:
                e_pass += 1
                continue
            e_fail += 1
            replay = "python3 tests/compat/diff_random.py --ringcache-bin %s --seed %d --entry %s --sequence %d%s" % (
                bin_ or "target/debug/ringcache", seed, entry.name, i,
                (" --length %d" % a.length) if a.length != 40 else "")
            if first:
                first = False
                print("\nFAIL [%s] seed %d, sequence %d (%s):" % (entry.name, seed, i, entry.via or "direct"))
                print(f.show(entry.ref_name))
                upto = steps if f.where == "state" else steps[:f.index + 1]
                print("  the sequence (after a flush of both sides), up to the failing step:")
                for j, s in enumerate(upto):
                    print("    %3d  %s" % (j + 1, replay_text(s)))
                if not a.no_shrink and f.name != "conn":
                    small, sf = shrink(runner, entry, list(upto), i, f.signature(), a.shrink_seconds)
                    if sf is not None:
                        print("  shrunk to %d steps (still failing):" % len(small))
                        for j, s in enumerate(small):
                            print("    %3d  %s" % (j + 1, replay_text(s)))
                        print(sf.show(entry.ref_name))
                print("  replay: %s" % replay, flush=True)
            else:
                print("FAIL [%s] sequence %d: %s\n    %s: %s   ringcache: %s" % (
                    entry.name, i, ("step %d " % (f.index + 1) if f.where == "step" else "final state ") + f.label,
                    entry.ref_name, R.clip(f.ref, 150), R.clip(f.rc, 150)), flush=True)
        for t in (entry.ref, entry.rc):
            if t is not None:
                t.close()
        line = "[%s] %d sequences: %d passed, %d failed (%.1fs)%s" % (
            entry.name, e_pass + e_fail, e_pass, e_fail, time.time() - t0,
            ("; known differences: " + ", ".join("%s (%d)" % kv for kv in sorted(hit_ids.items())))
            if hit_ids else "")
        print(line, flush=True)
        summary.append(line)
        passed += e_pass
        failed += e_fail
        if e_fail:
            status = 1
    print("\ndiff_random: seed %d, %.0fs" % (seed, time.time() - started))
    for line in summary:
        print("  " + line)
    bugs = [k.id for k in known if k.hits and k.reason.startswith("BUG")]
    if bugs:
        print("note: allowlisted known bugs hit: " + ", ".join(bugs))
    print("%d passed, %d failed" % (passed, failed))
    return status


if __name__ == "__main__":
    sys.exit(main())
