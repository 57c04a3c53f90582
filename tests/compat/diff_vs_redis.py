#!/usr/bin/env python3
"""Differential compatibility test: ringcache against a real redis-server.

Every test group sends the same commands to a Redis server and to a ringcache node and
compares the complete raw RESP replies (a small RESP2/RESP3 parser decides where a reply
ends). Each group starts on a fresh connection pair after FLUSHALL on both servers.
Replies are compared according to a per-command mode:

    exact   raw bytes must be equal (the default)
    shape   same top-level RESP type (and for arrays/maps, both empty or both non-empty)
    ttl     integers equal within +-1 (TTL, EXPIRETIME timing slack)
    pttl    integers equal within +-1500
    sorted  arrays compared as multisets of elements (KEYS, CONFIG GET with several names)
    scan    SCAN reply: same type; cursors and batches are not compared (full iterations
            are compared separately, as key sets)
    hello   HELLO reply with the id and version values masked
    iserr   both replies are errors (text ignored)
    nonerr  both replies are non-errors (content ignored)
    ignore  not compared (setup or timing-dependent steps)

Malformed-protocol and inline-command tests each use their own connection and compare
everything the server writes until it closes the connection or stays quiet.

Deliberate differences are listed in known_differences.toml next to this file. A mismatch
that matches one of its entries is counted as passed ("known"); any other mismatch is a
failure and is printed with both replies. See that file for the entry format.

After the differential run, a short redis-py check (ringcache only) exercises the client
library over RESP2 and RESP3: SET/GET/MGET/INCR/EXPIRE/TTL, a 100-command pipeline,
scan_iter and HELLO 3. It runs when the `redis` package is importable (required with
--require-redis-py).

Usage (scripts/compat.sh starts both servers on free ports and runs this):

    redis-server --port 17380 --save '' --appendonly no --daemonize yes
    target/debug/ringcache server --port 17379 --admin-port 0 --memcache-port 0 &
    python3 tests/compat/diff_vs_redis.py --redis-port 17380 --rc-port 17379

    -v                  print every check with both replies, and each known difference hit
    -k SUBSTR           only run test groups whose name contains SUBSTR
    --extra-known FILE  another allowlist, in addition to known_differences.toml (repeatable)
    --require-redis-py  fail when the redis package is missing instead of skipping that part
    --no-redis-py       skip the redis-py part

The servers are flushed and reconfigured (CONFIG SET maxmemory, maxmemory-policy, timeout,
maxclients; restored at the end of each group): never point this at a server whose data
matters. Requires redis-server 7.0 or newer. A full run takes about a minute.

Exit status: 0 when every mismatch is a known difference, 1 when any is not, 2 when the
test could not run (server unreachable, Redis too old, bad allowlist). The last line of
the output is `N passed, M failed`.
"""
import argparse
import decimal
import os
import re
import shlex
import socket
import sys
import time
import traceback

try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

HOST = "127.0.0.1"
REDIS_PORT = 17380
RC_PORT = 17379
VERBOSE = False
DEFAULT_KNOWN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_differences.toml")


# ---------------------------------------------------------------------------
# RESP client
# ---------------------------------------------------------------------------

class Err(bytes):
    """An error reply's text."""


class Closed(Exception):
    pass


class Conn:
    """A raw RESP connection: send bytes, read one complete reply as (raw bytes, value)."""

    def __init__(self, port, timeout=3.0):
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise Closed("timeout")
        except ConnectionResetError:
            raise Closed("reset")
        if not d:
            raise Closed("eof")
        self.buf += d

    def _line(self, pos):
        while True:
            i = self.buf.find(b"\r\n", pos)
            if i >= 0:
                return self.buf[pos:i], i + 2
            self._fill()

    def _need(self, n):
        while len(self.buf) < n:
            self._fill()

    def _parse(self, pos):
        """Parse the reply starting at pos; returns (value, position after it)."""
        self._need(pos + 1)
        t = self.buf[pos:pos + 1]
        line, p = self._line(pos + 1)
        if t == b"+":
            return bytes(line), p
        if t == b"-":
            return Err(line), p
        if t in (b":", b"("):
            return int(line), p
        if t in (b"$", b"=", b"!"):
            n = int(line)
            if n < 0:
                return None, p
            self._need(p + n + 2)
            v = self.buf[p:p + n]
            return (Err(v) if t == b"!" else bytes(v)), p + n + 2
        if t in (b"*", b"~", b">"):
            n = int(line)
            if n < 0:
                return None, p
            out = []
            for _ in range(n):
                v, p = self._parse(p)
                out.append(v)
            return out, p
        if t in (b"%", b"|"):
            out = Pairs()
            for _ in range(int(line)):
                k, p = self._parse(p)
                v, p = self._parse(p)
                out.append((k, v))
            if t == b"|":  # an attribute precedes the real reply
                return self._parse(p)
            return out, p
        if t == b"_":
            return None, p
        if t == b",":
            return line, p
        if t == b"#":
            return line == b"t", p
        raise ValueError("bad type byte %r in %r" % (t, self.buf[pos:pos + 40]))

    def reply(self):
        v, p = self._parse(0)
        raw = self.buf[:p]
        self.buf = self.buf[p:]
        return raw, v

    def command(self, *args):
        self.send(enc(args))
        return self.reply()

    def drain(self, quiet=1.0, maxtime=3.0):
        """Read everything until EOF or `quiet` seconds of silence; returns (bytes, closed)."""
        self.sock.settimeout(quiet)
        out, self.buf = self.buf, b""
        closed = False
        end = time.time() + maxtime
        while time.time() < end:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not d:
                closed = True
                break
            out += d
        return out, closed


class Pairs(list):
    """A RESP3 map, kept as a list of (key, value) pairs."""


