"""Transport interop and fault tests: the real agent binary against real
peers (issue 3).

Matrix (each cell: the agent connects, its `register` reaches the Control
Plane simulator, the acknowledgement is processed ("registered" in the
agent log) and a heartbeat with connections.control_plane=true follows):

  ws  IPv4            ws://127.0.0.1:P    python3-websockets (ws_sim)
  ws  IPv6            ws://[::1]:P
  wss localhost       wss://localhost:P   test CA
  wss localhost->::1  wss://localhost:P   in a mount namespace whose
                                          /etc/hosts maps localhost to ::1
                                          only; the server listens on ::1 only
  nginx TLS proxy     wss://localhost:N   nginx (Debian) terminates TLS and
                                          proxies the upgrade to ws_sim
  nginx mutual TLS    ssl_verify_client on: with client_cert/client_key
                                          (and refused without them)
  CONNECT proxy       proxy = http://...  tests/lib/connect_proxy.py, with and
                                          without Basic auth, 407 refusal
  env proxy           HTTPS_PROXY / http_proxy, NO_PROXY bypass

Faults: bad TLS (unknown CA, wrong name, expired, self-signed: one log line
each, the agent alive and retrying), token refused (backoff grows), 503
Retry-After honoured, redirect not followed, insecure_skip_verify warned at
every connection, TLS session resumed on reconnect (nginx
$ssl_session_reused), DNS bounded by connect_timeout (a resolver that never
answers), and a half-open Runner link (tests/lib/relay.py blackhole) found
within ping_timeout + 1 s without disturbing the Control Plane link.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "lib"))
sys.path.insert(0, os.path.join(TESTS, "sim"))
import harness  # noqa: E402
import agentproc  # noqa: E402
import connect_proxy  # noqa: E402
import relay  # noqa: E402
import ws_sim  # noqa: E402
from ws_sim import heartbeat_with  # noqa: E402

TOP = harness.TOP
PKI = os.path.join(TOP, "build", "test-pki")   # shared with test_ws_live
CP_TOKEN = "cp-tok-7d1f0c2a9b"
RUNNER_TOKEN = "runner-tok-5e8a31c4d2"
PROXY_PASSWORD = "pw-91c3e6f0"
T = 10   # seconds for one step of a cell

_cleanups = []


def _can_unshare():
    try:
        return subprocess.run(["unshare", "-m", "true"], timeout=5,
                              capture_output=True).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _have_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """nginx (from Debian) as a TLS-terminating WebSocket reverse proxy in
    front of ws_sim, run as root in the foreground from a temp dir. Two
    servers: `port` (TLS) and `mtls_port` (TLS + client certificate
    required). The access log records $ssl_session_reused per request."""

    def __init__(self, tmp, upstream_port):
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=tmp)
        self.port = harness.free_port()
        self.mtls_port = harness.free_port()
        self.upstream = upstream_port
        self.access_log = os.path.join(self.dir, "access.log")
        self.proc = None

    def conf(self):
        d = self.dir
        return """
