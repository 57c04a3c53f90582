#!/usr/bin/env python3
"""Differential compatibility test: ringcache's memcached port against a real memcached.

Every test group sends the same raw byte sequences to a memcached server and to ringcache's
memcached text-protocol port and compares the complete replies. Each request is followed by
`mn\\r\\n` (the meta no-op), and everything the server writes before its `MN\\r\\n` is the
reply: so requests that answer nothing (noreply, quiet meta flags) or several lines are
compared exactly, and a server that lost sync with the stream shows up as a timeout. Each
group starts on a fresh connection pair after flush_all on both servers. Replies are
compared according to a per-request mode:

    exact    raw bytes must be equal (the default)
    cas      CAS numbers masked (the 5th field of VALUE lines, meta `c<n>` tokens), the
             rest exact; each group also checks CAS semantics on each server separately
    ttl      meta `t<n>` tokens equal within +-1 (-1 exact), the rest exact
    ttl2     the same within +-2 (absolute exptimes: memcached's clock is coarse)
    cas,ttl  both maskings
    version  VERSION lines' version strings masked, the rest exact
    stats    both are `STAT <name> <value>` lines ended by END (values compared separately)
    iserr    both replies are one ERROR / CLIENT_ERROR / SERVER_ERROR line (text ignored)
    ignore   not compared (setup steps)

Requests that leave a server waiting for more bytes, or close the connection, are sent on
their own connection instead, and everything written back until the server closes it or
stays quiet is compared, with whether it closed.

Deliberate differences are listed in known_differences_memcached.toml next to this file. A
mismatch that matches one of its entries is counted as passed ("known"); any other mismatch
is a failure and is printed with both replies. See that file for the entry format.

After the differential run, a pymemcache check (ringcache only) exercises the client library:
set/get/get_many/gets/cas/incr/decr/delete/touch/add/replace/append/prepend, with
noreply=False and noreply=True. It runs when the `pymemcache` package is importable
(required with --require-pymemcache).

Usage (scripts/compat.sh starts both servers on free ports and runs this):

    memcached -p 17411 -U 0 -t 2 -m 1024 -l 127.0.0.1 -d
    target/debug/ringcache server --port 17379 --memcache-port 17412 --admin-port 0 &
    python3 tests/compat/diff_vs_memcached.py --mc-port 17411 --rc-port 17412

    -v                    print every check with both replies, and each known difference hit
    -k SUBSTR             only run test groups whose name contains SUBSTR
    --extra-known FILE    another allowlist, in addition to known_differences_memcached.toml
    --require-pymemcache  fail when pymemcache is missing instead of skipping that part
    --no-pymemcache       skip the pymemcache part

The servers are flushed (flush_all) before every group: never point this at a server whose
data matters. The reference is memcached 1.6 (run with its default -I 1m and -m 1024, like
ringcache's defaults). A full run takes about 15 seconds, most of it waiting for TTLs.

Exit status: 0 when every mismatch is a known difference, 1 when any is not, 2 when the
test could not run (server unreachable, bad allowlist). The last line of the output is
`N passed, M failed`.
"""
import argparse
import base64
import os
import re
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
MC_PORT = 17411
RC_PORT = 17412
VERBOSE = False
DEFAULT_KNOWN = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "known_differences_memcached.toml")
SIDES = ("memcached", "ringcache")
SYNC = b"mn\r\n"


# ---------------------------------------------------------------------------
# memcached text-protocol client
# ---------------------------------------------------------------------------

class Closed(Exception):
    pass


class Conn:
    """A raw memcached text connection."""

    def __init__(self, port, timeout=2.0):
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            d = self.sock.recv(1 << 20)
        except socket.timeout:
            raise Closed("TIMEOUT")
        except (ConnectionResetError, BrokenPipeError):
            raise Closed("RESET")
        if not d:
            raise Closed("EOF")
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

    def until_mn(self, count=1):
        """Reads replies up to the `count`-th `MN` line (the last one is our sync `mn`'s);
        returns what came before that one. A VALUE or VA line's data block is skipped over by
        its length, so a value holding "MN" can't end the reply early."""
        pos = 0
        while True:
            line, nxt = self._line(pos)
            if line == b"MN":
                count -= 1
                if count == 0:
                    out = self.buf[:pos]
                    self.buf = self.buf[nxt:]
                    return out
            toks = line.split(b" ")
            n = None
            try:
                if toks[0] == b"VALUE" and len(toks) >= 4:
                    n = int(toks[3])
                elif toks[0] == b"VA" and len(toks) >= 2:
                    n = int(toks[1])
            except ValueError:
                n = None
            if n is not None:
                self._need(nxt + n + 2)
                nxt += n + 2
            pos = nxt

    def request(self, data):
        """Sends data and the sync `mn`; returns the reply bytes (or raises Closed with what
        was received so far in .partial)."""
        self.send(data + SYNC)
        try:
            return self.until_mn(own_mn(data) + 1)
        except Closed as e:
            e.partial = self.buf
            raise

    def drain(self, quiet=0.5, maxtime=3.0):
        """Reads everything until EOF or `quiet` seconds of silence; returns (bytes, closed)."""
        self.sock.settimeout(quiet)
        out, self.buf = self.buf, b""
        closed = False
        end = time.time() + maxtime
        while time.time() < end:
            try:
                d = self.sock.recv(1 << 20)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            if not d:
                closed = True
                break
            out += d
        return out, closed


def own_mn(data):
    """How many `mn` requests data itself holds (each answers an MN line of its own). Data
    blocks are not told apart from command lines here: no test stores a value that is a line
    starting with "mn"."""
    return sum(1 for line in data.split(b"\n") if line.rstrip(b"\r").split(b" ")[0] == b"mn")


def label_of(data):
    """How a request is named in the output and in the allowlist: its bytes as a Python
    literal without the b'' around it, without our trailing sync."""
    shown = data if len(data) <= 300 else data[:60]
    text = repr(shown)[2:-1]
    if len(data) > 300:
        text += "...(%d bytes)" % len(data)
    return text


# ---------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------

ERR_LINE = re.compile(rb"^(ERROR|CLIENT_ERROR [^\r\n]*|SERVER_ERROR [^\r\n]*)\r\n$")
STATS_SHAPE = re.compile(rb"^(STAT [^ \r\n]+ [^\r\n]*\r\n)*END\r\n$")
META_HEAD = re.compile(rb"^(VA \d+|HD|EN|NF|NS|EX)( |$)")


def split_replies(raw):
    """Splits raw reply bytes into lines, keeping data blocks (after VALUE/VA) as items of
    their own so masking only touches header lines. Returns a list of (is_header, bytes)."""
    out, pos = [], 0
    while pos < len(raw):
        i = raw.find(b"\r\n", pos)
        if i < 0:
            out.append((False, raw[pos:]))
            break
        line = raw[pos:i]
        out.append((True, line))
        pos = i + 2
        toks = line.split(b" ")
        n = None
        try:
            if toks[0] == b"VALUE" and len(toks) >= 4:
                n = int(toks[3])
            elif toks[0] == b"VA" and len(toks) >= 2:
                n = int(toks[1])
        except ValueError:
            pass
        if n is not None:
            out.append((False, raw[pos:pos + n + 2]))
            pos += n + 2
    return out


def mask(raw, cas=False, ttl=False):
    """Returns (masked bytes, ttl numbers found) for comparison."""
    parts, ttls = [], []
    for header, chunk in split_replies(raw):
        if header:
            toks = chunk.split(b" ")
            if cas and toks[0] == b"VALUE" and len(toks) == 5 and toks[4].isdigit():
                toks[4] = b"<CAS>"
            if META_HEAD.match(chunk):
                for i, t in enumerate(toks[1:], 1):
                    if cas and re.fullmatch(rb"c\d+", t):
                        toks[i] = b"c<CAS>"
                    if ttl and re.fullmatch(rb"t-?\d+", t):
                        ttls.append(int(t[1:]))
                        toks[i] = b"t<TTL>"
            chunk = b" ".join(toks) + b"\r\n"
        parts.append(chunk)
    return b"".join(parts), ttls