def enc(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def parse_cmd(c):
    return list(c) if isinstance(c, (list, tuple)) else shlex.split(c)


def cmd_label(cmd):
    """How a command is named in the output and in known_differences.toml."""
    if isinstance(cmd, str):
        return cmd
    parts = []
    for a in cmd:
        a = a if isinstance(a, str) else str(a)
        parts.append(shlex.quote(a) if a.isprintable() else repr(a))
    label = " ".join(parts)
    if len(label) > 200:
        label = label[:200] + "...(%d chars)" % len(label)
    return label


def raw_label(kind, data):
    """Label of a raw-bytes test: the bytes as a Python literal without the b'' around it."""
    shown = data if len(data) < 80 else data[:40]
    text = repr(shown)[2:-1]
    if len(data) >= 80:
        text += "...(%d bytes)" % len(data)
    return "%s: %s" % (kind, text)


# ---------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------

def mask_hello(raw):
    raw = re.sub(rb"(\$7\r\nversion\r\n)\$\d+\r\n[^\r]*\r\n", rb"\1<VER>", raw)
    raw = re.sub(rb"(\$2\r\nid\r\n):\d+\r\n", rb"\1<ID>", raw)
    return raw


def is_err(raw):
    return raw[:1] in (b"-", b"!")


def as_int(raw):
    if raw[:1] in (b":", b"("):
        try:
            return int(raw[1:].strip())
        except ValueError:
            return None
    return None


def compare(mode, rr, cr, rv, cv):
    if mode == "ignore":
        return True
    if mode == "exact":
        return rr == cr
    if mode == "shape":
        if rr[:1] != cr[:1]:
            return False
        if isinstance(rv, list) and isinstance(cv, list):
            return (len(rv) == 0) == (len(cv) == 0)
        return True
    if mode in ("ttl", "pttl"):
        if rr == cr:
            return True
        a, b = as_int(rr), as_int(cr)
        if a is None or b is None:
            return False
        if a < 0 or b < 0:
            return a == b
        return abs(a - b) <= (1 if mode == "ttl" else 1500)
    if mode == "sorted":
        if rr[:1] != cr[:1]:
            return False
        if not (isinstance(rv, list) and isinstance(cv, list)):
            return rr == cr
        return sorted(map(repr, rv)) == sorted(map(repr, cv))
    if mode == "hello":
        return mask_hello(rr) == mask_hello(cr)
    if mode == "iserr":
        return is_err(rr) and is_err(cr)
    if mode == "nonerr":
        return not is_err(rr) and not is_err(cr)
    if mode == "scan":
        if rr[:1] != cr[:1]:
            return False
        return rr == cr if is_err(rr) else True
    raise ValueError(mode)


# ---------------------------------------------------------------------------
# known differences (the allowlist)
# ---------------------------------------------------------------------------

ENTRY_KEYS = {"id", "reason", "documented", "group", "commands", "command_regex", "after",
              "after_regex", "redis", "ringcache", "check"}
CHECKS = {"float_close"}


class Known:
    """One entry of known_differences.toml; see the comment at the top of that file."""

    def __init__(self, d, source):
        unknown = set(d) - ENTRY_KEYS
        if unknown:
            raise ValueError("%s: entry %r: unknown keys %s" % (source, d.get("id"), sorted(unknown)))
        for k in ("id", "reason", "group"):
            if k not in d:
                raise ValueError("%s: entry %r lacks %r" % (source, d.get("id"), k))
        if "commands" not in d and "command_regex" not in d:
            raise ValueError("%s: entry %r needs commands or command_regex" % (source, d["id"]))
        if d.get("check") not in (None, *CHECKS):
            raise ValueError("%s: entry %r: unknown check %r" % (source, d["id"], d["check"]))
        self.id = d["id"]
        self.reason = d["reason"]
        self.documented = d.get("documented", True)
        self.groups = [d["group"]] if isinstance(d["group"], str) else list(d["group"])
        self.commands = d.get("commands")
        self.command_re = re.compile(d["command_regex"], re.S) if "command_regex" in d else None
        self.after = d.get("after")
        self.after_re = re.compile(d["after_regex"], re.S) if "after_regex" in d else None
        self.redis_re = re.compile(d["redis"], re.S) if "redis" in d else None
        self.rc_re = re.compile(d["ringcache"], re.S) if "ringcache" in d else None
        self.check = d.get("check")
        self.hits = 0

    def matches(self, m):
        if m.group not in self.groups:
            return False
        if not ((self.commands is not None and m.label in self.commands)
                or (self.command_re is not None and self.command_re.fullmatch(m.label))):
            return False
        if self.after is not None and m.after != self.after:
            return False
        if self.after_re is not None and not self.after_re.fullmatch(m.after or ""):
            return False
        if self.redis_re is not None and not self.redis_re.search(m.redis.decode("latin-1")):
            return False
        if self.rc_re is not None and not self.rc_re.search(m.rc.decode("latin-1")):
            return False
        if self.check == "float_close" and not float_close(m.rv, m.cv):
            return False
        return True


def float_close(a, b):
    """Both are decimal numbers within one part in 10^16 of each other: the size of the
    artefacts of Redis's 80-bit long double (or of the f64 nearest a huge input), and
    smaller than any error of a plain 64-bit double sum such as 0.1 + 0.2."""
    try:
        x, y = decimal.Decimal(a.decode()), decimal.Decimal(b.decode())
    except (AttributeError, UnicodeDecodeError, decimal.InvalidOperation):
        return False
    if not (x.is_finite() and y.is_finite()):
        return False
    if x == y:
        return True
    return abs(x - y) <= abs(x) * decimal.Decimal("1e-16")


def load_known(paths):
    entries = []
    for path in paths:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        unknown = set(data) - {"difference"}
        if unknown:
            raise ValueError("%s: unknown top-level keys %s" % (path, sorted(unknown)))
        for d in data.get("difference", []):
            entries.append(Known(d, path))
    ids = [e.id for e in entries]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise ValueError("duplicate allowlist ids: %s" % dups)
    return entries


# ---------------------------------------------------------------------------
# bookkeeping
# ---------------------------------------------------------------------------

class Mismatch:
    def __init__(self, group, label, after, redis, rc, rv=None, cv=None, mode="exact", note="",
                 sides=("redis", "ringcache")):
        self.group, self.label, self.after = group, label, after
        self.redis, self.rc, self.rv, self.cv = redis, rc, rv, cv
        self.mode, self.note, self.sides = mode, note, sides

    def show(self, head):
        extra = []
        if self.mode != "exact":
            extra.append("mode=" + self.mode)
        if self.after:
            extra.append("after: " + self.after)
        out = "%s [%s] %s%s" % (head, self.group, self.label,
                                ("   (" + "; ".join(extra) + ")") if extra else "")
        if self.note:
            out += "\n    note:      " + self.note
        out += "\n    %-10s %s\n    %-10s %s" % (self.sides[0] + ":", clip(self.redis),
                                                self.sides[1] + ":", clip(self.rc))
        return out


def clip(b, limit=700):
    s = repr(b)
    return s if len(s) <= limit else s[:limit] + "...(%d bytes)" % len(b)


class Results:
    def __init__(self, known):
        self.known = known
        self.matched = 0
        self.allowed = 0
        self.failures = []
        # Steps sent with mode "ignore" (setup, timing): compared with nothing, so counted
        # apart, never as passed (issue 14).
        self.ignored = 0

    def ok(self):
        self.matched += 1

    def mismatch(self, m):
        for entry in self.known:
            if entry.matches(m):
                entry.hits += 1
                self.allowed += 1
                if VERBOSE:
                    print(m.show("KNOWN(%s)" % entry.id))
                return
        self.failures.append(m)
        print(m.show("FAIL"), flush=True)

    @property
    def total(self):
        return self.matched + self.allowed + len(self.failures)


RESULTS = None  # set in main()


class Pair:
    """A connection to each server; run() sends one command to both and compares."""

    def __init__(self, group):
        self.group = group
        self.after = None  # label of the previous command, for the allowlist's `after`
        self.connect()

    def connect(self):
        self.r = Conn(REDIS_PORT)
        self.c = Conn(RC_PORT)

    def close(self):
        self.r.close()
        self.c.close()

    def run(self, cmd, mode="exact", raw=None):
        """Send cmd to both servers; returns (redis raw, ringcache raw, redis value, rc value)."""
        data = raw if raw is not None else enc(parse_cmd(cmd))
        label = raw_label("raw", raw) if raw is not None else cmd_label(cmd)
        res = []
        for conn in (self.r, self.c):
            try:
                conn.send(data)
                res.append(conn.reply())
            except (Closed, OSError) as e:
                res.append((b"<CLOSED:%s>" % str(e).encode(), None))
        (rr, rv), (cr, cv) = res
        ok = compare(mode, rr, cr, rv, cv)
        if VERBOSE:
            print("  [%s] %s %s\n      R: %s\n      C: %s" %
                  (self.group, "ok " if ok else "BAD", label, clip(rr), clip(cr)))
        if mode == "ignore":
            RESULTS.ignored += 1
        elif ok:
            RESULTS.ok()
        else:
            RESULTS.mismatch(Mismatch(self.group, label, self.after, rr, cr, rv, cv, mode))
        self.after = label
        return rr, cr, rv, cv

    def check(self, label, ok, redis, rc, note=""):
        """A derived comparison (a field of a reply, a full SCAN iteration, ...)."""
        if ok:
            RESULTS.ok()
        else:
            RESULTS.mismatch(Mismatch(self.group, label, self.after, redis, rc, note=note))

    def raw_exchange(self, kind, data, quiet, maxtime, same=None):
        """Send data on fresh connections and compare everything written back, and whether
        the server closed the connection."""
        res = []
        for port in (REDIS_PORT, RC_PORT):
            try:
                c = Conn(port)
                c.send(data)
                res.append(c.drain(quiet=quiet, maxtime=maxtime))
                c.close()
            except OSError as e:
                res.append((b"<oserror %s>" % str(e).encode(), True))
        label = raw_label(kind, data)
        ok = same(res[0], res[1]) if same else res[0] == res[1]
        if VERBOSE:
            print("  [%s] %s\n      R: %r\n      C: %r" % (self.group, label, res[0], res[1]))
        self.check(label, ok, repr(res[0]).encode(), repr(res[1]).encode(), "(reply bytes, closed?)")


def flushall():
    for port in (REDIS_PORT, RC_PORT):
        c = Conn(port)
        c.command("FLUSHALL")
        c.close()


GROUPS = []


def group(fn):
    """Register a test group; its name is the function name without the g_ prefix."""
    fn.group_name = fn.__name__[2:] if fn.__name__.startswith("g_") else fn.__name__
    GROUPS.append(fn)
    return fn


def seq(p, cmds):
    """Run a list of commands; each is a str, an argument list, or (either, mode)."""
    for item in cmds:
        mode = "exact"
        if isinstance(item, tuple):
            item, mode = item
        p.run(item, mode)


# ---------------------------------------------------------------------------
# test groups
# ---------------------------------------------------------------------------
@group
def g_ping_echo(p):
    seq(p, [
        "PING", "ping", "PiNg", "PING hello", ["PING", ""], "PING a b",
        "ECHO", "ECHO hi", ["ECHO", ""], "ECHO a b",
        ["ECHO", "\x00\xff binary\r\n"],
    ])


@group
def g_hello(p):
    seq(p, [
        ("HELLO", "hello"), ("HELLO 2", "hello"), "HELLO 4", "HELLO 1", "HELLO 0",
        "HELLO abc", "HELLO -1", "HELLO 2.0", "HELLO 02", ("HELLO 2 AUTH", "hello"), ("HELLO 2 AUTH default", "hello"),
        ("HELLO 2 AUTH default wrongpass", "hello"), ("HELLO 2 AUTH nosuchuser pw", "hello"),
        ("HELLO 2 auth default x setname viaauth", "hello"), "CLIENT GETNAME",
        "HELLO 2 SETNAME", ("HELLO 2 SETNAME myname", "hello"),
        "CLIENT GETNAME", "HELLO 2 SETNAME 'bad name'", "CLIENT GETNAME", "HELLO 2 FOO", "HELLO 2 FOO bar",
        "HELLO 3 SETNAME", ("HELLO 2 SETNAME n1 SETNAME n2", "hello"), "CLIENT GETNAME",
        ("HELLO 2 SETNAME ''", "hello"), "CLIENT GETNAME", "HELLO 4 SETNAME x", "CLIENT GETNAME",
        "HELLO 1 FOO", "HELLO abc FOO", ("hello 2 setname lower", "hello"), "CLIENT GETNAME",
    ])
    # the HELLO map's field names, and the values that don't vary per connection
    rr, cr, rv, cv = p.run("HELLO 2", "shape")
    if isinstance(rv, list) and isinstance(cv, list):
        hello_fields(p, "HELLO 2", list(zip(rv[0::2], rv[1::2])), list(zip(cv[0::2], cv[1::2])))


def hello_fields(p, name, rpairs, cpairs):
    rk, ck = [k for k, _ in rpairs], [k for k, _ in cpairs]
    p.check(name + " (field names)", rk == ck, repr(rk).encode(), repr(ck).encode())
    rd, cd = dict(rpairs), dict(cpairs)
    for k in (b"server", b"proto", b"mode", b"role", b"modules"):
        p.check("%s field %s" % (name, k.decode()), rd.get(k) == cd.get(k),
                repr(rd.get(k)).encode(), repr(cd.get(k)).encode())


@group
def g_resp3(p):
    rr, cr, rv, cv = p.run("HELLO 3", "shape")
    if isinstance(rv, list) and isinstance(cv, list):
        hello_fields(p, "HELLO 3", rv, cv)
    seq(p, [
        "PING", "PING x", "GET nokey", "SET k v", "GET k", "SET k v2 GET",
        "SET nk v NX GET", "SET k x NX", "SET k x XX", "MGET k nokey k",
        "EXISTS k nokey", "INCR cnt", "INCRBYFLOAT f 1.5", "INCRBYFLOAT f 1e3",
        "INCRBYFLOAT f2 3.0", "TTL k", "PTTL nokey", "EXPIRETIME k",
        "TYPE k", "TYPE nokey", ("KEYS *", "sorted"), ("SCAN 0", "scan"), ("RANDOMKEY", "nonerr"),
        "DEL k", ("RANDOMKEY", "nonerr"), "GETDEL cnt", "GETDEL cnt", "GETEX nokey",
        ("CONFIG GET maxmemory", "shape"), ("CONFIG GET maxmemory*", "shape"), "CONFIG GET nosuch",
        "CONFIG GET timeout", "SET e v EX 100", ("TTL e", "ttl"), "GETEX e PERSIST", "PERSIST e",
        "MSETNX a 1 b 2", "SETNX a 1", "APPEND a x", "STRLEN a", "GETRANGE a 0 -1", "SETRANGE a 0 z",
        "RENAME a a2", "RENAMENX a2 b", "EXPIRE a2 0", "SCAN 0 MATCH nomatch", "SCAN abc",
        "INCRBYFLOAT f2 abc", "MGET", "HELLO 3 SETNAME 'a b'", "CLIENT SETNAME 'a b'",
        "COMMAND INFO nosuchcmd", "CONFIG SET timeout 0",
        "CLIENT SETNAME r3", "CLIENT GETNAME", "CLIENT SETNAME ''", "CLIENT GETNAME",
        ("CLIENT INFO", "shape"), ("CLIENT LIST", "shape"), ("INFO", "shape"),
        ("TIME", "shape"), "DBSIZE", "ECHO e3", "FOO", "GET", "SELECT 0",
        ("LPUSH k2 a", "ignore"), "SET s str", "LPUSH s a", "HGET s f", "SMEMBERS s",
        ("COMMAND COUNT", "shape"),
        ("COMMAND INFO get", "shape"), ("COMMAND DOCS get", "shape"),
        ("HELLO 2", "shape"), "GET nokey", "SET x 1", "INCRBYFLOAT x 0.5",
        ("HELLO 3", "shape"), "INCRBYFLOAT x 0.5",
    ])


@group
def g_select(p):
    seq(p, [
        "SELECT", "SELECT 0", "SELECT 1", "SET a 1", "SELECT 0", "GET a",
        "SELECT 15", "SELECT 16", "SELECT -1", "SELECT abc", "SELECT 0 1",
        "SELECT 1.5", "SELECT ''", "SELECT 99999999999999999999",
        "SELECT 0", "DBSIZE",
    ])


@group
def g_command(p):
    seq(p, [
        ("COMMAND COUNT", "shape"), "COMMAND COUNT x", ("COMMAND INFO get", "shape"),
        ("COMMAND INFO nosuchcmd", "exact"), ("COMMAND INFO get nosuchcmd set", "shape"),
        ("COMMAND INFO", "shape"), ("COMMAND DOCS get", "shape"), ("COMMAND DOCS nosuchcmd", "exact"),
        ("COMMAND", "shape"), "COMMAND FOO", ("COMMAND HELP", "shape"),
        ("COMMAND GETKEYS get a", "exact"), ("COMMAND GETKEYS mset a 1 b 2", "exact"),
        ("COMMAND GETKEYS ping", "exact"), ("COMMAND LIST", "shape"),
    ])
    # COMMAND INFO get: compare the non-doc fields (name, arity, flags, first, last, step)
    rr, cr, rv, cv = p.run("COMMAND INFO get set mget mset del ping echo incr getex", "shape")
    if isinstance(rv, list) and isinstance(cv, list):
        for a, b in zip(rv, cv):
            if a is None or b is None:
                p.check("COMMAND INFO entry", a == b, repr(a).encode(), repr(b).encode())
                continue
            p.check("COMMAND INFO %s (name,arity,flags,first,last,step)" % a[0].decode(),
                    a[:6] == b[:6], repr(a[:6]).encode(), repr(b[:6]).encode())


@group
def g_client(p):
    seq(p, [
        ("CLIENT ID", "shape"), "CLIENT ID x", "CLIENT GETNAME", "CLIENT SETNAME foo",
        "CLIENT GETNAME", "CLIENT SETNAME", "CLIENT SETNAME a b", "CLIENT SETNAME 'has space'",
        "CLIENT SETNAME 'nl\nx'", ["CLIENT", "SETNAME", "é"], "CLIENT GETNAME",
        ["CLIENT", "SETNAME", ""], "CLIENT GETNAME", "CLIENT GETNAME x",
        ("CLIENT LIST", "shape"), ("CLIENT LIST TYPE normal", "shape"),
        ("CLIENT LIST TYPE bogus", "exact"), ("CLIENT LIST ID 1 2", "shape"),
        ("CLIENT LIST x", "exact"), "CLIENT LIST TYPE pubsub", "CLIENT LIST TYPE replica",
        "CLIENT LIST TYPE master", "CLIENT LIST TYPE slave", ("CLIENT LIST TYPE NORMAL", "shape"),
        "CLIENT LIST TYPE", "CLIENT LIST ID", "CLIENT LIST ID abc", "CLIENT LIST ID 0", "CLIENT LIST ID -1",
        "CLIENT LIST ID 999999999", "CLIENT LIST TYPE normal ID 999999999",
        ("CLIENT INFO", "shape"), "CLIENT INFO x", "CLIENT",
        "CLIENT FOO", ("CLIENT HELP", "shape"),
        "CLIENT SETINFO", "CLIENT SETINFO lib-name", "CLIENT SETINFO lib-name redis-py",
        "CLIENT SETINFO LIB-NAME redis-py", "CLIENT SETINFO lib-ver 1.2.3",
        "CLIENT SETINFO lib-name 'a b'", "CLIENT SETINFO lib-ver 'a b'",
        "CLIENT SETINFO badattr x", "CLIENT SETINFO lib-name x y",
        "client getname", "client id x",
    ])
    # CLIENT INFO field names, and the values of a few fields present in both
    rr, cr, rv, cv = p.run("CLIENT INFO", "shape")
    if isinstance(rv, bytes) and isinstance(cv, bytes):
        rf = dict(kv.split(b"=", 1) for kv in rv.split() if b"=" in kv)
        cf = dict(kv.split(b"=", 1) for kv in cv.split() if b"=" in kv)
        for k in rf:
            p.check("CLIENT INFO field %s" % k.decode(), k in cf, rv, cv, "field missing in ringcache")
        for k in cf:
            p.check("CLIENT INFO field %s" % k.decode(), k in rf, rv, cv, "field only in ringcache")
        for k in (b"name", b"db", b"cmd", b"resp", b"lib-name", b"lib-ver", b"flags"):
            if k in rf and k in cf:
                p.check("CLIENT INFO value of " + k.decode(), rf[k] == cf[k], rf[k], cf[k])


@group
def g_info(p):
    seq(p, [
        ("INFO", "shape"), ("INFO server", "shape"), ("INFO keyspace", "shape"),
        ("INFO nosuchsection", "exact"), ("INFO server clients", "shape"), ("INFO all", "shape"),
        ("INFO everything", "shape"), ("INFO default", "shape"),
    ])
    flushall()
    p.run("SET a 1")
    p.run("SET b 2 EX 100")
    rr, cr, rv, cv = p.run("INFO keyspace", "shape")
    p.check("INFO keyspace (content after SET a; SET b EX 100)", rv == cv, rr, cr)
    for section in ("INFO server", "INFO"):
        rr, cr, rv, cv = p.run(section, "shape")
        if isinstance(rv, bytes) and isinstance(cv, bytes):
            rh = [l.decode() for l in rv.split(b"\r\n") if l.startswith(b"#")]
            ch = [l.decode() for l in cv.split(b"\r\n") if l.startswith(b"#")]
            for h in rh:
                p.check("%s section '%s'" % (section, h), h in ch, rr, cr, "section missing in ringcache")
            for h in ch:
                p.check("%s section '%s'" % (section, h), h in rh, rr, cr, "section only in ringcache")
            p.check("%s section order" % section, [h for h in rh if h in ch] == [h for h in ch if h in rh],
                    repr(rh).encode(), repr(ch).encode())


@group
def g_config(p):
    orig = {}
    for prm in ("maxmemory", "maxmemory-policy", "timeout", "maxclients"):
        rr, cr, rv, cv = p.run("CONFIG GET " + prm, "shape")
        orig[prm] = (rv, cv)
    seq(p, [
        "CONFIG", "CONFIG GET", "CONFIG FOO", "CONFIG GET nosuch",
        ("CONFIG GET maxmemory maxclients", "sorted"),
        "CONFIG GET MAXMEMORY-POLICY", ("CONFIG GET maxmemory*", "sorted"),
        "CONFIG SET", "CONFIG SET maxmemory", "CONFIG SET nosuch 1",
        "CONFIG SET maxmemory 100mb", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 1gb", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 1GB", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 123456", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 10k", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 10kb", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory -1", "CONFIG SET maxmemory abc", "CONFIG SET maxmemory 1.5gb",
        "CONFIG SET maxmemory ''", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 0", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory-policy allkeys-lru", "CONFIG GET maxmemory-policy",
        "CONFIG SET maxmemory-policy ALLKEYS-LFU", "CONFIG GET maxmemory-policy",
        "CONFIG SET maxmemory-policy noeviction", "CONFIG GET maxmemory-policy",
        "CONFIG SET maxmemory-policy volatile-ttl", "CONFIG GET maxmemory-policy",
        "CONFIG SET maxmemory-policy bogus", "CONFIG GET maxmemory-policy",
        "CONFIG SET timeout 30", "CONFIG GET timeout", "CONFIG SET timeout -1",
        "CONFIG SET timeout abc", "CONFIG SET timeout 0", "CONFIG GET timeout",
        "CONFIG SET maxclients 500", "CONFIG GET maxclients", "CONFIG SET maxclients 0",
        "CONFIG SET maxclients abc", "CONFIG SET maxclients -5",
        "CONFIG SET timeout 10 maxclients 600", ("CONFIG GET timeout maxclients", "sorted"),
        "CONFIG SET timeout 10 timeout 20", "CONFIG SET timeout 10", "CONFIG SET timeout 5 nosuch 1",
        "CONFIG GET timeout", "CONFIG SET timeout 5 maxclients abc", "CONFIG GET timeout",
        "CONFIG SET timeout",
        ("CONFIG RESETSTAT", "exact"), "CONFIG RESETSTAT x",
        ("CONFIG HELP", "shape"),
        "config get TIMEOUT",
    ])
    # restore
    p.run("CONFIG SET timeout 0")
    p.run("CONFIG SET maxclients 10000", "ignore")
    p.r.send(enc(["CONFIG", "SET", "maxmemory", "0"]))
    p.r.reply()
    p.r.send(enc(["CONFIG", "SET", "maxmemory-policy", "noeviction"]))
    p.r.reply()
    cv = orig["maxmemory"][1]
    if isinstance(cv, list) and len(cv) == 2:
        p.c.send(enc(["CONFIG", "SET", "maxmemory", cv[1]]))
        p.c.reply()
    cv = orig["maxmemory-policy"][1]
    if isinstance(cv, list) and len(cv) == 2:
        p.c.send(enc(["CONFIG", "SET", "maxmemory-policy", cv[1]]))
        p.c.reply()


@group
def g_dbsize_flush(p):
    seq(p, [
        "DBSIZE", "DBSIZE x", "MSET a 1 b 2 c 3", "DBSIZE", "FLUSHDB", "DBSIZE",
        "MSET a 1 b 2", "FLUSHALL", "DBSIZE", "FLUSHALL ASYNC", "FLUSHALL SYNC",
        "FLUSHALL async", "FLUSHALL BAD", "FLUSHALL SYNC ASYNC", "FLUSHDB ASYNC",
        "FLUSHDB SYNC", "FLUSHDB BAD", "FLUSHDB a b",
        "SET a 1 PX 500", "DBSIZE",
    ])
    time.sleep(0.7)
    seq(p, ["GET a", "DBSIZE"])


@group
def g_time(p):
    rr, cr, rv, cv = p.run("TIME", "shape")
    if isinstance(rv, list) and isinstance(cv, list):
        ok = len(rv) == len(cv) and abs(int(rv[0]) - int(cv[0])) <= 2 and 0 <= int(cv[1]) < 1000000
        p.check("TIME values", ok, repr(rv).encode(), repr(cv).encode())
    p.run("TIME x")


@group
def g_get_set(p):
    seq(p, [
        "GET", "GET a b", "GET nokey", "SET", "SET a", "SET a 1", "GET a",
        ["SET", "", ""], ["GET", ""], ["SET", "bin\x00key", "v\x00\xff"], ["GET", "bin\x00key"],
        "SET a 2 NX", "GET a", "SET b 2 XX", "GET b", "SET a 3 XX", "GET a",
        "SET a 4 nx xx", "SET a 4 NX XX", "SET a 4 EX 10 PX 100", "SET a 4 EX 10 EX 20",
        "SET a 4 EX", "SET a 4 EX abc", "SET a 4 EX 0", "SET a 4 EX -1", "SET a 4 EX 1.5",
        "SET a 4 PX 0", "SET a 4 PX -5", "SET a 4 EXAT 0", "SET a 4 PXAT 0",
        "SET a 4 EXAT -1", "SET a 4 EX 9223372036854775807", "SET a 4 PX 9223372036854775807",
        "SET a 4 EX 9223372036854775808", "SET a 4 EX 99999999999999999999",
        "SET a 4 EX 92233720368547758", "SET a 4 EX 9223372036854775",
        "SET a 4 PXAT 9223372036854775807", "SET a 4 EXAT 9223372036854775807",
        "SET a 4 EXAT 9223372036854775", "SET a 4 EXAT 92233720368547758",
        "SET a 4 KEEPTTL EX 10", "SET a 4 EX 10 KEEPTTL", "SET a 4 KEEPTTL PX 10",
        "SET a 4 FOO", "SET a 4 GET GET", "SET a 4 NX NX", "SET a 4 KEEPTTL KEEPTTL",
        "SET a 4 EX 10 EXAT 100000000000", "SET a 4 PXAT 1 EXAT 1",
        "SET a 5 EX 100", ("TTL a", "ttl"), "SET a 6 KEEPTTL", ("TTL a", "ttl"), "GET a",
        "SET a 7", "TTL a", "SET a 8 PX 100000", ("PTTL a", "pttl"),
        "SET a 9 EXAT 4102444800", ("TTL a", "ttl"), "EXPIRETIME a",
        "SET a 9 PXAT 4102444800123", "PEXPIRETIME a", "EXPIRETIME a",
        "SET a 10 GET", "SET newk 1 GET", "GET newk", "SET a 11 NX GET", "GET a",
        "SET nx2 12 NX GET", "GET nx2", "SET a 13 XX GET", "SET xx2 1 XX GET", "GET xx2",
        "SET a v ex 100 get", ("TTL a", "ttl"),
        "SET a 1 EXAT 1", "GET a", "EXISTS a",
        "SET a 1 PXAT 1", "GET a", "SET a 1", "SET a 2 NX GET", "SET a 2 PX 1 XX", ("GET a", "ignore"),
        "SET a 4 ex 10 px 10", "set a 5 Ex 10", ("ttl a", "ttl"),
        ["SET", "big", "x" * 100000], "STRLEN big",
        "SET a 4 EX +5", ("TTL a", "ttl"), "SET a 4 EX 05", ("TTL a", "ttl"), "SET a 4 EX ' 5'",
        "SET a 4 EX 5abc", "SET a 4 PX 1e3",
    ])
    time.sleep(0.01)


@group
def g_setnx_setex(p):
    seq(p, [
        "SETNX", "SETNX a", "SETNX a 1", "SETNX a 2", "GET a", "SETNX a 1 2",
        "SETEX", "SETEX a 10", "SETEX a 10 v", ("TTL a", "ttl"), "GET a",
        "SETEX a 0 v", "SETEX a -1 v", "SETEX a abc v", "SETEX a 1.5 v", "GET a",
        "SETEX a 9223372036854775807 v", "SETEX a 9223372036854775 v", "SETEX a 92233720368547758 v",
        "SETEX a 10 v extra",
        "PSETEX", "PSETEX a 100", "PSETEX a 100000 v", ("PTTL a", "pttl"),
        "PSETEX a 0 v", "PSETEX a -1 v", "PSETEX a abc v", "PSETEX a 9223372036854775807 v",
        "PSETEX a 100 v x",
    ])


@group
def g_getset_getdel(p):
    seq(p, [
        "GETSET", "GETSET a", "GETSET a 1", "GETSET a 2", "GET a", "GETSET a 1 2",
        "SET t v EX 100", "GETSET t w", "TTL t",
        "GETDEL", "GETDEL a b", "GETDEL a", "GETDEL a", "EXISTS a",
    ])


@group
def g_getex(p):
    seq(p, [
        "GETEX", "GETEX nokey", "GETEX nokey EX 10", "SET a v", "GETEX a", "TTL a",
        "GETEX a EX 100", ("TTL a", "ttl"), "GETEX a PERSIST", "TTL a",
        "GETEX a PX 100000", ("PTTL a", "pttl"), "GETEX a EXAT 4102444800", "EXPIRETIME a",
        "GETEX a PXAT 4102444800123", "PEXPIRETIME a",
        "GETEX a EX 0", "GETEX a EX -1", "GETEX a PX 0", "GETEX a EXAT 0", "GETEX a PXAT -1",
        "GETEX a EX abc", "GETEX a EX", "GETEX a FOO", "GETEX a EX 10 PX 100",
        "GETEX a EX 10 PERSIST", "GETEX a PERSIST PERSIST", "GETEX a EX 10 EX 10",
        "GETEX a PERSIST EX 10", "GETEX a KEEPTTL", "GETEX a NX", "GETEX a GET",
        "GETEX a EX 9223372036854775807", "GETEX a EX 9223372036854775",
        "GETEX a PX 9223372036854775807", "GETEX a EXAT 9223372036854775807",
        "GETEX a ex 50", ("ttl a", "ttl"),
        "GETEX a EXAT 1", "GET a", "EXISTS a",
        "SET b v", "GETEX b PXAT 1", "EXISTS b",
        "GETEX nokey PERSIST", "GETEX nokey EX abc", "GETEX nokey FOO", "GETEX nokey EX 0",
        "GETEX nokey EX -1", "GETEX nokey PX 9223372036854775807", "GETEX nokey EX 9223372036854775808",
        "GETEX nokey EX 10 PX 10", "GETEX nokey EXAT 0",
        "SET n 1", "GETEX n EX abc", "GETEX n EX 9223372036854775808", "GETEX n EX 0", "TTL n",
    ])


@group
def g_mget_mset(p):
    seq(p, [
        "MGET", "MGET a", "MSET", "MSET a", "MSET a 1 b", "MSET a 1 b 2", "MGET a b c",
        "MSET a 1 a 2", "GET a", "MSETNX", "MSETNX a", "MSETNX x 1 y", "MSETNX x 1 y 2",
        "MGET x y", "MSETNX x 3 z 4", "MGET x y z", "MSETNX z 1 z 2", "GET z",
        "SET t v EX 100", "MSET t w", "TTL t",
    ])


@group
def g_del_exists(p):
    seq(p, [
        "DEL", "UNLINK", "EXISTS", "TOUCH",
        "MSET a 1 b 2 c 3", "DEL a", "DEL a", "DEL b c d", "MSET a 1 b 2",
        "UNLINK a b a", "EXISTS a", "MSET a 1 b 2", "EXISTS a a b nokey",
        "TOUCH a b nokey a", "DEL a a",
        "SET e 1 PX 1",
    ])
    time.sleep(0.05)
    seq(p, ["EXISTS e", "TOUCH e", "DEL e"])


@group
def g_type(p):
    seq(p, [
        "TYPE", "TYPE a b", "TYPE nokey", "SET s v", "TYPE s", "SET i 1", "TYPE i",
        ["TYPE", ""], "type s",
    ])


@group
def g_expire(p):
    seq(p, [
        "EXPIRE", "EXPIRE a", "EXPIRE nokey 10", "SET a v", "EXPIRE a 100", ("TTL a", "ttl"),
        "EXPIRE a abc", "EXPIRE a 1.5", "EXPIRE a 10 FOO", "EXPIRE a 10 NX XX",
        "EXPIRE a 10 GT LT", "EXPIRE a 10 NX GT", "EXPIRE a 10 NX LT", "EXPIRE a 10 XX GT",
        "EXPIRE a 10 xx lt", ("TTL a", "ttl"), "EXPIRE a 10 NX NX", "EXPIRE a 20 GT GT",
        "SET b v", "EXPIRE b 10 XX", "TTL b", "EXPIRE b 10 GT", "TTL b", "EXPIRE b 10 LT",
        ("TTL b", "ttl"), "PERSIST b", "EXPIRE b 10 NX", ("TTL b", "ttl"), "EXPIRE b 20 NX",
        "EXPIRE b 20 XX", ("TTL b", "ttl"), "EXPIRE b 5 GT", "EXPIRE b 50 GT", ("TTL b", "ttl"),
        "EXPIRE b 100 LT", "EXPIRE b 5 LT", ("TTL b", "ttl"),
        "EXPIRE b 9223372036854775807", "EXPIRE b 9223372036854775", "EXPIRE b 92233720368547758",
        "EXPIRE b -9223372036854775808", "EXPIRE b 9223372036854775808",
        "PEXPIRE b 9223372036854775807", "PEXPIRE b 9223372036854775", "PEXPIRE b -9223372036854775808",
        "EXPIREAT b 9223372036854775807", "EXPIREAT b 9223372036854775",
        "PEXPIREAT b 9223372036854775807", "EXISTS b",
        "SET c v", "EXPIRE c 0", "EXISTS c", "SET c v", "EXPIRE c -5", "EXISTS c",
        "SET c v", "PEXPIRE c 0", "EXISTS c", "SET c v", "PEXPIRE c -1", "EXISTS c",
        "SET c v", "EXPIREAT c 1", "EXISTS c", "SET c v", "PEXPIREAT c 1", "EXISTS c",
        "SET c v", "EXPIREAT c 0", "EXISTS c", "SET c v", "EXPIREAT c -100", "EXISTS c",
        "SET d v", "PEXPIRE d 100000", ("PTTL d", "pttl"), ("TTL d", "ttl"),
        "EXPIREAT d 4102444800", "EXPIRETIME d", ("TTL d", "ttl"),
        "PEXPIREAT d 4102444800999", "PEXPIRETIME d", "EXPIRETIME d",
        "EXPIREAT d 4102444900 GT", "EXPIRETIME d", "EXPIREAT d 4102444000 GT",
        "EXPIREAT d 4102444000 LT", "EXPIRETIME d", "PEXPIREAT d 4102444000000 NX",
        "PEXPIREAT d 1 XX", "EXISTS d",
        "SET e v", "EXPIRE e 0 GT", "EXISTS e", "TTL e", "EXPIRE e 0 LT", "EXISTS e",
        "SET e v", "EXPIRE e -1 NX", "EXISTS e",
        "SET f v", "EXPIRE f 100", "EXPIRE f -1 GT", "EXISTS f", "EXPIRE f -1 LT", "EXISTS f",
        "SET g v", "EXPIRE g 100", "EXPIRE g 0 XX", "EXISTS g",
        "PEXPIRE", "PEXPIRE a", "PEXPIREAT a", "EXPIREAT a", "EXPIRE a 1 2 3",
        "PEXPIRE nokey 100", "EXPIREAT nokey 100", "PEXPIREAT nokey 100",
        "EXPIRE nokey 10 NX", "EXPIRE nokey abc", "EXPIRE nokey 10 FOO",
        "SET h v", "EXPIRE h ''", "EXPIRE h ' 10'", "EXPIRE h +10", ("TTL h", "ttl"),
        "EXPIRE h 010", ("TTL h", "ttl"), "EXPIRE h 10abc", "EXPIRE h 0x10",
    ])


@group
def g_ttl(p):
    seq(p, [
        "TTL", "TTL a b", "PTTL", "EXPIRETIME", "PEXPIRETIME", "PERSIST", "PERSIST a b",
        "TTL nokey", "PTTL nokey", "EXPIRETIME nokey", "PEXPIRETIME nokey",
        "SET a v", "TTL a", "PTTL a", "EXPIRETIME a", "PEXPIRETIME a", "PERSIST a",
        "PERSIST nokey", "SET b v PX 500", ("TTL b", "ttl"), ("PTTL b", "pttl"),
        "PERSIST b", "TTL b", "SET c v PX 1", ("PTTL c", "ignore"),  # ms-boundary timing, see px1_probe
    ])
    time.sleep(0.05)
    seq(p, ["TTL c", "PTTL c", "PERSIST c", "EXISTS c"])


@group
def g_ttl_rounding(p):
    # Redis rounds TTL/EXPIRETIME to the nearest second ((ms+500)/1000), it does not truncate
    seq(p, [
        "SET r1 v PX 1700", "TTL r1", "SET r2 v PX 1300", "TTL r2", "SET r3 v PX 700", "TTL r3",
        "SET r4 v PX 300", "TTL r4", "PEXPIRE r1 2800", "TTL r1",
        "SET a v PXAT 4102444800700", "EXPIRETIME a", "SET a v PXAT 4102444800300", "EXPIRETIME a",
        "SET a v PXAT 4102444800500", "EXPIRETIME a", "SET a v PXAT 4102444800499", "EXPIRETIME a",
        "PEXPIREAT a 4102444800999", "EXPIRETIME a", "PEXPIRETIME a",
        "GETEX a PXAT 4102444800600", "EXPIRETIME a",
    ])


@group
def g_config_extra(p):
    seq(p, [
        "CONFIG SET maxmemory 100MB", "CONFIG GET maxmemory", "CONFIG SET maxmemory 1G", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 1g", "CONFIG GET maxmemory", "CONFIG SET maxmemory 1m", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 2b", "CONFIG SET maxmemory ' 100'", "CONFIG SET maxmemory 18446744073709551615",
        "CONFIG SET maxmemory 18446744073709551616", "CONFIG SET maxmemory 1tb",
        "CONFIG SET maxmemory-policy ALLKEYS-LRU", "CONFIG GET maxmemory-policy",
        "CONFIG SET maxmemory-policy NoEviction", "CONFIG GET maxmemory-policy",
        "CONFIG SET maxmemory-policy ''", "CONFIG SET timeout 2147483647", "CONFIG SET timeout 2147483648",
        "CONFIG SET timeout 1.5", "CONFIG SET timeout +5", "CONFIG SET timeout ''", "CONFIG SET timeout 0",
        "CONFIG SET maxclients 4294967296", "CONFIG SET maxclients 1.5", "CONFIG SET MAXCLIENTS 10000",
        "CONFIG GET maxclients", "CONFIG SET maxmemory 1mb maxmemory-policy bogus", "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 0 maxmemory 0", "CONFIG SET timeout 1 TIMEOUT 1",
        ("CONFIG GET timeout TIMEOUT", "sorted"), ("CONFIG GET timeout timeout", "sorted"),
        ("CONFIG GET time*", "sorted"), ("CONFIG GET maxclient?", "sorted"), ("CONFIG GET maxclients maxclient?", "sorted"),
        "CONFIG GET ''", "CONFIG SET '' 1",
    ])
    p.run("CONFIG SET maxmemory-policy noeviction", "ignore")
    p.run("CONFIG SET maxmemory 0", "ignore")
    p.run("CONFIG SET timeout 0", "ignore")
    p.run("CONFIG SET maxclients 10000", "ignore")
    p.c.send(enc(["CONFIG", "SET", "maxmemory", "1gb"])); p.c.reply()
    p.c.send(enc(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])); p.c.reply()