worker_processes 1;
user root;
events { worker_connections 64; }
http {
    log_format tr '$ssl_session_reused $ssl_protocol $status $ssl_client_verify';
    access_log %(d)s/access.log tr;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    ssl_certificate %(pki)s/server.pem;
    ssl_certificate_key %(pki)s/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tr:1m;
    ssl_session_timeout 5m;
    server {
        listen 127.0.0.1:%(port)d ssl;
        server_name localhost;
        location / {
            proxy_pass http://127.0.0.1:%(up)d;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
        }
    }
    server {
        listen 127.0.0.1:%(mport)d ssl;
        server_name localhost;
        ssl_client_certificate %(pki)s/ca.pem;
        ssl_verify_client on;
        location / {
            proxy_pass http://127.0.0.1:%(up)d;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
        }
    }
}
""" % {"d": d, "pki": PKI, "port": self.port, "mport": self.mtls_port,
       "up": self.upstream}

    def start(self):
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.conf())
        self.errlog = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [NGINX, "-e", "stderr", "-p", self.dir, "-c", conf, "-g",
             "daemon off; pid %s/nginx.pid; error_log stderr;" % self.dir],
            stdin=subprocess.DEVNULL, stdout=self.errlog,
            stderr=self.errlog, start_new_session=True)
        deadline = time.monotonic() + 10
        for port in (self.port, self.mtls_port):
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError("nginx exited: %s" % self.stderr())
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError("nginx not listening: %s"
                                             % self.stderr())
                    time.sleep(0.05)
        return self

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def access(self):
        try:
            with open(self.access_log) as f:
                return [l.split() for l in f.read().splitlines() if l]
        except OSError:
            return []

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.errlog.close()
        self.proc = None


class HttpResponder:
    """A plain TCP server answering every request head with a fixed HTTP
    response; records the monotonic time of each request."""

    def __init__(self, response):
        self.response = response
        self.times = []
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        self._stop = False

    def start(self):
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def _loop(self):
        while not self._stop:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            try:
                c.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    d = c.recv(4096)
                    if not d:
                        break
                    head += d
                self.times.append(time.monotonic())
                c.sendall(self.response)
            except OSError:
                pass
            finally:
                c.close()

    def stop(self):
        self._stop = True
        self._srv.close()


def count(pattern, text):
    return len(re.findall(pattern, text))


def to_port(px, port):
    """The proxy's requests for a tunnel to `port` (the agent's Kubernetes
    client, libcurl, reads HTTPS_PROXY too and may show up as well)."""
    return [r for r in px.requests if r.target.endswith(":%d" % port)]


class Transport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.skip_reason = None
        if not agentproc.have_agent():
            cls.skip_reason = "%s not built (run make)" % agentproc.AGENT_BIN
            return
        cls.tmp = tempfile.mkdtemp(prefix="pipeops-transport-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        subprocess.run(["bash", os.path.join(TESTS, "lib", "certs.sh"), PKI],
                       check=True, timeout=120)
        cls.ca = os.path.join(PKI, "ca.pem")
        # Certificate directories that serve one of the bad leaves as
        # "server" (ws_sim always loads server.pem/server.key).
        cls.bad = {}
        for kind in ("expired", "self", "wrongname"):
            d = os.path.join(cls.tmp, "pki-" + kind)
            os.makedirs(d)
            os.symlink(os.path.join(PKI, kind + ".pem"),
                       os.path.join(d, "server.pem"))
            os.symlink(os.path.join(PKI, kind + ".key"),
                       os.path.join(d, "server.key"))
            cls.bad[kind] = d

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)
        self.n = getattr(type(self), "_n", 0) + 1
        type(self)._n = self.n
        self.work = os.path.join(self.tmp, "%s-%d" % (self._testMethodName,
                                                      self.n))
        os.makedirs(self.work)
        self.agents = []

    def tearDown(self):
        # Agents first (they hold connections to the servers), then the
        # servers registered with addCleanup (run after tearDown).
        for a in self.agents:
            a.kill()
        # With PIPEOPS_AGENT_BIN pointing at a sanitizer build, reports
        # land in the agent's log.
        for a in self.agents:
            m = re.search(r"(ERROR: AddressSanitizer|runtime error:|"
                          r"WARNING: ThreadSanitizer).*", a.log())
            if m:
                self.fail("sanitizer report in %s: %s" % (a.log_path,
                                                          m.group(0)))

    # ------------------------------------------------ helpers

    def peer(self, role="cp", certdir=None, **kw):
        p = ws_sim.WsPeer(role=role, certdir=certdir,
                          token=kw.pop("token", CP_TOKEN if role == "cp"
                                       else RUNNER_TOKEN), **kw)
        self.addCleanup(p.stop)
        return p.start()

    def agent(self, cp_url, ca_file=None, cp=None, runner=None, env=None,
              binary=agentproc.AGENT_BIN, sub=None, token=CP_TOKEN,
              start=True):
        work = self.work if sub is None else os.path.join(self.work, sub)
        os.makedirs(work, exist_ok=True)
        cfg = agentproc.base_config(work, cluster_name="transport",
                                    cp_url=cp_url, cp_token=token,
                                    ca_file=ca_file, heartbeat="1s",
                                    health=True)
        cfg["control_plane"].update(cp or {})
        cfg["runner"].update(runner or {})
        e = dict(os.environ)
        for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                  "no_proxy", "NO_PROXY"):
            e.pop(k, None)
        e.update(env or {})
        a = agentproc.Agent(work, cfg, binary=binary, env=e)
        self.agents.append(a)
        return a.start() if start else a

    def fail_with_log(self, agent, msg):
        self.fail("%s\n--- agent log tail ---\n%s" % (msg, agent.log_tail(30)))

    def round_trip(self, cp, agent, after=0):
        """register arrives, its ack is processed, a heartbeat follows."""
        try:
            reg = cp.wait_for("register", T, after=after)
            rid = reg["id"]
            cp.wait_sent(lambda m: m.get("type") == "response" and
                         m.get("request_id") == rid, T)
            agent.wait_log(r'msg="registered"', T)
            mark = cp.mark()
            hb = cp.wait_for(heartbeat_with(cp=True), T, after=mark)
        except AssertionError as e:
            self.fail_with_log(agent, str(e))
        self.assertEqual(reg.conn.header("Authorization"),
                         "Bearer %s" % CP_TOKEN)
        self.assertTrue(reg.conn.header("User-Agent", "").startswith(
            "pipeops-agent/"))
        self.assertEqual(reg.conn.path, "/api/v1/agent/ws")
        self.assertIs(hb.conn, reg.conn, "heartbeat on the same connection")
        return reg

    def assert_no_secrets(self, agent):
        log = agent.log()
        for s in (CP_TOKEN, RUNNER_TOKEN, PROXY_PASSWORD):
            self.assertNotIn(s, log, "a secret reached the log")

    def unshare_binary(self, hosts=None, resolv=None):
        """A wrapper that runs the agent in a private mount namespace with
        its own /etc/hosts and/or /etc/resolv.conf."""
        binds = []
        for path, text in (("/etc/hosts", hosts),
                           ("/etc/resolv.conf", resolv)):
            if text is None:
                continue
            f = os.path.join(self.work, os.path.basename(path))
            with open(f, "w") as fh:
                fh.write(text)
            binds.append("mount --bind %s %s" % (f, path))
        wrapper = os.path.join(self.work, "agent-ns.sh")
        with open(wrapper, "w") as fh:
            fh.write("#!/bin/sh\nexec unshare -m sh -c '%s && exec %s \"$@\"'"
                     " agent \"$@\"\n" % (" && ".join(binds),
                                          agentproc.AGENT_BIN))
        os.chmod(wrapper, 0o755)
        return wrapper

    # ------------------------------------------------ matrix: python peers

    def test_01_ws_ipv4(self):
        cp = self.peer(host="127.0.0.1")
        cp_url = "ws://127.0.0.1:%d" % cp.port
        a = self.agent(cp_url)
        self.round_trip(cp, a)
        self.assertEqual(cp.connection_count, 1)
        self.assert_no_secrets(a)

    @unittest.skipUnless(_have_ipv6(), "no IPv6 loopback")
    def test_02_ws_ipv6_literal(self):
        cp = self.peer(host="::1")
        a = self.agent("ws://[::1]:%d" % cp.port)
        reg = self.round_trip(cp, a)
        self.assertEqual(reg.conn.remote[0], "::1")
        self.assertEqual(reg.conn.header("Host"), "[::1]:%d" % cp.port)

    def test_03_wss_localhost(self):
        cp = self.peer(certdir=PKI)
        a = self.agent(cp.url, ca_file=self.ca)
        self.round_trip(cp, a)
        self.assertNotIn("TLS certificate not verified", a.log())
        self.assert_no_secrets(a)

    @unittest.skipUnless(_have_ipv6() and _can_unshare(),
                         "needs IPv6 loopback and unshare -m")
    def test_04_wss_localhost_resolving_to_ipv6(self):
        cp = self.peer(certdir=PKI, host="::1")    # listens on ::1 only
        wrapper = self.unshare_binary(hosts="::1 localhost\n")
        a = self.agent("wss://localhost:%d" % cp.port, ca_file=self.ca,
                       binary=wrapper)
        reg = self.round_trip(cp, a)
        self.assertEqual(reg.conn.remote[0], "::1")

    # ------------------------------------------------ matrix: nginx

    def start_nginx(self, cp):
        if not os.access(NGINX, os.X_OK):
            self.skipTest("nginx not installed (make deps)")
        n = Nginx(self.work, cp.port)
        self.addCleanup(n.stop)
        return n.start()

    def test_05_nginx_tls_proxy_and_session_resumption(self):
        cp = self.peer()                       # plain ws upstream
        ngx = self.start_nginx(cp)
        a = self.agent("wss://localhost:%d" % ngx.port, ca_file=self.ca)
        self.round_trip(cp, a)
        # Two reconnects: nginx logs each WebSocket request when it ends.
        for i in (1, 2):
            mark = cp.mark()
            cp.kill_connections()
            try:
                cp.wait_connected(T, count=i + 1)
            except AssertionError as e:
                self.fail_with_log(a, str(e))
            self.round_trip(cp, a, after=mark)
        cp.kill_connections()
        deadline = time.monotonic() + 5
        while len(ngx.access()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = ngx.access()
        self.assertGreaterEqual(len(lines), 3, lines)
        self.assertEqual([l[2] for l in lines[:3]], ["101"] * 3, lines)
        self.assertEqual(lines[0][1], "TLSv1.2", lines)
        # First handshake is full, the reconnects resume the session.
        self.assertEqual(lines[0][0], ".", lines)
        self.assertEqual([l[0] for l in lines[1:3]], ["r", "r"],
                         "session not resumed on reconnect: %s" % lines)

    def test_06_nginx_mutual_tls(self):
        cp = self.peer()
        ngx = self.start_nginx(cp)
        url = "wss://localhost:%d" % ngx.mtls_port
        a = self.agent(url, ca_file=self.ca, sub="with-cert", cp={
            "client_cert": os.path.join(PKI, "client.pem"),
            "client_key": os.path.join(PKI, "client.key")})
        self.round_trip(cp, a)
        b = self.agent(url, ca_file=self.ca, sub="without-cert")
        b.wait_log(r'msg="connect failed".*HTTP 400', T)
        self.assertTrue(b.alive)
        a.kill()
        deadline = time.monotonic() + 5
        while not any(l[3] == "SUCCESS" for l in ngx.access()) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        verdicts = {l[3] for l in ngx.access()}
        self.assertIn("SUCCESS", verdicts)
        self.assertIn("NONE", verdicts)

    # ------------------------------------------------ matrix: proxies

    def test_07_connect_proxy(self):
        cp = self.peer(certdir=PKI)
        px = connect_proxy.ConnectProxy().start()
        self.addCleanup(px.stop)
        a = self.agent(cp.url, ca_file=self.ca, cp={"proxy": px.url})
        self.round_trip(cp, a)
        self.assertEqual(px.tunnels, 1, px.requests)
        self.assertEqual(px.requests[0].target, "localhost:%d" % cp.port)

    def test_08_connect_proxy_basic_auth(self):
        cp = self.peer(certdir=PKI)
        px = connect_proxy.ConnectProxy(auth=("agent", PROXY_PASSWORD))
        px.start()
        self.addCleanup(px.stop)
        a = self.agent(cp.url, ca_file=self.ca, cp={"proxy": px.url},
                       sub="good")
        self.round_trip(cp, a)
        self.assertTrue(px.requests[0].authorized)
        # Wrong password: 407, logged with its status, never the password.
        bad = "http://agent:x%s@127.0.0.1:%d" % (PROXY_PASSWORD, px.port)
        b = self.agent(cp.url, ca_file=self.ca, cp={"proxy": bad},
                       sub="bad")
        b.wait_log(r'msg="connect failed".*proxy refused CONNECT '
                   r'localhost:\d+: HTTP 407', T)
        self.assertTrue(b.alive)
        self.assert_no_secrets(a)
        self.assert_no_secrets(b)

    def test_09_env_https_proxy(self):
        cp = self.peer(certdir=PKI)
        px = connect_proxy.ConnectProxy().start()
        self.addCleanup(px.stop)
        # curl form without a scheme is accepted too
        a = self.agent(cp.url, ca_file=self.ca,
                       env={"HTTPS_PROXY": "127.0.0.1:%d" % px.port})
        self.round_trip(cp, a)
        reqs = to_port(px, cp.port)
        self.assertEqual([r.status for r in reqs], [200], px.requests)

    def test_10_env_http_proxy_for_ws(self):
        cp = self.peer()
        px = connect_proxy.ConnectProxy().start()
        self.addCleanup(px.stop)
        a = self.agent("ws://localhost:%d" % cp.port,
                       env={"http_proxy": px.url,
                            "HTTPS_PROXY": "http://127.0.0.1:1"})
        self.round_trip(cp, a)
        reqs = to_port(px, cp.port)
        self.assertEqual([r.status for r in reqs], [200], px.requests)

    def test_11_env_no_proxy_bypass(self):
        cp = self.peer(certdir=PKI)
        px = connect_proxy.ConnectProxy().start()
        self.addCleanup(px.stop)
        a = self.agent(cp.url, ca_file=self.ca,
                       env={"HTTPS_PROXY": px.url,
                            "NO_PROXY": "example.com, .localhost"})
        self.round_trip(cp, a)
        self.assertEqual(to_port(px, cp.port), [])

    # ------------------------------------------------ TLS refusals

    def test_12_bad_tls_refused_and_retried(self):
        """Four bad servers at once, one agent each (through a relay that
        counts attempts). Each refusal is logged once with its own text;
        the agents stay up and keep retrying."""
        cases = {
            "unknown_ca": (PKI, os.path.join(PKI, "self.pem"),
                           r"signed by unknown CA"),
            "wrongname": (self.bad["wrongname"], self.ca,
                          r"certificate name does not match host localhost"),
            "expired": (self.bad["expired"], self.ca,
                        r"certificate for localhost has expired"),
            "self": (self.bad["self"], self.ca,
                     r"self-signed certificate for localhost"),
        }
        runs = {}
        for name, (certdir, ca, pattern) in cases.items():
            cp = self.peer(certdir=certdir, name=name)
            r = relay.Relay(cp.port).start()
            self.addCleanup(r.stop)
            a = self.agent("wss://localhost:%d" % r.port, ca_file=ca,
                           sub=name)
            runs[name] = (cp, r, a, pattern)
        time.sleep(4)
        for name, (cp, r, a, pattern) in runs.items():
            log = a.log()
            self.assertTrue(a.alive, "%s: agent died:\n%s" % (
                name, a.log_tail()))
            lines = [l for l in log.splitlines()
                     if 'msg="connect failed"' in l]
            if len(lines) != 1 or not re.search(pattern, lines[0]):
                self.fail_with_log(a, "%s: want one connect-failed line "
                                   "matching /%s/, got %s" % (name, pattern,
                                                              lines))
            self.assertIn("TLS: ", lines[0])
            self.assertGreaterEqual(r.accepted, 3, "%s: retries" % name)
            self.assertEqual(cp.connection_count, 0)

    def test_13_insecure_skip_verify_warns_every_connection(self):
        cp = self.peer(certdir=self.bad["self"])
        a = self.agent(cp.url, cp={"insecure_skip_verify": True})
        self.round_trip(cp, a)
        mark = cp.mark()
        cp.kill_connections()
        cp.wait_connected(T, count=2)
        self.round_trip(cp, a, after=mark)
        n = count(r'level=warn .*msg="TLS certificate not verified"',
                  a.log())
        self.assertEqual(n, 2, a.log_tail())

    # ------------------------------------------------ HTTP refusals

    def test_14_token_refused_with_growing_backoff(self):
        cp = self.peer(certdir=PKI, token="another-token")
        a = self.agent(cp.url, ca_file=self.ca)
        time.sleep(4.5)
        hs = cp.handshakes
        self.assertTrue(all(h.status == 401 for h in hs))
        self.assertEqual(count(r'msg="token refused".*HTTP 401', a.log()),
                         1, a.log_tail())
        # reconnect_initial 200 ms, max 2 s: 0.1-0.2, 0.2-0.4, 0.4-0.8,
        # 0.8-1.6, 1-2 s ... about 6 attempts in 4.5 s; without growth
        # there would be 20 or more.
        self.assertGreaterEqual(len(hs), 3)
        self.assertLessEqual(len(hs), 9, "backoff does not grow: %d "
                             "attempts in 4.5 s" % len(hs))
        gaps = [b.t - a_.t for a_, b in zip(hs, hs[1:])]
        self.assertGreater(gaps[-1], gaps[0], gaps)

    def test_15_retry_after_and_redirect(self):
        r503 = HttpResponder(b"HTTP/1.1 503 Service Unavailable\r\n"
                             b"Retry-After: 2\r\nContent-Length: 0\r\n\r\n")
        r302 = HttpResponder(b"HTTP/1.1 302 Found\r\nLocation: "
                             b"ws://127.0.0.1:1/elsewhere\r\n"
                             b"Content-Length: 0\r\n\r\n")
        for r in (r503, r302):
            r.start()
            self.addCleanup(r.stop)
        a = self.agent("ws://127.0.0.1:%d" % r503.port, sub="503")
        b = self.agent("ws://127.0.0.1:%d" % r302.port, sub="302")
        a.wait_log(r'msg="connect failed".*HTTP 503 Service Unavailable '
                   r'\(retry after 2 s\).*retry_in_ms=(19|20)\d\d', T)
        b.wait_log(r'msg="connect failed".*HTTP 302 Found: redirect to '
                   r'ws://127.0.0.1:1/elsewhere \(not followed\)', T)
        deadline = time.monotonic() + 6
        while len(r503.times) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(r503.times), 2)
        self.assertGreaterEqual(r503.times[1] - r503.times[0], 1.9)
        self.assertNotIn("127.0.0.1:1 ", b.log())

    # ------------------------------------------------ DNS deadline

    @unittest.skipUnless(_can_unshare(), "needs unshare -m")
    def test_16_dns_bounded_by_connect_timeout(self):
        """A resolver that never answers: with connect_timeout = 1s the
        attempt ends after about 1 s (not glibc's 5 s x attempts), and
        SIGTERM stops the agent at once."""
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            dns.bind(("127.0.0.1", 53))
        except OSError as e:
            dns.close()
            self.skipTest("cannot bind 127.0.0.1:53: %s" % e)
        self.addCleanup(dns.close)     # receives queries, never answers
        wrapper = self.unshare_binary(
            hosts="127.0.0.1 localhost\n",
            resolv="nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        t0 = time.monotonic()
        a = self.agent("wss://cp.blackhole.invalid", ca_file=self.ca,
                       binary=wrapper, cp={"connect_timeout": "1s"})
        a.wait_log(r'msg="connect failed".*timed out after 1000 ms during '
                   r'DNS lookup', 8)
        took = time.monotonic() - t0
        self.assertLess(took, 3.5, "first attempt took %.1fs" % took)
        time.sleep(0.5)                # now in backoff or the next lookup
        t1 = time.monotonic()
        rc = a.stop(timeout=10)
        self.assertEqual(rc, 0, a.log_tail())
        self.assertLess(time.monotonic() - t1, 3.0, "stop was slow")

    # ------------------------------------------------ half-open link

    def test_17_half_open_runner_link(self):
        cp = self.peer(certdir=PKI)
        runner = self.peer(role="runner", certdir=PKI)
        rl = relay.Relay(runner.port).start()
        self.addCleanup(rl.stop)
        a = self.agent(cp.url, ca_file=self.ca, cp={"ping_interval": "1s"},
                       runner={"ping_interval": "1s", "ping_timeout": "2s"})
        self.round_trip(cp, a)
        cp.assign_runner("wss://localhost:%d" % rl.port, RUNNER_TOKEN,
                         "runner-half-open")
        try:
            runner.wait_connected(T)
            cp.wait_for(heartbeat_with(cp=True, runner=True), T)
        except AssertionError as e:
            self.fail_with_log(a, str(e))
        time.sleep(1.5)                    # a few pings went through
        hb = ws_sim.data_of(cp.wait_for(heartbeat_with(runner=True), T,
                                        after=cp.mark()))
        # rtt_ms per link: the round trip of the last ping (loopback).
        for link in ("control_plane", "runner"):
            rtt = hb[link]["rtt_ms"]
            self.assertIsInstance(rtt, int, "%s rtt_ms: %r" % (link, rtt))
            self.assertTrue(0 <= rtt < 1000, rtt)
        rl.mode("blackhole")
        t0 = time.monotonic()
        m = a.wait_log(r'msg="disconnected" endpoint=runner reason="no '
                       r'frame received for 2(s|000 ?ms)"', 6)
        took = time.monotonic() - t0
        self.assertLessEqual(took, 2 + 1, "half-open link noticed after "
                             "%.2fs (ping_timeout 2s)" % took)
        self.assertTrue(m)
        mark = cp.mark()
        try:
            cp.wait_for(heartbeat_with(cp=True, runner=False), T, after=mark)
        except AssertionError as e:
            self.fail_with_log(a, str(e))
        rl.mode("pass")
        try:
            runner.wait_connected(T + 5, count=2)
            cp.wait_for(heartbeat_with(cp=True, runner=True), T + 5,
                        after=cp.mark())
        except AssertionError as e:
            self.fail_with_log(a, str(e))
        # The Control Plane link was never disturbed.
        self.assertEqual(cp.connection_count, 1)
        self.assertTrue(cp.connections[0].open)
        self.assertEqual(count(r'msg="disconnected" endpoint=control_plane',
                               a.log()), 0)
        self.assert_no_secrets(a)


if __name__ == "__main__":
    harness.main()
