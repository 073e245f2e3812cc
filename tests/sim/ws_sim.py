"""WebSocket simulator of the PipeOps Control Plane or of a Runner.

DESIGN: one asyncio event loop runs in a background thread and serves
python3-websockets' (10.4, legacy asyncio API) server on loopback. Synchronous
test code drives it through thread-safe methods that schedule coroutines on the
loop (asyncio.run_coroutine_threadsafe) and wait for them. Everything the
simulator learns (handshakes, connections, messages) is recorded under one
lock; wait_for() sleeps on a condition variable tied to that lock.

    peer = WsPeer(role="cp", certdir=d, token="t0k")   # wss when certdir
    peer.start()
    peer.url                       # wss://localhost:PORT  (ws://127.0.0.1:PORT)
    reg = peer.wait_for(of_type("register"), timeout=10)
    peer.assign_runner("wss://localhost:9999", "runner-token", "runner-1")
    peer.stop()

Roles:
  cp      answers `register` with a `response` ack (auto_ack, switchable),
          assign_runner() sends `runner_assigned`.
  runner  no automatic behaviour; request()/call() drive operations.

API summary (all methods are thread-safe and synchronous):
  WsPeer(role, certdir=None, token=..., host="127.0.0.1", port=0,
         auto_ack=True, transcript=None, name=None, agent_id=None)
  start() / stop() / with-statement     .port .url .url_for(path) .secure
  send(msg, conn=None) send_raw(text|bytes, conn=None)
  request(type, data, encoding="object"|"string"|"base64", id=None) -> id
  call(type, data, timeout, encoding, id) -> the final reply
  assign_runner(endpoint, token, runner_id, id=None)   unassign_runner()
  kill_connections() (TCP abort)   close_connections(code, reason)
  pause_reading() / resume_reading()   (a slow peer: TCP backpressure)
  connected  connection_count  connections  last_connection  handshakes
  wait_connected(timeout, count=None)  wait_disconnected(timeout)
  received (Received dicts: .t .mono .conn .raw)  undecodable  sent
  mark()  wait_for(pred|type, timeout, after=mark)  wait_reply(id)
  wait_sent(pred|type, timeout)  of_type(type)
  auto_ack, agent_id, refuse_status (e.g. 503), transcript: settable
Module helpers: make_msg, make_reply, data_of, rfc3339_now, new_id,
  of_type, reply_to, heartbeat_with, summarize, SimTimeout.

Message format and envelope: /work/shared/PROTOCOL.md section 2.

The transcript hook, when given, is called on the loop thread as
transcript(peer, event, payload) with event one of
  "recv"       payload: the decoded message (dict), or the raw text/bytes
               when it is not a JSON object
  "send"       payload: the message dict (or the raw text for send_raw)
  "connect"    payload: Conn
  "disconnect" payload: Conn
  "reject"     payload: {"path", "status", "headers"}
Exceptions raised by the hook are swallowed (printed once to stderr).
"""

import asyncio
import base64
import datetime
import http
import itertools
import json
import os
import socket
import ssl
import sys
import threading
import time

import websockets
import websockets.legacy.server

ROLES = ("cp", "runner")
DEFAULT_PATHS = {"cp": "/api/v1/agent/ws", "runner": "/api/v1/runner/ws"}

_ids = itertools.count(1)


# ---------------------------------------------------------------- messages

def rfc3339_now():
    """UTC time, RFC 3339 with nanoseconds (Go's time.Time JSON format)."""
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc)
    return base.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % frac


def new_id(prefix="sim"):
    return "%s_%d_%d" % (prefix, time.time_ns(), next(_ids))


def encode_data(data, encoding="object"):
    """data as an object, a JSON string, or base64 of the JSON text."""
    if encoding == "object":
        return data
    text = json.dumps(data, separators=(",", ":"))
    if encoding == "string":
        return text
    if encoding == "base64":
        return base64.b64encode(text.encode()).decode()
    raise ValueError("unknown data encoding %r" % encoding)