@group
def g_nonstring_keys(p):
    # only meaningful if ringcache implements the list type
    rr, cr, rv, cv = p.run("LPUSH l x", "ignore")
    if is_err(cr):
        print("NOTE: ringcache does not implement LPUSH (%r); skipping non-string key tests" % cr)
        return
    seq(p, ["GET l", "SET l v GET", "GETSET l v", "GETDEL l", "GETEX l", "INCR l", "INCRBYFLOAT l 1",
            "APPEND l x", "STRLEN l", "GETRANGE l 0 -1", "SETRANGE l 0 x", "MGET l", "SETNX l v",
            "TYPE l", "SET l v XX GET", "TYPE l"])


@group
def g_incr(p):
    seq(p, [
        "INCR", "INCR a b", "DECR", "INCRBY", "INCRBY a", "DECRBY a", "INCRBY a 1 2",
        "INCR a", "INCR a", "DECR a", "DECR nk", "INCRBY a 10", "INCRBY a -100",
        "DECRBY a 5", "DECRBY a -5", "GET a", "INCRBY a abc", "INCRBY a 1.5", "INCRBY a ''",
        "INCRBY a 9223372036854775808", "INCRBY a -9223372036854775809",
        "SET m 9223372036854775807", "INCR m", "INCRBY m 0", "GET m", "SET m -9223372036854775808",
        "DECR m", "DECRBY m 1", "GET m", "SET m 0", "DECRBY m -9223372036854775808",
        "DECRBY m 9223372036854775807", "INCRBY m -9223372036854775808", "GET m",
        "SET s abc", "INCR s", "SET s 1.0", "INCR s", "SET s ' 1'", "INCR s", "SET s '1 '", "INCR s",
        "SET s +1", "INCR s", "SET s 01", "INCR s", "GET s", "SET s -0", "INCR s", "GET s",
        "SET s ''", "INCR s", "SET s 9223372036854775808", "INCR s",
        "SET s 0x10", "INCR s", "SET s 1e3", "INCR s", "SET s 12345678901234567890", "INCR s",
        "SET t 5 EX 100", "INCR t", ("TTL t", "ttl"), "INCRBY t 5", ("TTL t", "ttl"),
        ["SET", "s", "1\x00"], "INCR s", "INCRBY a +5", "INCRBY a 05", "INCRBY a -0",
        "incr a", "decrby a 3", "GET a",
    ])