def compare(mode, mr, cr):
    if mode == "ignore":
        return True
    if mode == "exact":
        return mr == cr
    if mode == "version":
        ver = re.compile(rb"(?m)^VERSION [^ \r\n]+\r$")
        return (bool(ver.search(mr)) and ver.sub(b"VERSION <V>\r", mr) == ver.sub(b"VERSION <V>\r", cr))
    if mode == "stats":
        return bool(STATS_SHAPE.match(mr) and STATS_SHAPE.match(cr))
    if mode == "iserr":
        return bool(ERR_LINE.match(mr) and ERR_LINE.match(cr))
    modes = set(mode.split(","))
    unknown = modes - {"cas", "ttl", "ttl2"}
    if unknown:
        raise ValueError(mode)
    want_ttl = bool(modes & {"ttl", "ttl2"})
    mm, mt = mask(mr, "cas" in modes, want_ttl)
    cm, ct = mask(cr, "cas" in modes, want_ttl)
    if mm != cm or len(mt) != len(ct):
        return False
    slack = 2 if "ttl2" in modes else 1
    for a, b in zip(mt, ct):
        if (a < 0 or b < 0) and a != b:
            return False
        if abs(a - b) > slack:
            return False
    return True


# ---------------------------------------------------------------------------
# known differences (the allowlist)
# ---------------------------------------------------------------------------

ENTRY_KEYS = {"id", "reason", "documented", "group", "commands", "command_regex", "after",
              "after_regex", "memcached", "ringcache"}