def make_msg(mtype, data=None, id=None, request_id=None, error=None,
             encoding="object", timestamp=True):
    """An envelope per PROTOCOL.md 2: id, type, timestamp, data (+request_id,
    error). `encoding` chooses how data travels: object|string|base64."""
    msg = {"id": id or new_id(), "type": mtype}
    if timestamp:
        msg["timestamp"] = rfc3339_now()
    if request_id is not None:
        msg["request_id"] = request_id
    msg["data"] = encode_data({} if data is None else data, encoding)
    if error is not None:
        msg["error"] = error
    return msg


def make_reply(request, success=True, error=None, **fields):
    """A `response` to `request` (a message dict or an id string)."""
    rid = request if isinstance(request, str) else request.get("id")
    data = {"success": bool(success), "request_id": rid}
    if error is not None:
        data["error"] = error
    data.update(fields)
    return make_msg("response", data, request_id=rid, error=error)


def data_of(msg):
    """The decoded `data` of a message: objects as they are, JSON strings and
    base64 JSON decoded. Returns None when it cannot be decoded."""
    d = msg.get("data") if isinstance(msg, dict) else None
    if d is None or isinstance(d, dict) or isinstance(d, list):
        return d
    if isinstance(d, str):
        try:
            return json.loads(d)
        except ValueError:
            pass
        try:
            return json.loads(base64.b64decode(d, validate=True))
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------- predicates

def of_type(mtype):
    """Predicate: message type equals mtype."""
    def pred(m):
        return m.get("type") == mtype
    pred.__doc__ = "type == %r" % mtype
    return pred


def reply_to(request_id):
    """Predicate: a reply (any type) whose request_id (top level or in data)
    is request_id."""
    def pred(m):
        if m.get("request_id") == request_id:
            return True
        d = m.get("data")
        return isinstance(d, dict) and d.get("request_id") == request_id
    pred.__doc__ = "reply to %r" % request_id
    return pred


def heartbeat_with(cp=None, runner=None):
    """Predicate: a heartbeat whose data.connections match the given values
    (None = any)."""
    def pred(m):
        if m.get("type") != "heartbeat":
            return False
        d = data_of(m) or {}
        c = d.get("connections") or {}
        if cp is not None and c.get("control_plane") is not cp:
            return False
        if runner is not None and c.get("runner") is not runner:
            return False
        return True
    pred.__doc__ = "heartbeat with connections control_plane=%s runner=%s" % (
        cp, runner)
    return pred


def _describe(pred):
    if isinstance(pred, str):
        return "type == %r" % pred
    return (getattr(pred, "__doc__", None) or
            getattr(pred, "__name__", None) or repr(pred)).strip()


def summarize(msg, limit=160):
    """One short line describing a message (for error texts)."""
    if not isinstance(msg, dict):
        s = repr(msg)
    else:
        parts = [str(msg.get("type"))]
        if msg.get("id"):
            parts.append("id=%s" % msg.get("id"))
        if msg.get("request_id"):
            parts.append("request_id=%s" % msg.get("request_id"))
        if msg.get("error"):
            parts.append("error=%r" % msg.get("error"))
        d = msg.get("data")
        if isinstance(d, dict):
            keys = ["success", "connections", "name", "replicas"]
            parts += ["%s=%s" % (k, json.dumps(d[k])) for k in keys if k in d]
        s = " ".join(parts)
    return s if len(s) <= limit else s[:limit - 3] + "..."


# ---------------------------------------------------------------- records

class Received(dict):
    """A decoded message from the agent. Behaves as the message dict; adds
    .t (time.time() at arrival), .mono (time.monotonic()), .conn (Conn) and
    .raw (the text as received)."""
    __slots__ = ("t", "mono", "conn", "raw")


class Conn:
    """One accepted WebSocket connection."""

    def __init__(self, index, ws, path, headers):
        self.index = index          # 0, 1, ... in order of acceptance
        self.ws = ws
        self.path = path            # request path including query string
        self.headers = headers      # websockets Headers (case-insensitive)
        self.remote = ws.remote_address
        self.opened_at = time.time()
        self.closed_at = None
        self.close_code = None
        self.close_reason = None

    @property
    def open(self):
        return self.closed_at is None

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return "<Conn #%d %s %s>" % (self.index, self.path,
                                     "open" if self.open else "closed")