@group
def g_incrbyfloat(p):
    # DEL f only resets: its reply depends on whether the previous step stored a value
    RESET_F = ("DEL f", "ignore")
    cmds = ["INCRBYFLOAT", "INCRBYFLOAT a", "INCRBYFLOAT a 1 2"]
    incs = ["1e3", ".5", "-0", "3.0", "0", "1", "-1", "1.5", "-1.5", "0.1", "0.2", "1E3", "1e+3",
            "1e-3", "-.5", "5.", "+5", "1e308", "1e309", "-1e309", "1e-320", "1e-400",
            "inf", "-inf", "+inf", "Infinity", "nan", "NaN", "abc", "''", "1.5abc", " 1",
            "1 ", "0x10", "1_000", "3.14159265358979323846", "10.50", "1.0e1", "00001",
            "-0.0", "1e-310", "123456789012345678901234567890", "17.99999999999999999",
            "5.0e3", "1.23456789012345678e-7", "7e-17", "2.5e17", "4.9e-324"]
    for inc in incs:
        cmds += [RESET_F, "INCRBYFLOAT f %s" % inc, "GET f"]
    # starting-value formats
    starts = ["10.5", "1e3", ".5", "-0", "3.0", "  3", "abc", "1e309", "inf", "5.", "0x10",
              "1.7976931348623157e308", "100", "-100.00", "''", "1 ", "+2", "0.1"]
    for s in starts:
        cmds += ["SET f %s" % s, "INCRBYFLOAT f 1", "GET f", "SET f %s" % s, "INCRBYFLOAT f 0.1"]
    cmds += [
        "SET f 1.7976931348623157e308", "INCRBYFLOAT f 1.7976931348623157e308", "GET f",
        "SET f 1", "INCRBYFLOAT f -1", "GET f", "INCRBYFLOAT f -0", "GET f",
        "SET f 0.1", "INCRBYFLOAT f 0.2", "GET f",
        "SET f 3", "INCRBYFLOAT f 1e-20", "GET f",
        "SET f 1e15", "INCRBYFLOAT f 0.3", "GET f",
        "SET f 1e17", "INCRBYFLOAT f 1", "GET f",
        "SET f 1e-5", "INCRBYFLOAT f 0", "GET f",
        RESET_F, "INCRBYFLOAT f 1e21", "GET f", "INCRBYFLOAT f 1e22", "GET f",
        RESET_F, "INCRBYFLOAT f 0.000001", "GET f", "INCRBYFLOAT f 0.0000001",
        RESET_F, "INCRBYFLOAT f 1e-17", "GET f",
        RESET_F, "INCRBYFLOAT f 123456789.123456789", "GET f",
        "SET f 5 EX 100", "INCRBYFLOAT f 1", ("TTL f", "ttl"),
        "SET i 5", "INCRBYFLOAT i 1", "INCR i", "INCRBYFLOAT i 0.5", "INCR i",
        "incrbyfloat i 1",
    ]
    seq(p, cmds)