class Known:
    """One entry of known_differences_memcached.toml; see the comment at its top."""

    def __init__(self, d, source):
        unknown = set(d) - ENTRY_KEYS
        if unknown:
            raise ValueError("%s: entry %r: unknown keys %s" % (source, d.get("id"), sorted(unknown)))
        for k in ("id", "reason", "group"):
            if k not in d:
                raise ValueError("%s: entry %r lacks %r" % (source, d.get("id"), k))
        if "commands" not in d and "command_regex" not in d:
            raise ValueError("%s: entry %r needs commands or command_regex" % (source, d["id"]))
        self.id = d["id"]
        self.reason = d["reason"]
        self.documented = d.get("documented", True)
        self.groups = [d["group"]] if isinstance(d["group"], str) else list(d["group"])
        self.commands = d.get("commands")
        self.command_re = re.compile(d["command_regex"], re.S) if "command_regex" in d else None
        self.after = d.get("after")
        self.after_re = re.compile(d["after_regex"], re.S) if "after_regex" in d else None
        self.mc_re = re.compile(d["memcached"], re.S) if "memcached" in d else None
        self.rc_re = re.compile(d["ringcache"], re.S) if "ringcache" in d else None
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
        if self.mc_re is not None and not self.mc_re.search(m.mc.decode("latin-1")):
            return False
        if self.rc_re is not None and not self.rc_re.search(m.rc.decode("latin-1")):
            return False
        return True


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
    def __init__(self, group, label, after, mc, rc, mode="exact", note="", sides=SIDES):
        self.group, self.label, self.after = group, label, after
        self.mc, self.rc = mc, rc
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
        out += "\n    %-10s %s\n    %-10s %s" % (self.sides[0] + ":", clip(self.mc),
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
    """A connection to each server; run() sends one request to both and compares."""

    def __init__(self, group):
        self.group = group
        self.after = None  # label of the previous request, for the allowlist's `after`
        self.connect()

    def connect(self):
        self.m = Conn(MC_PORT)
        self.c = Conn(RC_PORT)

    def close(self):
        self.m.close()
        self.c.close()

    def reconnect(self):
        self.close()
        self.connect()

    def send_both(self, data):
        """Sends a request (bytes, or a function of the side index 0/1 returning bytes) to
        both servers; returns (memcached reply, ringcache reply, desynced?)."""
        res, broken = [], False
        for i, conn in enumerate((self.m, self.c)):
            d = data(i) if callable(data) else data
            try:
                res.append(conn.request(d))
            except Closed as e:
                res.append(getattr(e, "partial", b"") + b"<%s>" % str(e).encode())
                broken = True
            except OSError as e:
                res.append(b"<OSERROR %s>" % str(e).encode())
                broken = True
        return res[0], res[1], broken

    def run(self, data, mode="exact", label=None):
        """Sends data to both servers and compares the replies; returns them."""
        if label is None:
            label = label_of(data(0) if callable(data) else data)
        mr, cr, broken = self.send_both(data)
        ok = compare(mode, mr, cr)
        if VERBOSE:
            print("  [%s] %s %s\n      M: %s\n      C: %s" %
                  (self.group, "ok " if ok else "BAD", label, clip(mr), clip(cr)))
        if ok:
            RESULTS.ok()
        else:
            RESULTS.mismatch(Mismatch(self.group, label, self.after, mr, cr, mode))
        self.after = label
        if broken:  # a server closed or lost sync: go on with fresh connections
            self.reconnect()
        return mr, cr

    def quiet(self, data):
        """A setup request: sent to both, not compared."""
        return self.run(data, "ignore")

    def check(self, label, ok, mc, rc, note=""):
        """A derived comparison (a field of a reply, a CAS rule, ...)."""
        if VERBOSE:
            print("  [%s] %s %s\n      M: %s\n      C: %s" %
                  (self.group, "ok " if ok else "BAD", label, clip(mc), clip(rc)))
        if ok:
            RESULTS.ok()
        else:
            RESULTS.mismatch(Mismatch(self.group, label, self.after, mc, rc, note=note))

    def raw_exchange(self, data, quiet=0.5, maxtime=3.0, label=None):
        """Sends data on fresh connections and compares everything written back, and
        whether the server closed the connection."""
        res = []
        for port in (MC_PORT, RC_PORT):
            try:
                c = Conn(port)
                c.send(data)
                res.append(c.drain(quiet=quiet, maxtime=maxtime))
                c.close()
            except OSError as e:
                res.append((b"<oserror %s>" % str(e).encode(), True))
        label = "raw: " + (label or label_of(data))
        ok = res[0] == res[1]
        if VERBOSE:
            print("  [%s] %s\n      M: %r\n      C: %r" % (self.group, label, res[0], res[1]))
        self.check(label, ok, repr(res[0]).encode(), repr(res[1]).encode(), "(reply bytes, closed?)")
        self.after = label


def flush_all():
    for port in (MC_PORT, RC_PORT):
        c = Conn(port)
        c.request(b"flush_all\r\n")
        c.close()


GROUPS = []


def group(fn):
    """Register a test group; its name is the function name without the g_ prefix."""
    fn.group_name = fn.__name__[2:] if fn.__name__.startswith("g_") else fn.__name__
    GROUPS.append(fn)
    return fn


def b(x):
    return x.encode("latin-1") if isinstance(x, str) else x


def st(cmd, key, flags, exptime, data, extra=""):
    """A storage request: `<cmd> <key> <flags> <exptime> <len>[ extra]\\r\\n<data>\\r\\n`."""
    data = b(data)
    return b"%s %s %s %s %d%s\r\n%s\r\n" % (b(cmd), b(key), b(str(flags)), b(str(exptime)),
                                            len(data), b((" " + extra) if extra else ""), data)


def seq(p, reqs):
    """Run a list of requests; each is bytes/str (a line ended with \\r\\n is added when it
    has none), or (request, mode)."""
    for item in reqs:
        mode = "exact"
        if isinstance(item, tuple):
            item, mode = item
        data = b(item)
        if not data.endswith(b"\n"):
            data += b"\r\n"
        p.run(data, mode)


def gets_cas(raw):
    """The CAS of the first VALUE line of a gets reply, or None."""
    m = re.match(rb"VALUE \S+ \d+ \d+ (\d+)\r\n", raw)
    return int(m.group(1)) if m else None


def meta_cas(raw):
    m = re.search(rb"^(?:VA \d+|HD)[^\r\n]* c(\d+)", raw)
    return int(m.group(1)) if m else None


def meta_ttl(raw):
    m = re.search(rb"^(?:VA \d+|HD)[^\r\n]* t(-?\d+)", raw)
    return int(m.group(1)) if m else None


K250 = "k" * 250
K251 = "k" * 251


# ---------------------------------------------------------------------------
# test groups
# ---------------------------------------------------------------------------

@group
def g_retrieval(p):
    seq(p, [
        "get nokey", "get a b c", "gets nokey", "bget nokey",
        st("set", "a", 0, 0, "1"), st("set", "b", 7, 0, "two"), st("set", "e", 0, 0, ""),
        "get a", "get a b", "get b a nokey a", "get e", "get nokey a", "bget a b",
        ("gets a", "cas"), ("gets a b nokey", "cas"), ("gets b b", "cas"),
        "gat 0 a", "gat 100 a b nokey", ("gats 100 a b", "cas"), "gat 100 nokey",
        "gat 0", "gats 0", "gat", "gats", "gat abc a", "gat 1.5 a", "gat -1 nokey",
        "get", "gets", "get  a", "get a  b", "get a ", "get\ta",
        "get " + K250, "get " + K251, "get a " + K251, "gets " + K251, "gat 0 " + K251,
        "get " + " ".join("key%d" % i for i in range(100)),
    ])
    # gat with a negative exptime touches the item into the past
    seq(p, [st("set", "g", 0, 0, "v"), "gat -1 g", "get g"])


@group
def g_storage(p):
    seq(p, [
        st("set", "a", 0, 0, "hello"), "get a",
        st("set", "a", 123, 0, "again"), "get a",
        st("add", "a", 0, 0, "x"), st("add", "n", 5, 0, "new"), "get n",
        st("replace", "a", 9, 0, "rep"), "get a", st("replace", "nokey", 0, 0, "x"), "get nokey",
        st("append", "a", 77, 0, "_app"), "get a", st("prepend", "a", 88, 0, "pre_"), "get a",
        st("append", "nokey", 0, 0, "x"), st("prepend", "nokey", 0, 0, "x"), "get nokey",
        st("append", "a", 0, 0, ""), st("prepend", "a", 0, 0, ""), "get a",
        st("set", "bin", 0, 0, "\x00\x01\r\n\xff MN\r\nEND\r\n"), "get bin",
        st("set", "e", 0, 0, ""), "get e", st("append", "e", 0, 0, "x"), "get e",
        # flags
        st("set", "f", 4294967295, 0, "x"), "get f", st("set", "f", 4294967296, 0, "x"), "get f",
        st("set", "f", -1, 0, "x"), st("set", "f", "abc", 0, "x"), st("set", "f", "1x", 0, "x"),
        st("set", "f", "01", 0, "x"), "get f", st("set", "f", "+5", 0, "x"), "get f",
        # the line's shape
        "set a 0 0\r\n", "set a 0\r\n", "set a\r\n", "set\r\n",
        "set a 0 0 1 noreply extra\r\nx\r\n", "set  a  0  0  1\r\nx\r\n", "get a",
        "set a 0 0 abc\r\n", "set a 0 0 -1\r\n", "set a 0 0 1x\r\n",
        "set a 0 abc 1\r\nx\r\n", "set a 0 1.5 1\r\nx\r\n", "get a",
        "set a 0 0 1 norepl\r\nx\r\n", "get a",
        st("set", "a", 0, 0, "plain") + b"get a\r\n",
        st("SET", "a", 0, 0, "x"),
        "cas a 0 0 1\r\nx\r\n",
    ])
    # many storage requests in one write
    p.run(b"".join(st("set", "p%d" % i, i, 0, "v%d" % i) for i in range(20))
          + b"get " + b" ".join(b"p%d" % i for i in range(20)) + b"\r\n")


@group
def g_cas(p):
    seq(p, [
        st("set", "k", 5, 0, "v1"),
        ("gets k", "cas"),
        st("cas", "nokey", 0, 0, "x", "1"),
        st("cas", "k", 0, 0, "x", "abc"), st("cas", "k", 0, 0, "x", "-1"),
        st("cas", "k", 0, 0, "x", ""), "cas k 0 0 1 1 noreply extra\r\nx\r\n",
    ])
    # the CAS rules, on each server with its own numbers
    cas = [None, None]
    mr, cr = p.run(b"gets k\r\n", "cas")
    cas[0], cas[1] = gets_cas(mr), gets_cas(cr)
    p.check("gets returns a cas", cas[0] is not None and cas[1] is not None, mr, cr)
    if None in cas:
        return
    p.run(lambda i: st("cas", "k", 9, 0, "v2", str(cas[i])), label="cas k 9 0 2 <cas from gets>\\r\\nv2\\r\\n")
    p.run(b"get k\r\n")
    p.run(lambda i: st("cas", "k", 0, 0, "v3", str(cas[i])), label="cas k 0 0 2 <stale cas>\\r\\nv3\\r\\n")
    p.run(b"get k\r\n")
    mr, cr = p.run(b"gets k\r\n", "cas")
    new = [gets_cas(mr), gets_cas(cr)]
    p.check("cas changes after a successful cas", new[0] != cas[0] and new[1] != cas[1],
            repr((cas[0], new[0])).encode(), repr((cas[1], new[1])).encode())
    # the CAS each write produces, compared as "changed or not" on both servers
    steps = [
        ("append", st("append", "k", 0, 0, "x")),
        ("prepend", st("prepend", "k", 0, 0, "x")),
        ("touch", b"touch k 100\r\n"),
        ("gat", b"gat 100 k\r\n"),
        ("get", b"get k\r\n"),
        ("set same value", st("set", "k", 0, 0, "v2xx")),
        ("mg", b"mg k v\r\n"),
    ]
    prev = new
    for name, data in steps:
        p.run(data, "cas")
        mr, cr = p.run(b"gets k\r\n", "cas")
        cur = [gets_cas(mr), gets_cas(cr)]
        p.check("cas changed by %s" % name, (cur[0] != prev[0]) == (cur[1] != prev[1]),
                repr((prev[0], cur[0])).encode(), repr((prev[1], cur[1])).encode())
        prev = cur
    p.run(st("set", "c", 0, 0, "5"))
    mr, cr = p.run(b"gets c\r\n", "cas")
    before = [gets_cas(mr), gets_cas(cr)]
    p.run(b"incr c 1\r\n")
    mr, cr = p.run(b"gets c\r\n", "cas")
    after = [gets_cas(mr), gets_cas(cr)]
    p.check("cas changed by incr", (before[0] != after[0]) == (before[1] != after[1]),
            repr(before[0:1] + after[0:1]).encode(), repr(before[1:] + after[1:]).encode())
    p.run(lambda i: st("cas", "c", 0, 0, "9", str(before[i])), label="cas c 0 0 1 <cas before incr>\\r\\n9\\r\\n")
    p.run(lambda i: st("cas", "c", 0, 0, "9", str(after[i])), label="cas c 0 0 1 <cas after incr>\\r\\n9\\r\\n")
    p.run(b"get c\r\n")
    # a cas on a key deleted since
    p.run(b"delete c\r\n")
    p.run(lambda i: st("cas", "c", 0, 0, "9", str(after[i])), label="cas c 0 0 1 <cas of a deleted key>\\r\\n9\\r\\n")
    # noreply
    mr, cr = p.run(b"gets k\r\n", "cas")
    cas = [gets_cas(mr), gets_cas(cr)]
    p.run(lambda i: st("cas", "k", 0, 0, "nr", "%d noreply" % cas[i]), label="cas k 0 0 2 <cas> noreply\\r\\nnr\\r\\n")
    p.run(lambda i: st("cas", "k", 0, 0, "nr2", "%d noreply" % cas[i]), label="cas k 0 0 3 <stale cas> noreply\\r\\nnr2\\r\\n")
    p.run(b"get k\r\n")
    # meta: mg c and gets agree, ms C compares
    mr, cr = p.run(b"mg k c\r\n", "cas")
    mcas = [meta_cas(mr), meta_cas(cr)]
    mr, cr = p.run(b"gets k\r\n", "cas")
    gcas = [gets_cas(mr), gets_cas(cr)]
    p.check("mg c equals gets cas", (mcas[0] == gcas[0]) and (mcas[1] == gcas[1]),
            repr((mcas[0], gcas[0])).encode(), repr((mcas[1], gcas[1])).encode())
    p.run(lambda i: b"ms k 2 C%d c\r\nms\r\n" % gcas[i], "cas", label="ms k 2 C<cas> c\\r\\nms\\r\\n")
    mr, cr = p.run(lambda i: b"ms k 2 C%d\r\nm2\r\n" % gcas[i], label="ms k 2 C<stale cas>\\r\\nm2\\r\\n")
    p.run(lambda i: b"md k C%d\r\n" % gcas[i], label="md k C<stale cas>\\r\\n")
    mr, cr = p.run(b"mg k c v\r\n", "cas")
    mcas = [meta_cas(mr), meta_cas(cr)]
    p.run(lambda i: b"ma k C%d\r\n" % mcas[i], label="ma k C<cas> (non-numeric)\\r\\n")
    p.run(lambda i: b"md k C%d q\r\n" % mcas[i], label="md k C<cas> q\\r\\n")
    p.run(b"mg k v\r\n")


@group
def g_exptime(p):
    now = int(time.time())
    seq(p, [
        st("set", "never", 0, 0, "x"), ("mg never t v", "ttl"),
        st("set", "rel", 0, 100, "x"), ("mg rel t", "ttl"),
        st("set", "neg", 0, -1, "x"), "get neg",
        st("set", "neg", 0, 0, "x"), st("set", "neg", 0, -1, "y"), "get neg",
        st("set", "neg2", 0, -100000, "x"), "get neg2",
        st("add", "neg", 0, -1, "z"), "get neg",
        st("set", "d30", 0, 2592000, "x"), ("mg d30 t", "ttl"),
        st("set", "d30p", 0, 2592001, "x"), "get d30p",
        st("set", "big", 0, 2147483647, "x"), ("mg big v", "exact"),
        st("set", "ovf", 0, 2147483648, "x"), "get ovf",
        st("set", "ovf2", 0, 99999999999, "x"), "get ovf2",
    ])
    p.run(st("set", "absf", 0, now + 100, "x"), label="set absf 0 <now+100> 1\\r\\nx\\r\\n")
    p.run(b"mg absf t v\r\n", "ttl2")
    p.run(st("set", "absp", 0, now - 100, "x"), label="set absp 0 <now-100> 1\\r\\nx\\r\\n")
    p.run(b"get absp\r\n")
    p.run(st("set", "absp", 0, 2592001 + 1, "x"), label="set absp 0 <1970+30d> 1\\r\\nx\\r\\n")
    p.run(b"get absp\r\n")
    # append/prepend keep the item's exptime, whatever the request says
    seq(p, [
        st("set", "ap", 0, 100, "x"), st("append", "ap", 0, 0, "y"), ("mg ap t v", "ttl"),
        st("append", "ap", 0, -1, "z"), ("mg ap t v", "ttl"),
        st("prepend", "ap", 0, 5000, "w"), ("mg ap t v", "ttl"),
        st("replace", "ap", 0, -1, "r"), "get ap",
        # touch
        st("set", "t", 0, 0, "x"), "touch t 100", ("mg t t", "ttl"), "touch t 0", ("mg t t", "ttl"),
        "touch nokey 10", "touch t -1", "get t",
        st("set", "t", 0, 0, "x"), "touch t 2592001", "get t",
        st("set", "t", 0, 0, "x"), "touch t abc", "touch t", "touch", "touch t 1 2",
        "touch t 1.5", "touch " + K251 + " 10", ("mg t t", "ttl"),
        # gat/gats change the TTL too
        ("gat 200 t", "exact"), ("mg t t", "ttl"), ("gats 0 t", "cas"), ("mg t t", "ttl"),
    ])
    # items do expire
    seq(p, [st("set", "short", 0, 1, "x"), st("set", "short2", 0, 2, "x"), "get short short2",
            "touch short2 1", ("mg short2 t", "ttl")])
    time.sleep(2.2)
    seq(p, ["get short short2", "touch short 10", st("add", "short", 0, 0, "again"), "get short",
            st("replace", "short2", 0, 0, "x"), st("append", "short2", 0, 0, "x"),
            "incr short2 1", "mg short2 v", "md short2"])


@group
def g_noreply(p):
    seq(p, [
        st("set", "a", 0, 0, "1", "noreply"), "get a",
        st("add", "a", 0, 0, "2", "noreply"), st("add", "b", 0, 0, "2", "noreply"), "get a b",
        st("replace", "a", 0, 0, "3", "noreply"), st("replace", "nokey", 0, 0, "3", "noreply"),
        st("append", "a", 0, 0, "4", "noreply"), st("prepend", "a", 0, 0, "5", "noreply"),
        st("append", "nokey", 0, 0, "4", "noreply"), "get a nokey",
        st("cas", "a", 0, 0, "6", "1 noreply"), st("cas", "nokey", 0, 0, "6", "1 noreply"),
        "incr b 5 noreply", "get b", "decr b 1 noreply", "get b", "incr nokey 1 noreply",
        "incr a 1 noreply", "incr b abc noreply", "decr b -1 noreply",
        "touch a 100 noreply", "touch nokey 100 noreply", ("mg a t", "ttl"),
        "delete a noreply", "delete a noreply", "delete b 0 noreply", "get a b",
        "verbosity 1 noreply", "verbosity noreply", "verbosity abc noreply",
        "flush_all noreply", "flush_all 0 noreply", "flush_all abc noreply",
        # errors under noreply
        st("set", "x", "abc", 0, "1", "noreply"), st("set", "x", 0, "abc", "1", "noreply"),
        "set x 0 0 abc noreply\r\n", "set x 0 0 -1 noreply\r\n",
        st("set", K251, 0, 0, "1", "noreply"),
        "set x 0 0 1 noreply\r\nab\r\n",
        "delete " + K251 + " noreply", "incr " + K251 + " 1 noreply", "touch " + K251 + " 1 noreply",
        "touch x abc noreply", "delete x 1 noreply", "delete x 0 0 noreply",
        "get x noreply", "gets x noreply", ("version noreply", "version"), "stats noreply",
        "foo noreply", "noreply",
        st("set", "x", 0, 0, "ok"), "get x",
    ])


@group
def g_delete(p):
    seq(p, [
        st("set", "a", 0, 0, "1"), "delete a", "delete a", "get a",
        st("set", "a", 0, 0, "1"), "delete a 0", "get a",
        st("set", "a", 0, 0, "1"), "delete a 1", "delete a 0 1", "delete a x", "delete a 0 noreply",
        "get a", "delete", "delete a b c d", "delete " + K251, "delete " + K250,
        "delete a noreply extra", "delete a 00",
    ])


@group
def g_incr_decr(p):
    seq(p, [
        "incr nokey 1", "decr nokey 1",
        st("set", "n", 5, 0, "10"), "incr n 1", "get n", "incr n 0", "decr n 1", "get n",
        "decr n 1", "get n", "decr n 100", "get n", "decr n 1", "incr n 18446744073709551615",
        "get n", st("set", "n", 0, 0, "18446744073709551615"), "incr n 1", "get n",
        st("set", "n", 0, 0, "18446744073709551614"), "incr n 3", "get n",
        st("set", "n", 0, 0, "18446744073709551615"), "decr n 18446744073709551615", "get n",
        st("set", "n", 0, 0, "1"), "incr n 18446744073709551616", "incr n -1", "decr n -1",
        "incr n abc", "incr n 1x", "incr n +1", "incr n 01", "incr n ''", "incr n 1.5",
        "incr n 99999999999999999999999", "incr n", "incr", "incr n 1 2", "incr n 1 noreply x",
        "get n",
        st("set", "s", 0, 0, "abc"), "incr s 1", "decr s 1",
        st("set", "s", 0, 0, "-1"), "incr s 1",
        st("set", "s", 0, 0, "1a"), "incr s 1",
        st("set", "s", 0, 0, " 7"), "incr s 1", "get s",
        st("set", "s", 0, 0, "7 "), "incr s 1", "get s",
        st("set", "s", 0, 0, "7\r\n"), "incr s 1", "get s",
        st("set", "s", 0, 0, ""), "incr s 1",
        st("set", "s", 0, 0, "18446744073709551616"), "incr s 1",
        st("set", "s", 0, 0, "00042"), "incr s 1", "get s",
        st("set", "s", 0, 0, "+5"), "incr s 1",
        st("set", "s", 0, 0, "1" * 30), "incr s 1",
        # flags and TTL survive
        st("set", "f", 42, 100, "9"), "incr f 1", "get f", ("mg f t f", "ttl"),
        "incr " + K251 + " 1", "decr " + K250 + " 1",
        st("append", "f", 0, 0, "0"), "incr f 1", "get f",
    ])


@group
def g_flush_all(p):
    seq(p, [
        st("set", "a", 0, 0, "1"), "flush_all", "get a", "flush_all 0", "flush_all -1",
        "flush_all abc", "flush_all 1 2", "flush_all 0 noreply x", "flush_all noreply",
        "flush_all 1.5", "flush_all 0 0",
        st("set", "a", 0, 0, "1"), "flush_all -5", "get a", "FLUSH_ALL",
    ])
    # a delayed flush: the key survives until the delay passes (memcached's clock ticks in
    # whole seconds, so its flush lands between delay-1 and delay seconds)
    seq(p, [st("set", "d", 0, 0, "1"), "flush_all 3", "get d"])
    time.sleep(0.5)
    seq(p, ["get d", st("set", "d2", 0, 0, "2"), "get d2"])
    time.sleep(3.3)
    seq(p, ["get d d2", st("set", "d3", 0, 0, "3"), "get d3"])
    # a delayed flush cancelled by flush_all 0
    seq(p, ["flush_all 2", "flush_all 0", st("set", "d4", 0, 0, "4")])
    time.sleep(2.3)
    seq(p, ["get d4"])


@group
def g_misc(p):
    seq(p, [
        ("version", "version"), ("version x", "version"),
        "verbosity 1", "verbosity 0", "verbosity", "verbosity abc", "verbosity 1 2 3",
        "verbosity -1", "verbosity 1 x",
        "", "\r\n", " ", "foo", "GET a", "Get a", "gets", "get_multi a", "foo bar baz",
        "\x00", "\x01\x02", "set", "incr", "decr", "touch", "mg", "ms", "md", "ma", "mn x",
        "me a", "slabs reassign 1 2", "lru_crawler", "shutdown", "extstore x",
        "x" * 1000,
    ])
    # a bare \n ends a line too
    p.run(b"get a\nversion\n", "version")
    p.run(st("set", "lf", 0, 0, "1") + b"get lf\n")
    p.run(b"set lf2 0 0 1\nx\r\nget lf2\r\n")


@group
def g_stats(p):
    seq(p, [("stats", "stats"), ("stats settings", "stats"), "stats bogus", "stats items",
            "stats slabs", "stats sizes", "stats conns", "stats detail dump", "stats reset",
            "stats detail on", "stats detail off", "stats cachedump 1 1", "stats extstore",
            "STATS"])
    mr, cr = p.run(b"stats\r\n", "stats")
    ms, cs = stats_dict(mr), stats_dict(cr)
    for k in sorted(cs):
        p.check("stats field %s" % k, k in ms, mr, cr, "field only in ringcache")
    core = ["pid", "uptime", "time", "version", "pointer_size", "curr_connections",
            "total_connections", "rejected_connections", "cmd_get", "cmd_set", "cmd_flush",
            "cmd_touch", "get_hits", "get_misses", "get_expired", "delete_misses", "delete_hits",
            "incr_misses", "incr_hits", "decr_misses", "decr_hits", "cas_misses", "cas_hits",
            "cas_badval", "touch_hits", "touch_misses", "bytes_read", "bytes_written",
            "limit_maxbytes", "threads", "bytes", "curr_items", "total_items", "evictions",
            "reclaimed"]
    for k in core:
        p.check("stats field %s" % k, k in cs, mr, cr, "field missing in ringcache")
    rest = sorted(k for k in ms if k not in cs and k not in core)
    p.check("stats: fields only in memcached", not rest, ", ".join(rest).encode(), b"")
    for k in ("pointer_size", "limit_maxbytes"):
        p.check("stats value of %s" % k, ms.get(k) == cs.get(k), repr(ms.get(k)).encode(),
                repr(cs.get(k)).encode())
    p.check("stats time is now", all(abs(int(d.get("time", 0)) - time.time()) <= 2 for d in (ms, cs)),
            repr(ms.get("time")).encode(), repr(cs.get("time")).encode())
    p.check("stats pid is the process", cs.get("pid", "").isdigit() and ms.get("pid", "").isdigit(),
            repr(ms.get("pid")).encode(), repr(cs.get("pid")).encode())
    # stats settings: the fields ringcache reports exist in memcached and mean the same
    mr, cr = p.run(b"stats settings\r\n", "stats")
    ms, cs = stats_dict(mr), stats_dict(cr)
    for k in sorted(cs):
        p.check("stats settings field %s" % k, k in ms, mr, cr, "field only in ringcache")
    for k in ("maxbytes", "item_size_max", "evictions", "cas_enabled", "tcpport"):
        if k == "tcpport":
            ok = ms.get(k) == str(MC_PORT) and cs.get(k) == str(RC_PORT)
        else:
            ok = ms.get(k) == cs.get(k)
        p.check("stats settings value of %s" % k, ok, repr(ms.get(k)).encode(), repr(cs.get(k)).encode())
    # counters: the same requests move them by the same amounts
    mr, cr = p.run(b"stats\r\n", "stats")
    before = (stats_dict(mr), stats_dict(cr))
    seq(p, [
        st("set", "a", 0, 0, "1"), st("set", "b", 0, 0, "x"), "get a nokey b", ("gets a", "cas"),
        "get nokey", st("add", "a", 0, 0, "1"), st("cas", "nokey", 0, 0, "1", "5"),
        st("cas", "a", 0, 0, "1", "1"), "delete nokey", "delete b", "incr a 1", "incr nokey 1",
        "decr a 1", "decr nokey 1", "touch a 10", "touch nokey 10", "gat 10 a nokey",
        "incr a x", "mg a v", "mg nokey v", "ms c 1\r\n1", "md c", "md nokey", "ma a", "ma nokey",
        "flush_all 0",
    ])
    mr, cr = p.run(b"stats\r\n", "stats")
    after = (stats_dict(mr), stats_dict(cr))
    for k in ("cmd_get", "cmd_set", "cmd_flush", "cmd_touch", "get_hits", "get_misses",
              "delete_misses", "delete_hits", "incr_misses", "incr_hits", "decr_misses",
              "decr_hits", "cas_misses", "cas_hits", "cas_badval", "touch_hits", "touch_misses"):
        d = []
        for side in (0, 1):
            try:
                d.append(int(after[side][k]) - int(before[side][k]))
            except (KeyError, ValueError):
                d.append(None)
        p.check("stats delta of %s" % k, d[0] == d[1], repr(d[0]).encode(), repr(d[1]).encode())
    # curr_connections counts a new connection (connections of earlier groups may still be
    # closing on the server side: try again a few times)
    for attempt in range(4):
        d = [None, None]
        for i, (port, conn) in enumerate(((MC_PORT, p.m), (RC_PORT, p.c))):
            one = stats_dict(conn.request(b"stats\r\n"))
            extra = Conn(port)
            try:
                extra.request(b"version\r\n")  # the server has taken the connection in
                two = stats_dict(conn.request(b"stats\r\n"))
            finally:
                extra.close()
            d[i] = int(two.get("curr_connections", 0)) - int(one.get("curr_connections", 0))
        if d[0] == d[1] == 1:
            break
        time.sleep(0.3)
    p.check("stats curr_connections counts a new connection", d[0] == d[1] == 1,
            repr(d[0]).encode(), repr(d[1]).encode())


def stats_dict(raw):
    out = {}
    for line in raw.split(b"\r\n"):
        parts = line.split(b" ", 2)
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode("latin-1")] = parts[2].decode("latin-1")
    return out


