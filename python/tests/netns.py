"""Network namespaces for the bridge's end-to-end tests (test_bridge.py).

A Net is a set of network namespaces made for one test and removed after it, joined by
veth pairs with private addresses; nothing is added to the namespace the tests run in
(each veth pair is created inside its namespaces). Bridge runs a `shmstore bridge`
process inside a namespace and collects its --stats JSON lines. Everything here waits
for conditions with a deadline: nothing sleeps and hopes.
"""
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

SHMSTORE_BIN = os.environ.get("SHMSTORE_BIN", "/work/wt11/build/cli/shmstore")
# the C library next to the CLI's build (build/cli/shmstore -> build/libshmstore.so)
SHMSTORE_LIB = os.environ.get("SHMSTORE_LIB", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(SHMSTORE_BIN))), "libshmstore.so"))
PREFIX = "shb"  # every namespace and interface name of these tests starts with it


def why_not_usable():
    """None if namespaces can be made here, else the reason to skip."""
    if os.geteuid() != 0:
        return "the bridge's network tests need root (ip netns, veth pairs)"
    if shutil.which("ip") is None:
        return "the bridge's network tests need iproute2's `ip`"
    if not os.access(SHMSTORE_BIN, os.X_OK):
        return f"no shmstore CLI at {SHMSTORE_BIN} (set SHMSTORE_BIN)"
    r = subprocess.run([SHMSTORE_BIN, "bridge", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        return "this shmstore CLI has no bridge"
    return None


def run(*cmd, check=True, timeout=20):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def wait_for(cond, timeout, what, interval=0.01):
    """Poll cond() until it returns something true; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def remove_stale():
    """Delete namespaces of earlier runs of these tests whose process is gone."""
    r = run("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        digits = "".join(itertools.takewhile(str.isdigit, name[len(PREFIX):]))
        if digits and not os.path.exists(f"/proc/{int(digits)}"):
            run("ip", "netns", "del", name, check=False)


_serial = itertools.count()


class Net:
    """Namespaces ns[0..n) and links between them. Use as a context manager: __exit__
    stops every Bridge started through it and removes the namespaces."""

    def __init__(self, n):
        pid = os.getpid()
        self.tag = f"{PREFIX}{pid}_{next(_serial)}"  # shb<pid>_<serial>: names < 16 bytes
        # a 10.x.y.0/24 per link, x and y from the pid (addresses only exist inside the
        # test's namespaces anyway)
        self._x = 64 + (pid >> 8) % 128
        self._y = pid & 0xFF
        self.names = [f"{self.tag}{chr(ord('a') + i)}" for i in range(n)]
        self.links = []  # (ns_a, if_a, addr_a, ns_b, if_b, addr_b)
        self.bridges = []
        self.tmp = tempfile.mkdtemp(prefix=f"{self.tag}_")

    def __enter__(self):
        try:
            for ns in self.names:
                run("ip", "netns", "add", ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def link(self, a, b):
        """A veth pair between ns[a] and ns[b]; returns (addr in a, addr in b)."""
        k = len(self.links)
        na, nb = self.names[a], self.names[b]
        ia, ib = f"{self.tag}{k}a"[-15:], f"{self.tag}{k}b"[-15:]
        x, y = self._x + k, self._y
        aa, ab = f"10.{x}.{y}.1", f"10.{x}.{y}.2"
        run("ip", "-n", na, "link", "add", ia, "type", "veth", "peer", "name", ib, "netns", nb)
        run("ip", "-n", na, "addr", "add", f"{aa}/24", "dev", ia)
        run("ip", "-n", nb, "addr", "add", f"{ab}/24", "dev", ib)
        run("ip", "-n", na, "link", "set", ia, "up")
        run("ip", "-n", nb, "link", "set", ib, "up")
        self.links.append((na, ia, aa, nb, ib, ab))
        # wait until the pair carries traffic (the link comes up asynchronously)
        wait_for(lambda: run("ip", "netns", "exec", na, "ping", "-c1", "-W1", ab,
                             check=False).returncode == 0
                 if shutil.which("ping") else True, 10, f"{aa} -> {ab}")
        return aa, ab

    def set_link(self, k, up):
        """Bring both ends of link k down or up (the link cut and restored)."""
        na, ia, _, nb, ib, _ = self.links[k]
        state = "up" if up else "down"
        run("ip", "-n", na, "link", "set", ia, state)
        run("ip", "-n", nb, "link", "set", ib, state)

    def has_netem(self, k):
        """Whether tc netem works on link k (this kernel may lack the qdisc)."""
        if shutil.which("tc") is None:
            return False
        na, ia = self.links[k][0], self.links[k][1]
        r = run("ip", "netns", "exec", na, "tc", "qdisc", "add", "dev", ia, "root", "netem",
                "delay", "1ms", check=False)
        if r.returncode != 0:
            return False
        run("ip", "netns", "exec", na, "tc", "qdisc", "del", "dev", ia, "root", check=False)
        return True

    def netem(self, k, *args):
        na, ia = self.links[k][0], self.links[k][1]
        run("ip", "netns", "exec", na, "tc", "qdisc", "replace", "dev", ia, "root", "netem",
            *args)

    def bridge(self, ns, *args):
        """Start `shmstore bridge ARGS... --stats 0.1` inside namespace ns."""
        b = Bridge(self.names[ns], list(args), self.tmp)
        self.bridges.append(b)
        return b

    def keygen(self, name):
        path = os.path.join(self.tmp, name)
        run(SHMSTORE_BIN, "bridge", "keygen", path)
        return path, path + ".pub"

    def close(self):
        for b in self.bridges:
            b.kill()
        # the bridges' logs: pytest shows them only with a failure
        for b in self.bridges:
            print(f"--- {b.ns}: {' '.join(b.args)} (exit {b.proc.returncode})\n"
                  f"last stats {b.last}\n{b.log()}")
        for ns in self.names:
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Bridge:
    """One `shmstore bridge serve|mirror` process in a namespace. stdout's JSON stats
    lines are read by a thread (the latest in .last); stderr (-v) goes to a file."""

    _n = itertools.count()

    def __init__(self, ns, args, tmp):
        self.ns, self.args = ns, args
        self.log_path = os.path.join(tmp, f"bridge{next(self._n)}.log")
        self._log = open(self.log_path, "w")
        cmd = ["ip", "netns", "exec", ns, SHMSTORE_BIN, "bridge", *args, "--stats", "0.1", "-v"]
        # ip netns exec execs the program: the pid is the bridge's own
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     start_new_session=True)
        self.last = None
        self.lines = 0
        self._cv = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                st = json.loads(line)
            except ValueError:
                continue
            with self._cv:
                self.last = st
                self.lines += 1
                self._cv.notify_all()

    def stats(self, pred=lambda st: True, timeout=20, what="bridge stats"):
        """The first stats line from now on that satisfies pred (fresh: printed after
        this call), or AssertionError after timeout or when the process ends."""
        deadline = time.monotonic() + timeout
        with self._cv:
            seen = self.lines
            while True:
                if self.lines > seen and pred(self.last):
                    return self.last
                seen = self.lines
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and self.lines == seen):
                    raise AssertionError(f"{what}: not seen within {timeout} s (exit "
                                         f"{self.proc.poll()}); last {self.last}; log:\n"
                                         f"{self.log()}")
                self._cv.wait(min(left, 0.2))

    def log(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=20):
        rc = self.proc.wait(timeout)
        self._t.join(timeout)
        return rc

    def stop(self, timeout=20):
        """SIGTERM and wait: the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        """SIGKILL (if running) and reap."""
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._t.join(5)
        self._log.close()


# ---- the fuzzer (run inside a namespace: python3 netns.py fuzz HOST PORT SEED) -------------

WIRE_MAGIC = b"SHB1"  # bridge.c's WIRE_MAGIC, little-endian


def zmtp_greeting(mechanism=b"NULL", major=3):
    return (b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([major, 0]) + mechanism.ljust(20, b"\x00")
            + b"\x00" + b"\x00" * 31)


def zmtp_ready(socket_type=b"DEALER"):
    import struct
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return b"\x04" + bytes([len(body)]) + body


def _raw(host, port, data, read=False):
    import socket
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(0.3)
            s.sendall(data)
            if read:
                try:
                    s.recv(4096)
                except OSError:
                    pass
        return True
    except OSError:
        return False


def fuzz_main(host, port, seed):
    """Random bytes, greetings then garbage, and (with pyzmq) malformed bridge messages
    through a real DEALER. Prints what it sent."""
    import faulthandler
    import random
    import struct
    faulthandler.dump_traceback_later(60, exit=True)  # a hang says where, then ends
    rnd = random.Random(seed)
    port = int(port)
    sent = {"raw": 0, "zmtp": 0, "dealer": 0}
    for _ in range(150):  # random bytes
        n = rnd.choice([0, 1, 10, 64, 100, 1000, 10000])
        sent["raw"] += _raw(host, port, rnd.randbytes(n))
    for _ in range(100):  # a valid greeting (or a mangled one), then garbage
        g = bytearray(zmtp_greeting(rnd.choice([b"NULL", b"CURVE", b"PLAIN", b"XYZ"]),
                                    rnd.choice([3, 3, 2, 255])))
        if rnd.random() < 0.3:
            g[rnd.randrange(len(g))] = rnd.randrange(256)
        tail = rnd.choice([
            rnd.randbytes(rnd.randrange(1, 2000)),
            zmtp_ready() + rnd.randbytes(rnd.randrange(1, 500)),
            zmtp_ready(b"PUB") + rnd.randbytes(50),
            # READY, then frames with huge sizes and random flags
            zmtp_ready() + bytes([rnd.choice([0, 1, 2, 3, 4, 6, 0xff])]) + struct.pack(
                ">Q", rnd.choice([0, 1, 2 ** 63, 2 ** 64 - 1])) + rnd.randbytes(100),
            # READY, then a well-framed but malformed bridge message
            zmtp_ready() + b"\x00" + bytes([13]) + WIRE_MAGIC + b"\x02" + rnd.randbytes(8),
        ])
        sent["zmtp"] += _raw(host, port, bytes(g) + tail, read=True)
    try:
        import zmq
    except ImportError:
        print("fuzz:", sent, "(no pyzmq: no DEALER messages)")
        return 0
    ctx = zmq.Context()
    msgs = []
    for _ in range(300):
        msgs.append([rnd.randbytes(rnd.randrange(0, 300))])
    for _ in range(200):
        hdr = WIRE_MAGIC + bytes([rnd.choice([0, 1, 2, 3, 4, 255])]) + rnd.randbytes(8)
        msgs.append([hdr + rnd.randbytes(rnd.randrange(0, 100))])
    for _ in range(100):  # PINGs with bad globs and positions
        m = WIRE_MAGIC + b"\x02" + rnd.randbytes(8)
        m += struct.pack("<H", rnd.choice([1, 65, 65535]))
        m += struct.pack("<H", rnd.choice([3, 200, 65535])) + b"abc"
        m += struct.pack("<I", rnd.choice([0, 1, 2 ** 32 - 1])) + rnd.randbytes(20)
        msgs.append([m])
    for _ in range(50):  # ACKs from mirrors nobody knows; multipart messages
        msgs.append([WIRE_MAGIC + b"\x03" + rnd.randbytes(8) + rnd.randbytes(12)])
        msgs.append([WIRE_MAGIC + b"\x02" + rnd.randbytes(8), rnd.randbytes(30)])
    for i in range(0, len(msgs), 50):
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 2000)
        d.connect(f"tcp://{host}:{port}")
        for m in msgs[i:i + 50]:
            try:  # a DEALER with no peer (a CURVE server refused it) would block
                d.send_multipart(m, flags=zmq.NOBLOCK)
                sent["dealer"] += 1
            except zmq.Again:
                sent["dealer_refused"] = sent.get("dealer_refused", 0) + 1
        d.close()  # lingers until sent (or 2 s)
    ctx.term()
    print("fuzz:", sent)
    return 0


# ---- entries' attrs (python netns.py queue-attrs LIB STORE QUEUE KEY) ---------------------
# The Python API does not return a queue entry's attrs: this reads them through the C
# library with ctypes, in a process of its own (shmstore_close() would release the leases
# of the test process's own Store).

def queue_attrs_main(lib, store, queue, key):
    """Print a JSON list [index, int64 attr `key` or None, first int64 of the payload]
    of every entry in the queue, oldest first."""
    import ctypes as C
    import json as J
    import struct

    class Datum(C.Structure):
        _fields_ = [("type", C.c_uint32), ("ndim", C.c_uint32), ("dtype", C.c_char * 8),
                    ("shape", C.c_uint64 * 32), ("attrs", C.c_void_p), ("attrs_len", C.c_uint32)]

    class View(C.Structure):
        _fields_ = [("data", C.c_void_p), ("len", C.c_size_t), ("version", C.c_uint64),
                    ("mtime_ns", C.c_uint64), ("desc", Datum), ("store", C.c_void_p),
                    ("block_off", C.c_uint64)]

    L = C.CDLL(lib)
    s, q = C.c_void_p(), C.c_void_p()
    if L.shmstore_open(store.encode(), 0, None, C.byref(s)) != 0:
        raise SystemExit(f"can't open store {store}")
    if L.shmstore_queue_open(s, queue.encode(), 0, None, C.byref(q)) != 0:
        raise SystemExit(f"can't open queue {queue}")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import shmstore
    with shmstore.Store(store, create=False) as st:
        indices = st.queue(queue, create=False).indices()
    out = []
    for i in indices:
        v = View()
        if L.shmstore_queue_read(q, C.c_uint64(i), C.byref(v)) != 0:
            continue
        typ, val, vlen = C.c_uint32(), C.c_void_p(), C.c_uint32()
        attr = None
        if v.desc.attrs and L.shmstore_attrs_get(C.c_void_p(v.desc.attrs), v.desc.attrs_len,
                                                 key.encode(), C.byref(typ), C.byref(val),
                                                 C.byref(vlen)) == 0 and vlen.value == 8:
            attr = struct.unpack("<q", C.string_at(val.value, 8))[0]
        first = struct.unpack("<q", C.string_at(v.data, 8))[0] if v.len >= 8 else None
        out.append([i, attr, first])
        L.shmstore_view_release(C.byref(v))
    L.shmstore_queue_close(q)
    L.shmstore_close(s)
    print(J.dumps(out))
    return 0


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 5 and sys.argv[1] == "fuzz":
        sys.exit(fuzz_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    if len(sys.argv) == 6 and sys.argv[1] == "queue-attrs":
        sys.exit(queue_attrs_main(*sys.argv[2:]))
    sys.exit("usage: netns.py fuzz HOST PORT SEED | queue-attrs LIB STORE QUEUE KEY")