@group
def g_append_strlen(p):
    seq(p, [
        "APPEND", "APPEND a", "APPEND a b c", "APPEND a hello", "APPEND a ' world'", "GET a",
        ["APPEND", "a", ""], "STRLEN a", "STRLEN nokey", "STRLEN", "STRLEN a b",
        "SET n 10", "APPEND n 5", "GET n", "INCR n", "STRLEN n",
        "SET i 12345", "STRLEN i", "SET t v EX 100", "APPEND t x", ("TTL t", "ttl"),
        ["APPEND", "b", "\x00\x01"], "STRLEN b",
        ["SET", "u", "é"], "STRLEN u",
    ])


@group
def g_getrange(p):
    cmds = ["GETRANGE", "GETRANGE a", "GETRANGE a 0", "GETRANGE a 0 1 2", "SET a 'Hello World'"]
    idx = ["0", "1", "4", "10", "11", "12", "100", "-1", "-2", "-5", "-11", "-12", "-100",
           "9223372036854775807", "-9223372036854775808"]
    for s in idx:
        for e in idx:
            cmds.append("GETRANGE a %s %s" % (s, e))
    cmds += [
        "GETRANGE a abc 1", "GETRANGE a 1 abc", "GETRANGE a 1.5 3", "GETRANGE a '' 1",
        "GETRANGE a 9223372036854775808 1", "GETRANGE nokey 0 -1", "GETRANGE nokey 0 10",
        "GETRANGE nokey abc 1", "SET e ''", "GETRANGE e 0 -1", "GETRANGE e 0 0", "GETRANGE e -1 -1",
        "GETRANGE e 1 0", "SET i 12345", "GETRANGE i 1 2", "GETRANGE i -1 -1",
        "SUBSTR a 0 4", "SUBSTR a -3 -1",
    ]
    seq(p, cmds)