@group
def g_quit(p):
    p.close()
    p.raw_exchange(b"quit\r\n")
    p.raw_exchange(b"get a\r\nquit\r\nget a\r\n")
    p.raw_exchange(b"quit extra args\r\n")
    p.raw_exchange(b"QUIT\r\n")
    p.raw_exchange(st("set", "q", 0, 0, "1", "noreply") + b"quit\r\n")
    p.connect()
    p.run(b"get q\r\n")


@group
def g_keys(p):
    seq(p, [
        st("set", K250, 0, 0, "ok"), "get " + K250, ("gets " + K250, "cas"), "delete " + K250,
        st("set", K251, 0, 0, "no"), "get " + K251,
        st("add", K251, 0, 0, "no"), st("cas", K251, 0, 0, "no", "1"),
        "mg " + K250 + " v", "mg " + K251 + " v", "ms " + K251 + " 1\r\nx", "md " + K251,
        "ma " + K251, "ms " + K250 + " 2\r\nok", "mg " + K250 + " v k",
        # bytes a key may hold
        st("set", "a\x01b", 0, 0, "ctl"), "get a\x01b", "delete a\x01b",
        st("set", "a\x7fb", 0, 0, "del"), "get a\x7fb",
        st("set", "a\tb", 0, 0, "tab"), "get a\tb",
        st("set", "a\x00b", 0, 0, "nul"), "get a\x00b",
        st("set", "\xc3\xa9t\xc3\xa9", 0, 0, "utf8"), "get \xc3\xa9t\xc3\xa9",
        st("set", "\xff\xfe", 0, 0, "hi"), "get \xff\xfe",
        st("set", "a\rb", 0, 0, "cr"), "get a\rb",
        "mg a\x01b v", "get ok a\x01b",
    ])


