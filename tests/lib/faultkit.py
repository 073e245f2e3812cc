"""Helpers for the fault-injection tests (tests/integration/test_faults.py).

    faultkit.rss_kib(pid)                  VmRSS of a process, KiB (None: gone)
    s = faultkit.RssSampler(pid, 0.05).start(); ...; s.stop(); s.max_kib
    faultkit.send_many(peer, msgs, conn)   send dicts/texts in one coroutine
                                           on the simulator's loop (waits
                                           through TCP backpressure); returns
                                           how many went out before the
                                           connection closed
    faultkit.replies_by_id(peer, ids)      {id: [raw reply text, ...]}
    faultkit.scale_puts(k8s)               Counter of successful
                                           PUT .../deployments/<name>/scale
    faultkit.percentile(values, p)

ws_sim.WsPeer runs its own asyncio loop; send_many schedules one coroutine
there (WsPeer._call) so 10,000 messages cost one cross-thread hop instead of
10,000, and a send stalled by TCP backpressure just waits (the per-message
send() of WsPeer gives up after 10 s).
"""
import collections
import json
import re
import threading
import time


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """Samples VmRSS of `pid` every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.samples = []           # (monotonic, kib)
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="rss-sampler")
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            v = rss_kib(self.pid)
            if v is not None:
                self.samples.append((time.monotonic(), v))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        return self

    @property
    def max_kib(self):
        return max((v for _, v in self.samples), default=0)

    @property
    def first_kib(self):
        return self.samples[0][1] if self.samples else 0


def send_many(peer, msgs, conn, timeout=300):
    """Send every message (dict -> JSON, str as is) on `conn` (a ws_sim
    Conn) in order, from one coroutine on the peer's loop. Returns the
    number sent before the connection closed."""
    import websockets

    texts = [m if isinstance(m, str) else json.dumps(m) for m in msgs]

    async def run():
        n = 0
        for t in texts:
            try:
                await conn.ws.send(t)
            except websockets.ConnectionClosed:
                break
            n += 1
        return n

    return peer._call(run(), timeout)


def reply_id(m):
    """The request id a received message answers, or None."""
    rid = m.get("request_id")
    if rid is None and isinstance(m.get("data"), dict):
        rid = m["data"].get("request_id")
    return rid


def replies_by_id(peer, ids=None):
    """{request id: [raw text of each reply]} over everything `peer` got.
    With `ids`, only those ids (all present as keys)."""
    out = collections.defaultdict(list)
    if ids is not None:
        for i in ids:
            out[i] = []
    for m in peer.received:
        rid = reply_id(m)
        if rid is None or (ids is not None and rid not in out):
            continue
        out[rid].append(m.raw)
    return out


_SCALE_PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/"
                         r"([^/?]+)/scale(\?|$)")


def scale_puts(k8s, status=200):
    """Counter {(namespace, name): n} of PUTs to the scale subresource that
    the Kubernetes simulator answered with `status` (k8s.requests must be
    unbounded or large enough: see the test's setUp)."""
    c = collections.Counter()
    for method, path, code in list(k8s.requests):
        if method != "PUT" or code != status:
            continue
        m = _SCALE_PATH.match(path)
        if m:
            c[(m.group(1), m.group(2))] += 1
    return c


def percentile(values, p):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)