@group
def g_setrange(p):
    seq(p, [
        "SETRANGE", "SETRANGE a", "SETRANGE a 0", "SETRANGE a 0 b c",
        "SET a 'Hello World'", "SETRANGE a 6 Redis", "GET a", "SETRANGE a 20 X", "GET a",
        "SETRANGE a 0 ''", "GET a", "SETRANGE a 100 ''", "STRLEN a",
        "SETRANGE a -1 x", "SETRANGE a abc x", "SETRANGE a 1.5 x",
        "SETRANGE nk 5 x", "GET nk", "SETRANGE nk2 0 ''", "EXISTS nk2", "SETRANGE nk3 10 ''",
        "EXISTS nk3", "SETRANGE nk4 -1 ''", "SETRANGE nk5 536870911 ''", "EXISTS nk5",
        "SETRANGE nk5 536870912 x", "SETRANGE nk5 536870912 ''", "SETRANGE nk5 9223372036854775807 x",
        "SETRANGE nk5 4294967296 x",
        "SET i 12345", "SETRANGE i 1 9", "GET i", "INCR i",
        "SET t v EX 100", "SETRANGE t 1 x", ("TTL t", "ttl"),
        ["SETRANGE", "b", "3", "\x00\xff"], ["GET", "b"],
    ])


@group
def g_keys(p):
    keys = ["hello", "hallo", "hxllo", "hllo", "heeeello", "hillo", "h\\llo", "h*llo",
            "h?llo", "h[llo", "h]llo", "a", "b", "ab", "abc", "-", "^", "x-y", "\\",
            "foo:bar", "foo:baz", "FOO", "h^llo", "h-llo", "h llo", ""]
    cmds = [["MSET"] + sum([[k, "v"] for k in keys], [])]
    pats = ["*", "h?llo", "h*llo", "h[ae]llo", "h[^e]llo", "h[!e]llo", "h[a-b]llo", "h[a-z]llo",
            "h[z-a]llo", "h\\*llo", "h\\?llo", "h\\[llo", "h[\\]]llo", "h[]]llo", "h[*]llo",
            "?", "??", "???", "[a-c]", "[^a]", "*o*", "foo:*", "FOO", "foo", "*\\\\*", "\\\\",
            "h[llo", "[", "[a", "[a-", "[^", "a[", "*[", "h[a-]llo", "h[-a]llo", "h[e-e]llo",
            "h\\", "\\", "h[\\", "**", "*?*", "h[^a-z]llo", "h[-]llo", "h[ -]llo", "[\\^]",
            "x\\-y", "x[-]y", "h[a-z", "", "hel*", "*llo", "h*", "*a*b*", "nomatch*", "h\\llo",
            "[]", "[]]", "h[^]llo", "h[^]]llo", "a\\", "ab\\", "h[a-e-z]llo", "h[z-]llo", "h[\\-]llo",
            "h[e\\]llo", "*[", "**a", "***", "?*", "*?", "[a-c]*", "[^a-c]*", "h[]-]llo", "h[a\\-]llo",
            "\\*", "\\?", "h[a-a]llo", "[\\", "x*\\"]
    for pat in pats:
        cmds.append((["KEYS", pat], "sorted"))
    cmds += ["KEYS", "KEYS a b", "SET exp v PX 1"]
    seq(p, cmds)
    time.sleep(0.05)
    # DBSIZE may or may not count a logically-expired key depending on active-expire timing
    seq(p, [("KEYS e*", "sorted"), ("DBSIZE", "ignore")])


def scan_all(conn, extra):
    keys = []
    cursor = b"0"
    calls = 0
    err = None
    while True:
        conn.send(enc(["SCAN", cursor] + extra))
        raw, v = conn.reply()
        calls += 1
        if not isinstance(v, list):
            return None, raw
        cursor = v[0]
        keys += v[1]
        if cursor == b"0" or calls > 10000:
            break
    return sorted(keys), None


@group
def g_scan(p):
    keys = ["k%d" % i for i in range(300)] + ["foo", "foobar", "bar", "k_special"]
    p.run(["MSET"] + sum([[k, "v"] for k in keys], []))
    variants = [[], ["COUNT", "10"], ["COUNT", "1000"], ["MATCH", "k1*"], ["MATCH", "foo*", "COUNT", "5"],
                ["TYPE", "string"], ["TYPE", "list"], ["TYPE", "STRING"], ["TYPE", "hash"],
                ["TYPE", "set"], ["TYPE", "zset"], ["TYPE", "nosuchtype"], ["MATCH", "k[0-2]?", "TYPE", "string"],
                ["COUNT", "1"], ["match", "*bar"], ["MATCH", "nomatch"]]
    for v in variants:
        rk, rerr = scan_all(p.r, v)
        ck, cerr = scan_all(p.c, v)
        label = "SCAN (full iteration) " + " ".join(v)
        if rerr is not None or cerr is not None:
            p.check(label, rerr == cerr, rerr or repr(rk).encode(), cerr or repr(ck).encode())
        else:
            # duplicates are allowed by the SCAN contract: compare the key sets
            rs, cs = set(rk), set(ck)
            note = "only-redis=%r only-rc=%r" % (sorted(rs - cs)[:10], sorted(cs - rs)[:10])
            p.check(label, rs == cs, ("%d keys" % len(rs)).encode(), ("%d keys" % len(cs)).encode(), note)
    seq(p, [
        "SCAN", ("SCAN 0", "scan"), "SCAN abc", "SCAN -1", "SCAN 1.5", "SCAN ''",
        ("SCAN 18446744073709551615", "scan"), "SCAN 18446744073709551616",
        ("SCAN 0 COUNT 5", "scan"), "SCAN 0 COUNT 0", "SCAN 0 COUNT -1", "SCAN 0 COUNT abc",
        "SCAN 0 COUNT", "SCAN 0 MATCH", "SCAN 0 TYPE", "SCAN 0 FOO", "SCAN 0 FOO bar",
        ("SCAN 0 MATCH a MATCH b", "scan"), ("SCAN 0 COUNT 10 COUNT 20", "scan"),
        ("scan 0 count 10", "scan"), "SCAN 0 COUNT 1.5",
    ])
    # huge cursor on a small db
    flushall()
    seq(p, ["SET a 1", "SCAN 0", "SCAN 0 MATCH b", "SCAN 0 TYPE list", ("SCAN 999999", "scan")])


@group
def g_scan_guarantee(p):
    """SCAN contract: keys present for the whole iteration must be returned, even if
    the keyspace grows/shrinks in between calls (checked independently on each server)."""
    base = ["base%d" % i for i in range(500)]
    p.run(["MSET"] + sum([[k, "v"] for k in base], []))
    for name, conn in (("redis", p.r), ("ringcache", p.c)):
        seen = set()
        cursor = b"0"
        calls = 0
        while True:
            conn.send(enc(["SCAN", cursor, "COUNT", "20"]))
            raw, v = conn.reply()
            cursor = v[0]
            seen.update(v[1])
            calls += 1
            if calls == 3:   # grow a lot mid-iteration (forces rehash / resharding)
                conn.send(enc(["MSET"] + sum([["grow%d" % i, "v"] for i in range(5000)], [])))
                conn.reply()
            if calls == 8:   # shrink mid-iteration
                conn.send(enc(["DEL"] + ["grow%d" % i for i in range(5000)]))
                conn.reply()
            if cursor == b"0" or calls > 100000:
                break
        missing = [k for k in base if k.encode() not in seen]
        p.check("SCAN guarantee on %s (keys present throughout but never returned)" % name, not missing,
                b"", ("%d missing, e.g. %r" % (len(missing), missing[:5])).encode())


@group
def g_randomkey(p):
    seq(p, ["RANDOMKEY", "RANDOMKEY x", "SET only v", "RANDOMKEY", "SET only2 x",
            "DEL only", "RANDOMKEY", "DEL only2", "RANDOMKEY", "SET e v PX 1"])
    time.sleep(0.05)
    seq(p, ["RANDOMKEY"])