@group
def g_too_large(p):
    mb = 1024 * 1024
    seq(p, [
        st("set", "big", 0, 0, "old"),
        st("set", "big", 0, 0, "x" * (mb + 1)), "get big",
        st("set", "big", 0, 0, "old"),
        st("set", "big", 0, 0, "x" * (2 * mb), "noreply"), "get big",
        st("set", "ok", 0, 0, "y" * (mb - 512)), ("mg ok s", "exact"),
        st("set", "edge", 0, 0, "z" * mb), ("mg edge s", "exact"),
        st("set", "add", 0, 0, "old"), st("add", "add", 0, 0, "x" * (mb + 1)), "get add",
        st("replace", "add", 0, 0, "x" * (mb + 1)), "get add",
        st("append", "add", 0, 0, "x" * (mb + 1)), "get add",
        st("cas", "add", 0, 0, "x" * (mb + 1), "1"), "get add",
        "ms add %d\r\n%s" % (mb + 1, "x" * (mb + 1)), "mg add v",
        "ms add %d MA\r\n%s" % (mb + 1, "x" * (mb + 1)), "mg add v",
        "ms add %d q\r\n%s" % (mb + 1, "x" * (mb + 1)), "mg add v",
    ])
    # append that grows a value past the limit
    seq(p, [st("set", "grow", 0, 0, "g" * (mb - 1024)), st("append", "grow", 0, 0, "h" * 2048),
            ("mg grow s", "exact"), "ms grow 2048 MA\r\n" + "h" * 2048, ("mg grow s", "exact")])
    # a huge declared length is refused and its data swallowed as it arrives
    p.close()
    p.raw_exchange(b"set huge 0 0 2147483645\r\nget a\r\n", label="set huge 0 0 2147483645 + get a")
    p.raw_exchange(b"set huge 0 0 2147483646\r\nget a\r\n", label="set huge 0 0 2147483646 + get a")
    p.raw_exchange(b"set huge 0 0 4294967296\r\nget a\r\n", label="set huge 0 0 4294967296 + get a")
    p.connect()