class Handshake:
    """One HTTP upgrade request, accepted or refused."""

    def __init__(self, path, headers, status):
        self.t = time.time()
        self.path = path
        self.headers = headers
        self.status = status        # 101 when accepted

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return "<Handshake %s %d>" % (self.path, self.status)


class SimTimeout(AssertionError):
    """wait_for() gave up. Subclass of AssertionError so unittest reports it
    as a test failure, with the list of what did arrive."""


# ---------------------------------------------------------------- the peer

class WsPeer:
    """A Control Plane ("cp") or Runner ("runner") WebSocket server."""

    def __init__(self, role="cp", certdir=None, token="test-token",
                 host="127.0.0.1", port=0, auto_ack=True, transcript=None,
                 name=None, agent_id=None, max_size=64 * 1024 * 1024,
                 ping_interval=None):
        if role not in ROLES:
            raise ValueError("role must be one of %s" % (ROLES,))
        self.role = role
        self.name = name or {"cp": "CP", "runner": "Runner"}[role]
        self.certdir = certdir
        self.token = token          # None: no authorization check
        self.host = host
        self.auto_ack = auto_ack    # cp: answer register automatically
        self.agent_id = agent_id    # cp: agent_id in the ack (default: theirs)
        self.transcript = transcript
        self.refuse_status = None   # set to e.g. 503 to refuse every upgrade
        self._want_port = port
        self._max_size = max_size
        self._ping_interval = ping_interval
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._received = []         # Received, guarded by _lock
        self._undecodable = []      # (t, conn, raw), guarded by _lock
        self._sent = []             # (t, conn index, msg), guarded by _lock
        self._conns = []            # Conn, guarded by _lock
        self._handshakes = []       # Handshake, guarded by _lock
        self._loop = None
        self._thread = None
        self._servers = []
        self._socks = []
        self.port = None
        self._hook_failed = False
        self._started = False
        self._reading = asyncio.Event()   # cleared: pause_reading()
        self._reading.set()

    # ------------------------------------------------ lifecycle

    @property
    def secure(self):
        return self.certdir is not None

    @property
    def url(self):
        """Base URL to give the agent (no path: the agent adds the default).
        With TLS the host is `localhost` (mbedTLS checks DNS names only)."""
        if self.secure:
            return "wss://localhost:%d" % self.port
        host = self.host
        if host in ("0.0.0.0", "", None):
            host = "127.0.0.1"
        if ":" in host:
            host = "[%s]" % host
        return "ws://%s:%d" % (host, self.port)

    def url_for(self, path):
        return self.url + path

    def start(self):
        """Bind, start the loop thread, return self once listening."""
        if self._started:
            return self
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True,
                                        name="ws_sim-%s" % self.name)
        self._thread.start()
        ready.wait(5)
        try:
            self._call(self._serve(), timeout=10)
        except BaseException:
            self._shutdown_loop()
            raise
        self._started = True
        return self

    def stop(self):
        """Close the servers and every connection; stop the loop thread.
        Safe to call twice."""
        if not self._started:
            return
        self._started = False
        try:
            self._call(self._close_all(), timeout=15)
        except Exception:
            pass
        self._shutdown_loop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _shutdown_loop(self):
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        self._socks = []
        self._loop = None

    def _call(self, coro, timeout=10):
        """Run coro on the loop from another thread and wait for it."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("%s simulator is not running" % self.name)
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def _ssl_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.certdir, "server.pem"),
                            os.path.join(self.certdir, "server.key"))
        return ctx

    def _bind(self):
        """Listening sockets: host (and ::1 too for loopback hosts, same
        port, so `localhost` works whichever address the client picks)."""
        hosts = [self.host]
        if self.host in ("127.0.0.1", "localhost"):
            hosts = ["127.0.0.1", "::1"]
        for _ in range(20):
            socks = []
            port = self._want_port
            try:
                for h in hosts:
                    fam = socket.AF_INET6 if ":" in h else socket.AF_INET
                    s = socket.socket(fam, socket.SOCK_STREAM)
                    socks.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    try:
                        s.bind((h, port))
                    except OSError as e:
                        if h == "::1" and len(socks) > 1 and \
                                e.errno in (99, 97):   # no IPv6 loopback
                            socks.pop().close()
                            continue
                        raise
                    port = s.getsockname()[1]
                    s.listen(128)
                    s.setblocking(False)
                return socks, port
            except OSError:
                for s in socks:
                    s.close()
                if self._want_port:
                    raise
        raise OSError("could not bind %s on one port" % hosts)

    async def _serve(self):
        socks, self.port = self._bind()
        self._socks = socks
        for s in socks:
            srv = await websockets.serve(
                self._handler, sock=s,
                ssl=self._ssl_context() if self.secure else None,
                process_request=self._process_request,
                compression=None,
                max_size=self._max_size,
                ping_interval=self._ping_interval,
                ping_timeout=None,
                close_timeout=2,
            )
            self._servers.append(srv)

    async def _close_all(self):
        for srv in self._servers:
            srv.close()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(s.wait_closed() for s in self._servers)), 5)
        except asyncio.TimeoutError:
            pass
        await self._abort_all()
        self._servers = []

    async def _abort_all(self):
        with self._lock:
            conns = [c for c in self._conns if c.open]
        for c in conns:
            c.ws.transport.abort()
        for c in conns:
            try:
                await asyncio.wait_for(c.ws.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------ server side

    async def _process_request(self, path, headers):
        status = 101
        if self.refuse_status:
            status = int(self.refuse_status)
        elif self.token is not None and \
                headers.get("Authorization") != "Bearer %s" % self.token:
            status = 401
        with self._lock:
            self._handshakes.append(Handshake(path, headers, status))
            self._cond.notify_all()
        if status == 101:
            return None
        self._hook("reject", {"path": path, "status": status,
                              "headers": dict(headers.raw_items())})
        phrase = http.HTTPStatus(status).phrase
        return (http.HTTPStatus(status), [("Content-Type", "text/plain")],
                ("%d %s\n" % (status, phrase)).encode())

    async def _handler(self, ws):
        with self._lock:
            conn = Conn(len(self._conns), ws, ws.path, ws.request_headers)
            self._conns.append(conn)
            self._cond.notify_all()
        self._hook("connect", conn)
        try:
            while True:
                if not self._reading.is_set():
                    await self._reading.wait()
                raw = await ws.recv()
                self._on_message(conn, raw)
                await asyncio.sleep(0)
        except websockets.ConnectionClosed:
            pass
        finally:
            with self._lock:
                conn.closed_at = time.time()
                conn.close_code = ws.close_code
                conn.close_reason = ws.close_reason
                self._cond.notify_all()
            self._hook("disconnect", conn)

    def _on_message(self, conn, raw):
        msg = None
        if isinstance(raw, str):
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = None
        if not isinstance(msg, dict):
            with self._lock:
                self._undecodable.append((time.time(), conn, raw))
                self._cond.notify_all()
            self._hook("recv", raw)
            return
        rec = Received(msg)
        rec.t = time.time()
        rec.mono = time.monotonic()
        rec.conn = conn
        rec.raw = raw
        with self._lock:
            self._received.append(rec)
            self._cond.notify_all()
        self._hook("recv", rec)
        if self.role == "cp" and self.auto_ack and msg.get("type") == "register":
            d = data_of(msg) or {}
            agent_id = self.agent_id or d.get("id") or "agent-sim"
            ack = make_reply(msg, True, agent_id=agent_id,
                             message="registration acknowledged")
            asyncio.ensure_future(self._send_async(ack, [conn]))

    def _hook(self, event, payload):
        if self.transcript is None:
            return
        try:
            self.transcript(self, event, payload)
        except Exception as e:        # never let the hook break the sim
            if not self._hook_failed:
                self._hook_failed = True
                print("ws_sim: transcript hook failed: %r" % e, file=sys.stderr)

    async def _send_async(self, payload, conns):
        """Send payload (dict -> JSON, str/bytes as they are) to conns."""
        if isinstance(payload, dict):
            text = json.dumps(payload)
        else:
            text = payload
        n = 0
        for c in conns:
            if not c.open:
                continue
            try:
                await c.ws.send(text)
                n += 1
            except websockets.ConnectionClosed:
                continue
            with self._lock:
                self._sent.append((time.time(), c.index, payload))
                self._cond.notify_all()
            self._hook("send", payload)
        return n

    # ------------------------------------------------ sending

    def _targets(self, conn):
        with self._lock:
            if conn is None:
                return [c for c in self._conns if c.open]
            if isinstance(conn, int):
                return [self._conns[conn]]
            return [conn]

    def send(self, msg, conn=None, timeout=10):
        """Send a message dict to `conn` (a Conn or its index) or to every
        open connection. Returns the message. Raises AssertionError when no
        connection is open."""
        targets = self._targets(conn)
        n = self._call(self._send_async(msg, targets), timeout)
        if n == 0:
            raise SimTimeout("%s: cannot send %s: no open connection"
                             % (self.name, summarize(msg)))
        return msg

    def send_raw(self, text, conn=None, timeout=10):
        """Send arbitrary text (str) or binary (bytes) as one message."""
        targets = self._targets(conn)
        n = self._call(self._send_async(text, targets), timeout)
        if n == 0:
            raise SimTimeout("%s: cannot send raw text: no open connection"
                             % self.name)

    def request(self, mtype, data=None, encoding="object", id=None,
                conn=None):
        """Build and send a request; returns its id."""
        msg = make_msg(mtype, data, id=id, encoding=encoding)
        self.send(msg, conn)
        return msg["id"]

    def call(self, mtype, data=None, timeout=10, encoding="object", id=None,
             conn=None):
        """Send a request and wait for its final reply (a message whose
        request_id is the request's id and that is not a stream chunk)."""
        mark = self.mark()
        rid = self.request(mtype, data, encoding=encoding, id=id, conn=conn)
        base = reply_to(rid)

        def final(m):
            if not base(m):
                return False
            d = m.get("data")
            return not (isinstance(d, dict) and d.get("chunk"))
        final.__doc__ = "final reply to %s %r" % (mtype, rid)
        return self.wait_for(final, timeout, after=mark)

    def assign_runner(self, endpoint, token, runner_id="runner-1",
                      conn=None, id=None):
        """cp: send runner_assigned; returns the message (its id is the
        request_id the agent's reply must carry)."""
        msg = make_msg("runner_assigned", {
            "runner_id": runner_id,
            "runner_endpoint": endpoint,
            "runner_token": token,
            "assigned_at": rfc3339_now(),
        }, id=id)
        return self.send(msg, conn)

    def unassign_runner(self, runner_id="runner-1", conn=None):
        msg = make_msg("runner_unassigned", {"runner_id": runner_id})
        return self.send(msg, conn)

    # ------------------------------------------------ connections

    def pause_reading(self):
        """Stop reading messages from every connection (a slow peer): the
        library queues a few, then stops reading the socket and TCP pushes
        back on the agent. Pings are not answered meanwhile."""
        self._loop.call_soon_threadsafe(self._reading.clear)

    def resume_reading(self):
        """Undo pause_reading()."""
        self._loop.call_soon_threadsafe(self._reading.set)

    def kill_connections(self, timeout=10):
        """Drop every open connection abruptly (TCP abort, no close frame)."""
        self._call(self._abort_all(), timeout)

    def close_connections(self, code=1000, reason="", timeout=10):
        """Close every open connection with a close frame."""
        async def close():
            for c in self._targets(None):
                await c.ws.close(code, reason)
        self._call(close(), timeout)

    @property
    def connected(self):
        with self._lock:
            return any(c.open for c in self._conns)

    @property
    def connection_count(self):
        """Connections accepted so far (open or closed)."""
        with self._lock:
            return len(self._conns)

    @property
    def connections(self):
        with self._lock:
            return list(self._conns)

    @property
    def last_connection(self):
        with self._lock:
            return self._conns[-1] if self._conns else None

    @property
    def handshakes(self):
        """Every upgrade request, including refused ones."""
        with self._lock:
            return list(self._handshakes)

    def wait_connected(self, timeout=10, count=None):
        """Wait until a connection is open (and, with count, until `count`
        connections were accepted in total). Returns the newest Conn."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ok = any(c.open for c in self._conns)
                if count is not None:
                    ok = ok and len(self._conns) >= count
                if ok:
                    return self._conns[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimTimeout(
                        "%s: no agent connection within %.1fs (%d accepted, "
                        "handshakes: %s)" % (self.name, timeout,
                                             len(self._conns),
                                             self._handshakes[-5:]))
                self._cond.wait(left)

    def wait_disconnected(self, timeout=10):
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(c.open for c in self._conns):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimTimeout("%s: connection still open after %.1fs"
                                     % (self.name, timeout))
                self._cond.wait(left)

    # ------------------------------------------------ received messages

    @property
    def received(self):
        """Every decoded message so far (copies of the list; entries are
        Received dicts with .t, .conn, .raw)."""
        with self._lock:
            return list(self._received)

    @property
    def undecodable(self):
        """(time, Conn, raw) for every message that was not a JSON object."""
        with self._lock:
            return list(self._undecodable)

    @property
    def sent(self):
        """(time, conn index, message) for everything the simulator sent."""
        with self._lock:
            return list(self._sent)

    def wait_sent(self, predicate, timeout=10):
        """The first message the simulator sent (a dict) for which
        predicate(msg) is true, waiting up to timeout (sends such as the
        register ack happen on the loop thread, after the request was
        recorded)."""
        if isinstance(predicate, str):
            predicate = of_type(predicate)
        deadline = time.monotonic() + timeout
        i = 0
        with self._cond:
            while True:
                while i < len(self._sent):
                    m = self._sent[i][2]
                    i += 1
                    if isinstance(m, dict) and predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            sent = [summarize(m) for _, _, m in self._sent[-25:]]
        raise SimTimeout("%s: sent nothing matching %s within %.1fs; sent:\n  %s"
                         % (self.name, _describe(predicate), timeout,
                            "\n  ".join(sent)))

    def mark(self):
        """A position in `received`: pass it as wait_for(after=...) to only
        consider later messages."""
        with self._lock:
            return len(self._received)

    def of_type(self, mtype):
        return [m for m in self.received if m.get("type") == mtype]

    def wait_for(self, predicate, timeout=10, after=0):
        """The first message (at index >= after) for which predicate(msg) is
        true; predicate may also be a type name. Raises SimTimeout listing
        what did arrive."""
        if isinstance(predicate, str):
            predicate = of_type(predicate)
        deadline = time.monotonic() + timeout
        i = after
        with self._cond:
            while True:
                while i < len(self._received):
                    m = self._received[i]
                    i += 1
                    try:
                        if predicate(m):
                            return m
                    except (KeyError, TypeError, AttributeError, ValueError):
                        pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            msgs = self._received[after:]
            undec = len(self._undecodable)
            conns = list(self._conns)
        lines = ["  %s" % summarize(m) for m in msgs[-25:]]
        if len(msgs) > 25:
            lines.insert(0, "  ... %d earlier" % (len(msgs) - 25))
        raise SimTimeout(
            "%s: timed out after %.1fs waiting for %s; %d message(s) arrived "
            "since the mark%s (connections: %s)%s" % (
                self.name, timeout, _describe(predicate), len(msgs),
                ", %d undecodable" % undec if undec else "", conns,
                (":\n" + "\n".join(lines)) if lines else ""))

    def wait_reply(self, request_id, timeout=10, after=0):
        return self.wait_for(reply_to(request_id), timeout, after)