@group
def g_rename(p):
    seq(p, [
        "RENAME", "RENAME a", "RENAME a b c", "RENAME nokey b", "RENAMENX nokey b",
        "RENAMENX", "RENAMENX a",
        "SET a 1", "RENAME a b", "GET a", "GET b", "RENAME b b", "GET b", "RENAMENX b b",
        "SET c 3", "RENAMENX b c", "RENAMENX b d", "GET d", "EXISTS b",
        "SET t v EX 100", "RENAME t t2", ("TTL t2", "ttl"), "SET u v", "EXPIRE u 100",
        "SET w v", "RENAME w u", "TTL u", "SET x v EX 100", "RENAMENX x y", ("TTL y", "ttl"),
        "SET p1 v PX 100000", "SET p2 w", "RENAME p2 p1", "TTL p1", "GET p1",
        "SET q1 v", "SET q2 w EX 100", "RENAMENX q1 q2", ("TTL q2", "ttl"),
        ["RENAME", "d", ""], ["GET", ""], ["RENAME", "", "d2"],
        "SET e v PX 1",
    ])
    time.sleep(0.05)
    seq(p, ["RENAME e f", "RENAMENX e f", "EXISTS f"])


@group
def g_wrong_arity(p):
    cmds = ["PING", "ECHO", "HELLO", "SELECT", "COMMAND", "CLIENT", "INFO", "CONFIG", "DBSIZE",
            "FLUSHALL", "FLUSHDB", "TIME", "GET", "SET", "SETNX", "SETEX", "PSETEX", "GETSET",
            "GETDEL", "GETEX", "MGET", "MSET", "MSETNX", "DEL", "UNLINK", "EXISTS", "TOUCH", "TYPE",
            "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME",
            "PERSIST", "INCR", "DECR", "INCRBY", "DECRBY", "INCRBYFLOAT", "APPEND", "STRLEN",
            "GETRANGE", "SETRANGE", "KEYS", "SCAN", "RANDOMKEY", "RENAME", "RENAMENX", "QUIT"]
    fixed_arity = {  # redis arity (positive = exact)
        "GET": 2, "SETNX": 3, "SETEX": 4, "PSETEX": 4, "GETSET": 3, "GETDEL": 2, "TYPE": 2,
        "TTL": 2, "PTTL": 2, "EXPIRETIME": 2, "PEXPIRETIME": 2, "PERSIST": 2, "INCR": 2, "DECR": 2,
        "INCRBY": 3, "DECRBY": 3, "INCRBYFLOAT": 3, "APPEND": 3, "STRLEN": 2, "GETRANGE": 4,
        "SETRANGE": 4, "KEYS": 2, "RANDOMKEY": 1, "RENAME": 3, "RENAMENX": 3, "DBSIZE": 1,
        "TIME": 1, "ECHO": 2, "SELECT": 2,
    }
    for c in cmds:
        if c == "QUIT":
            continue
        # no args
        if c not in ("PING", "HELLO", "COMMAND", "INFO", "DBSIZE", "FLUSHALL", "FLUSHDB", "TIME",
                     "RANDOMKEY", "SCAN"):
            cmds_args = [c]
        else:
            cmds_args = None
        if cmds_args:
            p.run(cmds_args)
        if c in fixed_arity:
            n = fixed_arity[c]
            p.run([c] + ["x"] * n)  # one too many
    seq(p, ["get", "GeT", "set a", "mset a", "CONFIG GET", "CLIENT SETNAME", ("COMMAND INFO", "shape")])


@group
def g_unknown(p):
    seq(p, [
        "FOO", "FOO bar baz", "foo 'a b'", ["F\x00O"], ["FOOBARBAZ" * 20, "x"],
        ["", "a"], [""], "GET2 a", "SETT a b", "FOO " + " ".join("a%d" % i for i in range(30)),
        ["FOO", "x" * 200], ["FOO", "a\r\nb"], ["FOO", "a b"],
        "CLIENT NOSUCH", "CONFIG NOSUCH", "COMMAND NOSUCH", "PING",
    ])


@group
def g_other_types(p):
    # against string key -> must be WRONGTYPE in both
    seq(p, ["SET s v"])
    against = [
        "LPUSH s a", "RPUSH s a", "LRANGE s 0 -1", "LLEN s", "LPOP s", "HSET s f v", "HGET s f",
        "HGETALL s", "HDEL s f", "SADD s m", "SMEMBERS s", "SISMEMBER s m", "SCARD s",
        "ZADD s 1 m", "ZRANGE s 0 -1", "ZSCORE s m", "XADD s * f v", "PFADD s a", "SETBIT s 1 1",
        "GETBIT s 0",
    ]
    seq(p, against + ["GET s", "TYPE s"])
    # against missing key: error text differences are allowed (deliberately unimplemented)
    missing = ["LPUSH m a", "LRANGE m 0 -1", "LLEN m", "HSET m2 f v", "HGET m3 f", "SADD m4 x",
               "SMEMBERS m5", "ZADD m6 1 x", "LPOP m7"]
    for c in missing:
        rr, cr, rv, cv = p.run(c, "ignore")
        # if ringcache implements it, the reply should match
        p.check(c + " (implemented in ringcache)", is_err(cr) or rr == cr, rr, cr)
    # their results must not turn into strings
    seq(p, [("TYPE m", "ignore"), "GET m3"])


INLINE = [
    b"PING\r\n", b"PING\n", b"ping hello\r\n", b"ECHO \"hello world\"\r\n",
    b"ECHO 'single quoted'\r\n", b"ECHO \"esc\\x41\\n\\t\\\\\"\r\n",
    b"SET ik \"a b\"\r\nGET ik\r\n", b"ECHO \"\"\r\n", b"ECHO ''\r\n",
    b"  ECHO   spaced   \r\n", b"\r\n", b"\n", b"\r\nPING\r\n", b"\nPING\r\n", b"   \r\nPING\r\n",
    b"ECHO \"unbalanced\r\n", b"ECHO 'unbalanced\r\n", b"ECHO \"a\"b\r\n", b"ECHO 'a'b\r\n",
    b"ECHO 'it\\'s'\r\n", b"ECHO \"\\\"q\\\"\"\r\n",
    b"SET ik2 value\r\nGET ik2\r\nMGET ik ik2 nokey\r\n",
    b"ECHO a\tb\r\n", b"ECHO \"\\xZZ\"\r\n", b"ECHO \"\\u0041\"\r\n", b"ECHO \"\\x4\"\r\n",
    b"FOO bar\r\n", b"GET\r\n", b"ECHO \"a\" \"b\"\r\n", b"ECHO 'a' 'b'\r\n",
    b"PING\r\nPING\r\n", b"PING\rPING\r\n", b"ECHO a\rb\r\n", b"ECHO a\x00b\r\n",
    b"ECHO \"a\\0b\"\r\n", b"ECHO \"\\a\\b\\r\"\r\n",
    b"ECHO \"a\"\t\"b\"\r\n", b"ECHO \"a\"\r\n\r\nECHO b\r\n",
    b"*1\r\n$4\r\nPING\r\nPING\r\n", b"PING\r\n*1\r\n$4\r\nPING\r\n",
    b"HELLO 3\r\nECHO x\r\n",
]


@group
def g_inline(p):
    """each inline request on its own connection; compare everything written back"""
    p.close()

    def same(r, c):
        if r[0].startswith(b"%7") or r[0].startswith(b"*14"):  # HELLO: mask id and version
            return mask_hello(r[0]) == mask_hello(c[0]) and r[1] == c[1]
        return r == c

    for data in INLINE:
        p.raw_exchange("inline", data, quiet=0.4, maxtime=2, same=same)
    p.connect()


@group
def g_auth(p):
    seq(p, ["AUTH", "AUTH x", "AUTH default x", "AUTH nosuchuser x", "AUTH a b c",
            ("HELLO 2 AUTH nosuchuser pw", "hello"), ("HELLO 3 AUTH nosuchuser pw", "hello"), "PING"])


@group
def g_active_expire(p):
    # does the server reclaim expired keys that are never touched again?
    seq(p, ["SET ae1 v PX 10", "SET ae2 v PX 10", "SET ae3 v PX 10", "SET keep v"])
    time.sleep(1.5)
    seq(p, ["DBSIZE", ("INFO keyspace", "exact")])


@group
def g_pipeline(p):
    data = enc(["SET", "p", "1"]) + enc(["INCR", "p"]) + enc(["GET", "p"]) + b"PING\r\n" + enc(["ECHO", "x"])
    res = []
    for conn in (p.r, p.c):
        conn.send(data)
        out = []
        for _ in range(5):
            out.append(conn.reply()[0])
        res.append(b"".join(out))
    p.check("pipelined SET/INCR/GET/PING/ECHO", res[0] == res[1], res[0], res[1])
    # one request split across many writes
    for conn in (p.r, p.c):
        for ch in enc(["ECHO", "split"]):
            conn.send(bytes([ch]))
            time.sleep(0.001)
    rr = p.r.reply()[0]
    cr = p.c.reply()[0]
    p.check("byte-by-byte ECHO split", rr == cr, rr, cr)


@group
def g_quit(p):
    def after_quit(label):
        # after QUIT the connection must be closed, with nothing more written
        r, c = p.r.drain(quiet=0.5), p.c.drain(quiet=0.5)
        p.check(label, r == c, repr(r).encode(), repr(c).encode(), "(more bytes, closed?)")
        p.connect()

    p.run("QUIT")
    after_quit("QUIT then read")
    p.run("QUIT extra")
    after_quit("QUIT extra then read")
    # pipelined: a command after QUIT must not be processed
    res = []
    for conn in (p.r, p.c):
        conn.send(enc(["QUIT"]) + enc(["SET", "afterquit", "1"]))
        res.append(conn.drain(quiet=0.5))
    p.check("QUIT; SET afterquit 1 (pipelined)", res[0] == res[1], repr(res[0]).encode(), repr(res[1]).encode())
    p.connect()
    p.run("EXISTS afterquit")