@group
def g_bad_data(p):
    seq(p, [
        st("set", "k", 0, 0, "old"),
        "set k 0 0 3\r\nabcd\r\n", "get k",
        "set k 0 0 3\r\nab\r\n\r\n", "get k",
        "set k 0 0 3 noreply\r\nabcde\r\n", "get k",
        "set k 0 0 3\r\nabc\n\n", "get k",
        "set k 0 0 3\r\nabcXY", "get k",
        "ms k 3\r\nabcd\r\n", "get k",
        "ms k 3 q\r\nabcd\r\n", "get k",
        "append k 0 0 1\r\nxy\r\n", "get k",
        "cas k 0 0 1 1\r\nxy\r\n", "get k",
        "ms k 0\r\n\r\n", "get k",
    ])
    # a short block leaves the server waiting for the rest
    p.close()
    p.raw_exchange(b"set k 0 0 10\r\nabc\r\n", quiet=0.5)
    p.raw_exchange(b"set k 0 0 5\r\nab", quiet=0.5)
    p.raw_exchange(b"set k 0 0 1\r\nxyz", quiet=0.5)
    p.connect()
    p.run(b"get k\r\n")


@group
def g_meta_get(p):
    seq(p, [
        "mg nokey", "mg nokey v", "mg nokey v q", "mg nokey k", "mg nokey k Oabc v",
        "mg nokey s t c f", "mg nokey q k", "mg nokey Oabc q",
        st("set", "k", 33, 0, "hello"), st("set", "t", 0, 100, "ttl"),
        "mg k", "mg k v", "mg k f", "mg k s", "mg k t", ("mg k c", "cas"), "mg k k",
        "mg k Oxyz", "mg k q", "mg k v q", "mg k k v Oop f s", ("mg k v c f k s t Oab", "cas"),
        ("mg k Oab k s f v t c", "cas"), ("mg t t v", "ttl"),
        "mg k O", "mg k O123456789012345678901234567890", "mg k O1234567890123456789012345678901",
        "mg k h", "mg k l", "mg k h l t", "mg k u", "mg k E5",
        "mg k !", "mg k v v", "mg k 1", "mg k vv", "mg k -", "mg k v\x01",
        "mg k v f k s t c O1 h l u q", "mg k v f k s t c O1 q T100 N1 R1", "mg k x", "mg k S5",
        "mg k T30 t", ("mg k t", "ttl"), "mg k T0 t", "mg k T-1", "mg k", "get k",
        st("set", "k", 33, 0, "hello"), "mg k T-1 t", "mg k v",
        st("set", "k", 33, 0, "hello"), "mg k Tabc",
        "mg k T", "mg k N", "mg k R", "mg k Rabc", "mg k Nabc",
        "mg", "mg  k  v", "mg k v ",
        ("mg Zm9v b v k", "exact"), st("set", "foo", 0, 0, "bar"), ("mg Zm9v b v k", "exact"),
        "mg Zm9v b", "mg Zm9v b k s", "mg !!!! b v", "mg Zm9 b v", "mg Zg== b v k",
        "mg " + base64.b64encode(b"x" * 190).decode() + " b v",
        # quiet mode in a pipeline: only hits answer
        "mg k v q\r\nmg nokey v q\r\nmg foo v q k",
        "mg k q k\r\nmg nokey q k\r\nmg k q", "mg k q",
        # a key stored in base64 form, read back without b (and the other way round)
        "ms Zm9vYg== 2 b\r\nfb", "mg foob k v", "mg Zm9vYg== b k v", "md Zm9vYg== b q",
        st("set", "plain", 0, 0, "p"), "mg cGxhaW4= b k v",
    ])


@group
def g_meta_set(p):
    seq(p, [
        "ms k 2\r\nv1", "mg k v f t", "ms k 2 T100 F5\r\nv2", ("mg k v f t", "ttl"),
        ("ms k 2 c\r\nv3", "cas"), "ms k 2 k Oab\r\nv4", "ms k 2 q\r\nv5", "mg k v",
        "ms k 2 b\r\nv6", "ms Zm9v 2 b k\r\nv7", "get foo", "ms Zm9v 2 b q\r\nv8", "get foo",
        "ms k 2 T-1\r\nv9", "mg k v",
        "ms k 2 F4294967295\r\nva", "mg k f", "ms k 2 F4294967296\r\nvb", "ms k 2 F-1\r\nvc",
        "ms k 2 Fabc\r\nvd", "ms k 2 Tabc\r\nve", "ms k 2 Cabc\r\nvf", "ms k 2 T\r\nvg",
        "mg k v f",
        # modes
        "ms n 2 ME\r\nn1", "ms n 2 ME\r\nn2", "mg n v", "ms n 2 Me\r\nn3",
        "ms r 2 MR\r\nr1", "ms n 2 MR\r\nr2", "mg n v",
        "ms n 2 MA\r\nap", "ms n 2 MP\r\npp", "mg n v", "ms nokey 2 MA\r\nap",
        "ms nokey 2 MP\r\npp", "ms n 2 MS\r\nss", "mg n v", "ms n 2 Ms\r\nss",
        "ms n 2 MX\r\nxx", "ms n 2 M\r\nxx", "ms n 2 MSS\r\nxx", "ms n 2 MA T100 F9\r\naa",
        ("mg n v f t", "ttl"),
        "ms n 2 MS I\r\nii", "mg n v",
        "ms n 2 MA s\r\nas", "ms n 2 MP s t f k\r\nps", ("mg n s v", "exact"),
        "ms n 2 MA C1\r\nxx", "ms n 2 MP C1\r\nxx", "ms n 2 MR C1\r\nxx", "ms n 2 ME C1\r\nxx",
        "ms nokey 2 MA C1\r\nxx", "ms nokey 2 MR C1\r\nxx", "mg n v",
        # CAS compare
        "ms nokey 2 C1\r\nxx", "ms nokey 2 C1 ME\r\nxx", "mg nokey",
        "ms n 2 C1\r\nxx", "mg n v",
        # the line's shape
        "ms", "ms k", "ms k abc\r\nxx", "ms k -1\r\n", "ms k 2 !\r\nxx", "ms k 2 v v\r\nxx",
        "ms k 2 v\r\nxx", "ms k 2 h l u\r\nxx", "ms k 2 S2\r\nxx", "ms k 2 E5\r\nxx",
        "ms k 2 N30\r\nxx", "ms k 2 s t f\r\nxx", "mg k v",
        "ms k 0\r\n\r\n", "mg k v s",
        "ms k 2 Oabc q k\r\nzz", "ms " + K251 + " 2\r\nxx",
        "ms !!!! 2 b\r\nxx",
    ])