MALFORMED = [
    b"*1\r\n$4\r\nPINGX\r\n",          # bulk length mismatch
    b"*1\r\n$-1\r\n",                   # null bulk in request
    b"*1\r\n$abc\r\nPING\r\n",
    b"*abc\r\n",
    b"*-1\r\nPING\r\n",
    b"*0\r\nPING\r\n",
    b"*1\r\n:1\r\n",
    b"*1\r\n+PING\r\n",
    b"*2\r\n$4\r\nECHO\r\n*1\r\n$1\r\na\r\n",
    b"*1\r\n$4\r\nPING",                # missing trailing CRLF, then nothing
    b"*1\r\n$4\r\nPINGabPING\r\n",
    b"*1\r\n$2147483648\r\n",           # too large bulk
    b"*1\r\n$536870913\r\n",
    b"*1048577\r\n",                    # multibulk length over 1M? (redis limit 1024*1024 for unauth)
    b"*2147483648\r\n",
    b"*1\r\n$04\r\nPING\r\n",
    b"*01\r\n$4\r\nPING\r\n",
    b"*+1\r\n$4\r\nPING\r\n",
    b"*1\r\n$+4\r\nPING\r\n",
    b"*1 \r\n$4\r\nPING\r\n",
    b"*1\n$4\nPING\n",
    b"*\r\n",
    b"$4\r\nPING\r\n",
    b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI",  # trailing partial
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n",      # incomplete then nothing
    b"\x00\x01\x02\r\n",
    b"PING \"unterminated\r\n",
    b"*1\r\n$4\r\nPING\r\n\r\n",
    b"*1\r\n$0\r\n\r\n",
    b"*2\r\n$3\r\nGET\r\n$-5\r\n",
    b"*1\r\n$ 4\r\nPING\r\n",
    b"*1\r\n$4\r\nPING\n\n",
    b"*" + b"9" * 30 + b"\r\n",
    b"X" * 70000,                        # inline too big without newline (redis limit 64k)
    b"*1\r\n$" + b"9" * 30 + b"\r\n",
    b"GET " + b"a" * 70000 + b"\r\n",
    b"*-5\r\n",
    b"*1\r\n$-2\r\n",
]


@group
def g_malformed(p):
    p.close()
    for data in MALFORMED:
        p.raw_exchange("malformed", data, quiet=0.7, maxtime=2)
    # both servers still alive?
    p.connect()
    p.run("PING")


# ---------------------------------------------------------------------------
# redis-py against ringcache only
# ---------------------------------------------------------------------------

class ClientChecks:
    """Assertions made through redis-py; each counts as one check in the summary."""

    def __init__(self, name):
        self.name = name

    def check(self, label, got, want):
        if got == want:
            RESULTS.ok()
        else:
            RESULTS.mismatch(Mismatch(self.name, label, None, repr(want).encode(), repr(got).encode(),
                                      sides=("expected", "got")))

    def truthy(self, label, ok, detail=""):
        self.check(label + ((" " + detail) if detail and not ok else ""), bool(ok), True)


def redis_py_checks(redis):
    for proto in (2, 3):
        t = ClientChecks("redis-py/resp%d" % proto)
        r = redis.Redis(host=HOST, port=RC_PORT, protocol=proto, decode_responses=True,
                        socket_timeout=5)
        try:
            redis_py_suite(t, r, proto)
        except Exception as e:
            traceback.print_exc()
            t.check("<exception>", repr(e), "no exception")
        finally:
            r.close()


def redis_py_suite(t, r, proto):
    r.flushall()
    t.check("ping", r.ping(), True)
    info = client_info(r.execute_command("CLIENT", "INFO"))
    t.check("CLIENT INFO resp", info.get("resp"), str(proto))
    if proto == 3:
        hello = r.execute_command("HELLO", "3")
        if isinstance(hello, list):  # flatten to a dict whatever the reply parser did
            hello = dict(zip(hello[0::2], hello[1::2]))
        hello = {k.decode() if isinstance(k, bytes) else k: v for k, v in hello.items()}
        t.check("HELLO 3 proto", hello.get("proto"), 3)
        t.check("HELLO 3 server", hello.get("server"), "redis")
        t.truthy("HELLO 3 version", str(hello.get("version", "")).startswith("7."), repr(hello))

    t.check("set", r.set("k", "v"), True)
    t.check("get", r.get("k"), "v")
    t.check("get missing", r.get("missing"), None)
    t.check("set nx (exists)", r.set("k", "x", nx=True), None)
    t.check("set xx", r.set("k", "v2", xx=True), True)
    t.check("set get=True", r.set("k", "v3", get=True), "v2")
    t.check("mset", r.mset({"a": "1", "b": "2"}), True)
    t.check("mget", r.mget(["a", "b", "missing", "k"]), ["1", "2", None, "v3"])
    t.check("incr", r.incr("n"), 1)
    t.check("incrby", r.incr("n", 41), 42)
    t.check("decr", r.decr("n"), 41)
    t.check("incrbyfloat", r.incrbyfloat("fl", 0.5), 0.5)
    t.check("get after incr", r.get("n"), "41")
    t.check("expire", r.expire("k", 100), True)
    ttl = r.ttl("k")
    t.truthy("ttl after expire 100", 99 <= ttl <= 100, repr(ttl))
    pttl = r.pttl("k")
    t.truthy("pttl after expire 100", 98000 <= pttl <= 100000, repr(pttl))
    t.check("ttl without expiry", r.ttl("a"), -1)
    t.check("ttl missing", r.ttl("missing"), -2)
    t.check("persist", r.persist("k"), True)
    t.check("ttl after persist", r.ttl("k"), -1)
    t.check("set ex", r.set("e", "v", ex=50), True)
    ttl = r.ttl("e")
    t.truthy("ttl after set ex 50", 49 <= ttl <= 50, repr(ttl))
    t.check("exists", r.exists("a", "b", "missing"), 2)
    t.check("delete", r.delete("a", "missing"), 1)
    t.check("type", r.type("b"), "string")

    # 100 commands in one non-transactional pipeline
    pipe = r.pipeline(transaction=False)
    for i in range(25):
        pipe.set("p:%d" % i, i)
        pipe.incr("p:%d" % i)
        pipe.get("p:%d" % i)
        pipe.expire("p:%d" % i, 1000)
    got = pipe.execute()
    t.check("pipeline of 100 commands", got, sum([[True, i + 1, str(i + 1), True] for i in range(25)], []))

    t.check("scan_iter match", sorted(r.scan_iter(match="p:*", count=7)),
            sorted("p:%d" % i for i in range(25)))
    t.check("scan_iter all", sorted(r.scan_iter()), sorted(["k", "b", "n", "fl", "e"] + ["p:%d" % i for i in range(25)]))
    t.check("dbsize", r.dbsize(), 30)
    t.check("flushall", r.flushall(), True)


def client_info(text):
    if isinstance(text, bytes):
        text = text.decode()
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


# ---------------------------------------------------------------------------

def redis_version():
    c = Conn(REDIS_PORT)
    _, v = c.command("INFO", "server")
    c.close()
    m = re.search(rb"redis_version:(\d+)\.(\d+)", v or b"")
    return (int(m.group(1)), int(m.group(2))) if m else None


def main():
    global REDIS_PORT, RC_PORT, VERBOSE, RESULTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-v", action="store_true", help="print every check")
    ap.add_argument("-k", default="", help="only run groups whose name contains this")
    ap.add_argument("--redis-port", type=int, default=REDIS_PORT)
    ap.add_argument("--rc-port", type=int, default=RC_PORT)
    ap.add_argument("--extra-known", action="append", default=[], metavar="FILE",
                    help="another allowlist file (repeatable)")
    ap.add_argument("--require-redis-py", action="store_true")
    ap.add_argument("--no-redis-py", action="store_true")
    a = ap.parse_args()
    REDIS_PORT, RC_PORT, VERBOSE = a.redis_port, a.rc_port, a.v

    if tomllib is None:
        print("error: reading the allowlist needs Python 3.11 (tomllib) or the tomli package")
        return 2
    try:
        known = load_known([DEFAULT_KNOWN] + a.extra_known)
    except (OSError, ValueError, tomllib.TOMLDecodeError, re.error) as e:
        print("error: bad allowlist: %s" % e)
        return 2
    try:
        version = redis_version()
        Conn(RC_PORT).close()
    except OSError as e:
        print("error: cannot reach the servers (redis %d, ringcache %d): %s" % (REDIS_PORT, RC_PORT, e))
        return 2
    if version is None or version < (7, 0):
        print("error: redis-server 7.0 or newer is needed as the reference, found %r" % (version,))
        return 2
    print("reference: redis %d.%d on port %d; ringcache on port %d; %d allowlist entries"
          % (version + (REDIS_PORT, RC_PORT, len(known))))

    RESULTS = Results(known)
    started = time.time()
    groups = [g for g in GROUPS if a.k in g.group_name]
    for g in groups:
        flushall()
        p = Pair(g.group_name)
        try:
            g(p)
        except Exception as e:  # a broken group is a failure; go on with the next one
            traceback.print_exc()
            p.check("<exception in test group>", False, b"", repr(e).encode())
        finally:
            p.close()
    flushall()
    diff_checks = RESULTS.total
    print("\ndifferential: %d steps not compared (setup or timing, mode ignore)" % RESULTS.ignored)
    print("differential: %d groups, %d checks: %d matched, %d known differences, %d unexpected (%.0fs)"
          % (len(groups), diff_checks, RESULTS.matched, RESULTS.allowed, len(RESULTS.failures),
             time.time() - started))

    py_failed = 0
    if not a.no_redis_py:
        try:
            import redis
        except ImportError:
            redis = None
        if redis is None and a.require_redis_py:
            print("redis-py: the redis package is not installed (pip install redis)")
            py_failed = 1
        elif redis is None:
            print("redis-py: skipped, the redis package is not installed")
        else:
            before = len(RESULTS.failures)
            redis_py_checks(redis)
            print("redis-py %s: %d checks, %d failed" % (redis.__version__, RESULTS.total - diff_checks,
                                                         len(RESULTS.failures) - before))

    undocumented = ["%s (%d)" % (e.id, e.hits) for e in known if e.hits and not e.documented]
    if undocumented:
        print("note: known differences not yet described in docs/commands.md: " + ", ".join(undocumented))
    if not a.k:
        unused = [e.id for e in known if e.hits == 0]
        if unused:
            print("note: allowlist entries that matched nothing (fixed, or another Redis version?): "
                  + ", ".join(unused))
    if RESULTS.failures:
        print("\n%d unexpected mismatches (details above):" % len(RESULTS.failures))
        for m in RESULTS.failures:
            print("  [%s] %s%s" % (m.group, m.label, ("   (after: %s)" % m.after) if m.after else ""))
        print("Each is a regression, or a new deliberate difference to document in docs/commands.md"
              "\nand add to tests/compat/known_differences.toml.")
    failed = len(RESULTS.failures) + py_failed
    print("%d passed, %d failed" % (RESULTS.matched + RESULTS.allowed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