@group
def g_meta_delete(p):
    seq(p, [
        "md nokey", "md nokey q", "md nokey k Oab", "md nokey q Oab",
        st("set", "k", 0, 0, "v"), "md k", "get k",
        st("set", "k", 0, 0, "v"), "md k q", "get k",
        st("set", "k", 0, 0, "v"), "md k k Oab", "get k",
        st("set", "k", 0, 0, "v"), "md k C1", "md k C1 q", "get k",
        "md k Cabc", "md k x", "get k", st("set", "k", 0, 0, "v"), "md k !", "md k v", "get k",
        st("set", "k", 0, 0, "v"), "md k v v", "md", "md " + K251, "md k E5", "get k",
        "md Zm9v b", st("set", "foo", 0, 0, "bar"), "md Zm9v b k", "get foo",
        st("set", "k", 0, 0, "v"), "md k T30", ("mg k t v", "ttl"),
        "md k I", ("mg k v t c", "cas,ttl"), ("mg k v t c", "cas,ttl"),
        "md nokey I", "md k I T30", ("mg k v t", "ttl"), "md k I q", "mg k v",
        "md k", "get k", "md k q", "md k I q",
        st("set", "k", 0, 100, "v"), "md k I T-1", "mg k v", "get k",
        st("set", "k", 0, 100, "v"), "md k I T0", ("mg k v t", "ttl"),
    ])


@group
def g_meta_arith(p):
    seq(p, [
        "ma nokey", "ma nokey q", "ma nokey v", "ma nokey k Oab",
        "ma nokey N0", "mg nokey v", "ma nokey v", "ma nokey2 N0 J10 v", "ma nokey2 v",
        ("ma nokey3 N100 J5 v t", "ttl"), "ma nokey4 N0 J0 MD v", "ma nokey5 J9 v",
        st("set", "n", 7, 0, "10"), "ma n", "mg n v f", "ma n v", "ma n v D5", "ma n v MD D3",
        "ma n v M- D1", "ma n v M+ D1", "ma n v MI", "ma n v Md", "ma n v Mi",
        "ma n v MD D100", "ma n v MD", "ma n q", "ma n q v", "mg n v",
        ("ma n v c", "cas"), "ma n v t", ("ma n v T100 t", "ttl"), ("mg n t", "ttl"),
        "ma n v k Oxx", "ma n v f", "ma n v s", "ma n v O1 k",
        "ma n v D18446744073709551615", "ma n v D18446744073709551616", "ma n v D-1",
        "ma n v Dabc", "ma n v J5", "ma n v Jabc", "ma n v N", "ma n v MX", "ma n v M",
        "ma n v MII", "ma n C1", "ma n !", "ma n v v", "ma", "ma " + K251,
        st("set", "n", 0, 0, "18446744073709551615"), "ma n v", "mg n v",
        st("set", "s", 0, 0, "abc"), "ma s", "ma s v", "ma s q",
        st("set", "w", 0, 0, "10"), "ma w MD v", "mg w v", "get w",
        "ma Zm9v b N0 J3 v k", "get foo",
        st("set", "e", 0, 100, "5"), "ma e T-1 v", "mg e v", "get e",
        st("set", "e", 3, 100, "5"), ("ma e t v", "ttl"), "ma e q", "ma e q v", "ma e q k Oa",
        "mg e v f", "ma e E99 v", "ma nokey6 q N0", "mg nokey6 v",
    ])


@group
def g_meta_noop(p):
    seq(p, [
        "mn", "mn\r\nmn", "mg a v q\r\nmn",
        st("set", "a", 0, 0, "1"), "mg a v q\r\nmn\r\nmg a q",
        "ms b 1 q\r\nb\r\nmd b q\r\nma c q\r\nmn",
    ])


@group
def g_meta_stale(p):
    seq(p, [
        # invalidate: X with the value, W for the first fetch, Z for the later ones
        st("set", "k", 0, 0, "old"), "md k I T30", ("mg k v c t", "cas,ttl"),
        ("mg k v c t", "cas,ttl"), ("mg k v", "exact"), "mg k", "mg k q", "get k",
        ("gets k", "cas"), ("mg k s f k", "exact"),
        # a fresh write clears both
        "ms k 3\r\nnew", "mg k v", "mg k v",
        # invalidate again: set with older CAS and I lands stale
        "md k I", "mg k v", "md k I", "mg k v", "mg k v",
        # a plain set also clears it
        st("set", "k", 0, 0, "fresh"), "mg k v",
        # N: a miss creates an empty item and wins; the next get sees Z
        ("mg miss N30 v c t s f", "cas,ttl"), ("mg miss N30 v c t", "cas,ttl"),
        ("mg miss v", "exact"), "ms miss 3\r\nnew", "mg miss v N30",
        ("mg miss2 N30 t", "ttl"), ("mg miss2 N30 t", "ttl"), "get miss2",
        ("mg miss3 N30 q", "exact"), "mg miss3 v",
        # R: a TTL below the threshold wins a recache
        st("set", "r", 0, 10, "v"), ("mg r R30 v t", "ttl"), ("mg r R30 v t", "ttl"),
        ("mg r R5 v t", "ttl"), "mg r v", st("set", "r", 0, 100, "v"), ("mg r R30 v t", "ttl"),
        st("set", "r2", 0, 0, "v"), "mg r2 R30 v",
        # W/Z with N on a stale item, and md I on a won item
        st("set", "z", 0, 0, "v"), "md z I", "mg z N30 v", "mg z N30 v", "md z I", "mg z v",
        # ms with I and an older CAS stores the value marked stale
    ])
    mr, cr = p.run(b"mg z c\r\n", "cas")
    cas = [meta_cas(mr), meta_cas(cr)]
    if None not in cas:
        p.run(b"ms z 2\r\nz2\r\n")
        p.run(lambda i: b"ms z 2 I C%d\r\nz3\r\n" % cas[i], label="ms z 2 I C<older cas>\\r\\nz3\\r\\n")
        p.run(b"mg z v\r\n")
        p.run(b"mg z v\r\n")
        p.run(lambda i: b"ms z 2 I C%d\r\nz4\r\n" % (cas[i] + 10**12),
              label="ms z 2 I C<newer cas>\\r\\nz4\\r\\n")
        p.run(b"mg z v\r\n")


@group
def g_pipeline(p):
    # many mixed requests in one write, replies in order
    reqs = []
    for i in range(30):
        reqs.append(st("set", "k%d" % i, i, 0, "v%d" % i))
        reqs.append(b"get k%d nokey\r\n" % i)
        reqs.append(b"incr k%d 1\r\n" % i)
        reqs.append(b"mg k%d v f\r\n" % i)
        reqs.append(b"delete k%d\r\n" % i)
    p.run(b"".join(reqs), label="pipeline of 150 requests")


# ---------------------------------------------------------------------------
# pymemcache against ringcache only
# ---------------------------------------------------------------------------

class ClientChecks:
    """Assertions made through pymemcache; each counts as one check in the summary."""

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


def pymemcache_checks(pymemcache):
    from pymemcache.client.base import Client
    for noreply in (False, True):
        t = ClientChecks("pymemcache/noreply=%s" % noreply)
        c = Client((HOST, RC_PORT), connect_timeout=5, timeout=5, default_noreply=noreply)
        try:
            pymemcache_suite(t, c, noreply)
        except Exception as e:
            traceback.print_exc()
            t.check("<exception>", repr(e), "no exception")
        finally:
            c.close()


def pymemcache_suite(t, c, noreply):
    nr = noreply
    t.check("flush_all", c.flush_all(noreply=False), True)
    # with noreply the client can't know, and returns True
    t.check("set", c.set("k", b"v", noreply=nr), True)
    t.check("get", c.get("k"), b"v")
    t.check("get missing", c.get("missing"), None)
    t.check("set with expire and flags", c.set("f", b"x", expire=100, flags=7, noreply=nr), True)
    t.check("get flags (raw_command)", c.raw_command(b"get f", b"END\r\n"), b"VALUE f 7 1\r\nx\r\n")
    t.check("get_many", c.get_many(["k", "f", "missing"]), {"k": b"v", "f": b"x"})
    t.check("set_many", c.set_many({"m1": b"1", "m2": b"2"}, noreply=nr), [])
    t.check("get_many after set_many", c.get_many(["m1", "m2"]), {"m1": b"1", "m2": b"2"})
    t.check("add existing", c.add("k", b"x", noreply=nr), True if nr else False)
    t.check("add new", c.add("a", b"1", noreply=nr), True)
    t.check("replace existing", c.replace("a", b"2", noreply=nr), True)
    t.check("replace missing", c.replace("missing", b"x", noreply=nr), True if nr else False)
    t.check("append", c.append("a", b"3", noreply=nr), True)
    t.check("prepend", c.prepend("a", b"1", noreply=nr), True)
    t.check("get after append/prepend", c.get("a"), b"123")
    value, cas = c.gets("a")
    t.check("gets value", value, b"123")
    t.truthy("gets cas is a number", cas is not None and cas.isdigit(), repr(cas))
    t.check("gets missing", c.gets("missing"), (None, None))
    t.check("cas with the current cas", c.cas("a", b"new", cas, noreply=nr), True)
    t.check("get after cas", c.get("a"), b"new")
    t.check("cas with a stale cas", c.cas("a", b"newer", cas, noreply=nr), True if nr else False)
    t.check("get after stale cas", c.get("a"), b"new")
    t.check("cas missing", c.cas("missing", b"x", b"1", noreply=nr), True if nr else None)
    many = c.gets_many(["a", "k", "missing"])
    t.check("gets_many keys", sorted(many), ["a", "k"])
    t.check("set counter", c.set("n", b"10", noreply=nr), True)
    t.check("incr", c.incr("n", 5, noreply=nr), None if nr else 15)
    t.check("decr", c.decr("n", 3, noreply=nr), None if nr else 12)
    t.check("decr below zero", c.decr("n", 100, noreply=nr), None if nr else 0)
    t.check("incr missing", c.incr("missing", 1, noreply=nr), None)
    t.check("get counter", c.get("n"), b"0")
    t.check("touch", c.touch("k", 100, noreply=nr), True)
    t.check("touch missing", c.touch("missing", 100, noreply=nr), True if nr else False)
    t.check("delete", c.delete("k", noreply=nr), True)
    t.check("delete missing", c.delete("k", noreply=nr), True if nr else False)
    t.check("get deleted", c.get("k"), None)
    t.check("delete_many", c.delete_many(["m1", "m2", "missing"], noreply=nr), True)
    t.check("get_many after delete_many", c.get_many(["m1", "m2"]), {})
    t.check("set large", c.set("big", b"x" * 500000, noreply=nr), True)
    t.check("get large", c.get("big"), b"x" * 500000)
    t.check("set expired", c.set("gone", b"x", expire=-1, noreply=nr), True)
    t.check("get expired", c.get("gone"), None)
    t.truthy("version", bool(c.version()))
    stats = c.stats()
    t.truthy("stats has curr_items", b"curr_items" in stats or "curr_items" in stats, repr(list(stats)[:5]))
    t.check("flush_all", c.flush_all(noreply=nr), True)
    t.check("get after flush_all", c.get("a"), None)


# ---------------------------------------------------------------------------

def mc_version():
    c = Conn(MC_PORT)
    v = c.request(b"version\r\n")
    c.close()
    return v.strip().decode("latin-1")


def main():
    global MC_PORT, RC_PORT, VERBOSE, RESULTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-v", action="store_true", help="print every check")
    ap.add_argument("-k", default="", help="only run groups whose name contains this")
    ap.add_argument("--mc-port", type=int, default=MC_PORT)
    ap.add_argument("--rc-port", type=int, default=RC_PORT, help="ringcache's memcached port")
    ap.add_argument("--extra-known", action="append", default=[], metavar="FILE",
                    help="another allowlist file (repeatable)")
    ap.add_argument("--require-pymemcache", action="store_true")
    ap.add_argument("--no-pymemcache", action="store_true")
    a = ap.parse_args()
    MC_PORT, RC_PORT, VERBOSE = a.mc_port, a.rc_port, a.v

    if tomllib is None:
        print("error: reading the allowlist needs Python 3.11 (tomllib) or the tomli package")
        return 2
    try:
        known = load_known([DEFAULT_KNOWN] + a.extra_known)
    except (OSError, ValueError, tomllib.TOMLDecodeError, re.error) as e:
        print("error: bad allowlist: %s" % e)
        return 2
    try:
        version = mc_version()
        Conn(RC_PORT).close()
    except (OSError, Closed) as e:
        print("error: cannot reach the servers (memcached %d, ringcache %d): %s" % (MC_PORT, RC_PORT, e))
        return 2
    if not version.startswith("VERSION 1.6."):
        print("error: memcached 1.6 is needed as the reference, found %r" % version)
        return 2
    print("reference: memcached %s on port %d; ringcache's memcached port %d; %d allowlist entries"
          % (version.split()[-1], MC_PORT, RC_PORT, len(known)))

    RESULTS = Results(known)
    started = time.time()
    groups = [g for g in GROUPS if a.k in g.group_name]
    for g in groups:
        p = None
        try:
            flush_all()
            p = Pair(g.group_name)
            g(p)
        except Exception as e:  # a broken group is a failure; go on with the next one
            traceback.print_exc()
            RESULTS.mismatch(Mismatch(g.group_name, "<exception in test group>",
                                      p.after if p else None, b"", repr(e).encode()))
        finally:
            if p is not None:
                p.close()
    try:
        flush_all()
    except (OSError, Closed):
        pass
    diff_checks = RESULTS.total
    print("\ndifferential: %d groups, %d checks: %d matched, %d known differences, %d unexpected (%.0fs)"
          % (len(groups), diff_checks, RESULTS.matched, RESULTS.allowed, len(RESULTS.failures),
             time.time() - started))

    py_failed = 0
    if not a.no_pymemcache:
        try:
            import pymemcache
        except ImportError:
            pymemcache = None
        if pymemcache is None and a.require_pymemcache:
            print("pymemcache: the pymemcache package is not installed (pip install pymemcache)")
            py_failed = 1
        elif pymemcache is None:
            print("pymemcache: skipped, the pymemcache package is not installed")
        else:
            before = len(RESULTS.failures)
            pymemcache_checks(pymemcache)
            print("pymemcache %s: %d checks, %d failed" % (pymemcache.__version__, RESULTS.total - diff_checks,
                                                           len(RESULTS.failures) - before))

    undocumented = ["%s (%d)" % (e.id, e.hits) for e in known if e.hits and not e.documented]
    if undocumented:
        print("note: known differences not yet described in docs/memcached.md: " + ", ".join(undocumented))
    if not a.k:
        unused = [e.id for e in known if e.hits == 0]
        if unused:
            print("note: allowlist entries that matched nothing (fixed, or another memcached version?): "
                  + ", ".join(unused))
    if RESULTS.failures:
        print("\n%d unexpected mismatches (details above):" % len(RESULTS.failures))
        for m in RESULTS.failures:
            print("  [%s] %s%s" % (m.group, m.label, ("   (after: %s)" % m.after) if m.after else ""))
        print("Each is a regression, or a new deliberate difference to document in docs/memcached.md"
              "\nand add to tests/compat/known_differences_memcached.toml.")
    failed = len(RESULTS.failures) + py_failed
    print("%d passed, %d failed" % (RESULTS.matched + RESULTS.allowed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
