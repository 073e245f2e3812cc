"""The health listener ([health] listen) of the real agent binary:
/healthz, /readyz and /metrics, between the Control Plane and Runner
simulators (tests/sim/ws_sim.py) and the Kubernetes API simulator
(tests/sim/k8s_sim.py).

HealthFlow's methods run in name order and share one agent: listener up ->
/readyz 503 until the CP acknowledges the registration -> 200 -> operations
(3 deploys, 2 scales, 1 failing scale, 1 redelivered request) counted
exactly in /metrics -> Kubernetes API down: /readyz 503 with the reason ->
API back: /readyz 200 again without any operation (worker 0 re-checks the
API every 10 s while it is unreachable) -> CP reconnect registers again ->
SIGTERM with an operation in flight: /readyz 503 "agent stopping" until the
listener closes.
HealthStartup covers start-up: a port in use is exit 3 with a clear log
line; an empty listen turns the listener off; an IPv6 address works.
Metric names and /readyz rules: docs/OPERATIONS.md "Health and metrics".
"""
import functools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "lib"))
sys.path.insert(0, os.path.join(TESTS, "sim"))
import harness  # noqa: E402
import agentproc  # noqa: E402
import ws_sim  # noqa: E402
from ws_sim import make_reply, reply_to  # noqa: E402

try:
    import k8s_sim  # noqa: E402
except ImportError as e:
    k8s_sim = None
    K8S_IMPORT_ERROR = str(e)

CP_TOKEN = "cp-" + secrets.token_hex(8)
RUNNER_TOKEN = "runner-" + secrets.token_hex(8)
K8S_TOKEN = "k8s-" + secrets.token_hex(8)

T_START = 15
T_OP = 20


# ---------------------------------------------------------------- HTTP

def http(method, url, timeout=5):
    """(status, headers, body text) of one request; HTTP errors included."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format 0.0.4 -> ({(name, frozenset(labels)): value},
    {family: type}). Raises AssertionError on a malformed line or a sample
    whose family has no # TYPE before it."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ", 3)
            assert fam not in types, "two TYPE lines for %s" % fam
            types[fam] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "malformed line %r" % line
        name, labels, value = m.groups()
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in types:
                fam = name[:-len(suffix)]
        assert fam in types, "sample before its TYPE: %r" % line
        lab = frozenset(LABEL.findall(labels or ""))
        key = (name, lab)
        assert key not in samples, "duplicate sample %r" % line
        samples[key] = float(value)
    return samples, types


def metric(samples, name, **labels):
    """The value of one sample, or None."""
    return samples.get((name, frozenset(labels.items())))


def with_log(f):
    """On failure, append the tail of the agent's log to the message."""
    @functools.wraps(f)
    def wrapper(self):
        try:
            return f(self)
        except AssertionError as e:
            agent = type(self).agent
            tail = agent.log_tail(40) if agent else "(no agent)"
            raise AssertionError("%s\n--- agent log tail ---\n%s"
                                 % (e, tail)) from None
    return wrapper


class HealthFlow(unittest.TestCase):
    agent = None
    skip_reason = None

    @classmethod
    def setUpClass(cls):
        if not agentproc.have_agent():
            cls.skip_reason = "%s not built (run make)" % agentproc.AGENT_BIN
            return
        if k8s_sim is None:
            cls.skip_reason = "k8s_sim not importable: %s" % K8S_IMPORT_ERROR
            return
        cls.tmp = tempfile.mkdtemp(prefix="pipeops-health-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        certdir = os.path.join(cls.tmp, "pki")
        subprocess.run([os.path.join(TESTS, "lib", "certs.sh"), certdir],
                       check=True, timeout=120, capture_output=True)
        cls.ca = os.path.join(certdir, "ca.pem")
        # No automatic register ack: test_02 sees the agent unregistered.
        cls.cp = ws_sim.WsPeer(role="cp", certdir=certdir, token=CP_TOKEN,
                               name="CP", auto_ack=False)
        cls.addClassCleanup(cls.cp.stop)
        cls.cp.start()
        cls.runner = ws_sim.WsPeer(role="runner", certdir=certdir,
                                   token=RUNNER_TOKEN, name="Runner")
        cls.addClassCleanup(cls.runner.stop)
        cls.runner.start()
        cls.k8s = k8s_sim.K8sSim(port=0, certdir=certdir, token=K8S_TOKEN)
        cls.addClassCleanup(cls.k8s.stop)
        cls.k8s.start()
        cfg = agentproc.base_config(
            cls.tmp, cluster_name="health", cp_url=cls.cp.url,
            cp_token=CP_TOKEN, ca_file=cls.ca,
            k8s_url="https://localhost:%d" % cls.k8s.port,
            k8s_token=K8S_TOKEN, agent_id="agent-health", heartbeat="1s",
            log_level="info")
        # register_timeout 5 s would re-register under test_02; keep one
        cfg["control_plane"]["register_timeout"] = "60s"
        cfg["kubernetes"]["request_timeout"] = "3s"
        cfg["kubernetes"]["connect_timeout"] = "2s"
        cls.listen = cfg["health"]["listen"]
        cls.base = "http://%s" % cls.listen
        cls.agent = agentproc.Agent(cls.tmp, cfg)
        cls.addClassCleanup(cls.agent.kill)
        cls.agent.start()

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def get(self, path, method="GET"):
        return http(method, self.base + path)

    def scrape(self):
        status, headers, body = self.get("/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["Content-Type"].startswith(
            "text/plain; version=0.0.4"), headers["Content-Type"])
        return parse_metrics(body)[0]

    def wait_metrics(self, expect, timeout=10):
        """Scrape until every (name, labels, value) in expect holds."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.scrape()
            wrong = [(n, lab, metric(s, n, **lab), v)
                     for n, lab, v in expect if metric(s, n, **lab) != v]
            if not wrong:
                return s
            if time.monotonic() > deadline:
                self.fail("metrics (name, labels, got, want): %r" % wrong)
            time.sleep(0.1)

    def wait_ready(self, want_status, timeout):
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.get("/readyz")
            if status == want_status:
                return body
            if time.monotonic() > deadline:
                self.fail("/readyz stayed %d (%r), want %d"
                          % (status, body, want_status))
            time.sleep(0.1)

    # ------------------------------------------------ endpoints

    @with_log
    def test_01_healthz_and_routing(self):
        self.agent.wait_log(r'msg="health listener started" listen=%s'
                            % re.escape(self.listen), T_START)
        status, headers, body = self.get("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        status, _, body = self.get("/healthz?verbose=1")
        self.assertEqual(status, 200, "query strings are ignored")
        status, headers, body = self.get("/healthz", "HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertEqual(headers["Content-Length"], "3")
        for path in ("/", "/health", "/metrics/x", "/readyz/"):
            self.assertEqual(self.get(path)[0], 404, path)
        for method in ("POST", "PUT", "DELETE"):
            status, headers, _ = self.get("/metrics", method)
            self.assertEqual(status, 405, method)
            self.assertEqual(headers["Allow"], "GET, HEAD")

    @with_log
    def test_02_not_ready_until_registered(self):
        self.cp.wait_for("register", T_START)
        status, _, body = self.get("/readyz")
        self.assertEqual(status, 503)
        self.assertIn("control plane not registered", body.splitlines())
        s = self.wait_metrics([
            ("pipeops_agent_registered", {}, 0),
            ("pipeops_agent_connected", {"endpoint": "control_plane"}, 1),
            ("pipeops_agent_connection_state",
             {"endpoint": "control_plane", "state": "open"}, 1),
            ("pipeops_agent_connection_state",
             {"endpoint": "runner", "state": "idle"}, 1),
            ("pipeops_agent_messages_sent_total",
             {"endpoint": "control_plane", "type": "register"}, 1),
        ])
        self.assertEqual(metric(s, "pipeops_agent_reconnects_total",
                                endpoint="control_plane"), 0)

    @with_log
    def test_03_ready_after_registration(self):
        reg = self.cp.wait_for("register", T_START)
        self.cp.send(make_reply(reg, True, agent_id="agent-health"))
        self.cp.auto_ack = True   # re-registrations from here on
        body = self.wait_ready(200, T_START)
        self.assertEqual(body, "ok\n")
        self.wait_metrics([
            ("pipeops_agent_registered", {}, 1),
            ("pipeops_agent_kubernetes_reachable", {}, 1),
            ("pipeops_agent_messages_received_total",
             {"endpoint": "control_plane", "type": "response"}, 1),
        ])

    # ------------------------------------------------ counters

    @with_log
    def test_04_operations_counted_exactly(self):
        msg = self.cp.assign_runner(self.runner.url, RUNNER_TOKEN, "r-1")
        self.cp.wait_for(reply_to(msg["id"]), T_START)
        self.runner.wait_connected(T_START)
        for i in range(3):
            r = self.runner.call("deploy", {"name": "web%d" % i,
                                            "image": "nginx:1.27",
                                            "replicas": 1},
                                 T_OP, id="dep-%d" % i)
            self.assertIs(r["data"].get("success"), True, r)
        for i in range(2):
            r = self.runner.call("scale", {"name": "web%d" % i,
                                           "replicas": 2 + i},
                                 T_OP, id="scale-%d" % i)
            self.assertIs(r["data"].get("success"), True, r)
        r = self.runner.call("scale", {"name": "missing", "replicas": 1},
                             T_OP, id="scale-missing")
        self.assertIs(r["data"].get("success"), False, r)
        # a redelivered request is answered again, not executed again
        r = self.runner.call("deploy", {"name": "web0", "image": "x",
                                        "replicas": 1}, T_OP, id="dep-0")
        self.assertIs(r["data"].get("success"), True, r)
        # malformed input: counted as type "invalid", no operation
        mark = self.runner.mark()
        self.runner.send_raw("not json")
        self.runner.wait_for(lambda m: m.get("type") == "response" and
                             bool(m.get("error")), 5, after=mark)

        s = self.wait_metrics([
            ("pipeops_agent_operations_total",
             {"type": "deploy", "outcome": "success"}, 3),
            ("pipeops_agent_operations_total",
             {"type": "deploy", "outcome": "failure"}, 0),
            ("pipeops_agent_operations_total",
             {"type": "scale", "outcome": "success"}, 2),
            ("pipeops_agent_operations_total",
             {"type": "scale", "outcome": "failure"}, 1),
            ("pipeops_agent_operations_total",
             {"type": "delete", "outcome": "success"}, 0),
            ("pipeops_agent_operation_duration_seconds_count",
             {"type": "deploy"}, 3),
            ("pipeops_agent_operation_duration_seconds_bucket",
             {"type": "deploy", "le": "+Inf"}, 3),
            ("pipeops_agent_operation_duration_seconds_count",
             {"type": "scale"}, 3),
            ("pipeops_agent_messages_received_total",
             {"endpoint": "runner", "type": "deploy"}, 4),
            ("pipeops_agent_messages_received_total",
             {"endpoint": "runner", "type": "scale"}, 3),
            ("pipeops_agent_messages_received_total",
             {"endpoint": "runner", "type": "invalid"}, 1),
            ("pipeops_agent_messages_sent_total",
             {"endpoint": "runner", "type": "response"}, 8),
            ("pipeops_agent_messages_received_total",
             {"endpoint": "control_plane", "type": "runner_assigned"}, 1),
            ("pipeops_agent_duplicate_requests_total",
             {"endpoint": "runner"}, 1),
            ("pipeops_agent_duplicate_requests_total",
             {"endpoint": "control_plane"}, 0),
            ("pipeops_agent_connected", {"endpoint": "runner"}, 1),
            ("pipeops_agent_reconnects_total", {"endpoint": "runner"}, 0),
            ("pipeops_agent_connect_failures", {"endpoint": "runner"}, 0),
            ("pipeops_agent_operations_in_flight", {}, 0),
            ("pipeops_agent_worker_queue_depth", {"endpoint": "runner"}, 0),
            ("pipeops_agent_outbox_messages", {"endpoint": "runner"}, 0),
            ("pipeops_agent_outbox_bytes", {"endpoint": "runner"}, 0),
            ("pipeops_agent_open_streams", {}, 0),
        ])
        # no messages of types nobody sent
        self.assertIsNone(metric(s, "pipeops_agent_messages_received_total",
                                 endpoint="runner", type="delete"))
        # histogram buckets are cumulative and end at _count
        for typ in ("deploy", "scale"):
            buckets = sorted(
                (float("inf") if dict(lab)["le"] == "+Inf"
                 else float(dict(lab)["le"]), v)
                for (n, lab), v in s.items()
                if n == "pipeops_agent_operation_duration_seconds_bucket"
                and dict(lab)["type"] == typ)
            self.assertEqual(len(buckets), 13, typ)
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts), typ)
            self.assertEqual(counts[-1], metric(
                s, "pipeops_agent_operation_duration_seconds_count",
                type=typ))
            self.assertGreater(metric(
                s, "pipeops_agent_operation_duration_seconds_sum",
                type=typ), 0.0)
        self.assertGreater(metric(s, "pipeops_agent_uptime_seconds"), 0)
        self.assertEqual(self.get("/readyz")[0], 200,
                         "a NotFound answer keeps the API reachable")

    # ------------------------------------------------ Kubernetes down

    @with_log
    def test_05_kubernetes_down_not_ready(self):
        self.k8s.set_fault("down")
        r = self.runner.call("get_resources", {}, T_OP, id="res-down")
        self.assertIs(r["data"].get("success"), False, r)
        status, _, body = self.get("/readyz")
        self.assertEqual(status, 503, body)
        self.assertTrue(body.startswith("kubernetes API unreachable: "), body)
        self.assertGreater(len(body.strip()),
                           len("kubernetes API unreachable: "))
        self.assertNotIn("control plane", body)
        self.wait_metrics([
            ("pipeops_agent_kubernetes_reachable", {}, 0),
            ("pipeops_agent_operations_total",
             {"type": "get_resources", "outcome": "failure"}, 1),
        ])
        self.assertEqual(self.get("/healthz")[0], 200,
                         "liveness does not depend on Kubernetes")

    @with_log
    def test_06_kubernetes_back_ready_without_traffic(self):
        self.k8s.set_fault(None)
        # worker 0 re-checks every 10 s while the API is unreachable
        body = self.wait_ready(200, 25)
        self.assertEqual(body, "ok\n")
        s = self.scrape()
        self.assertEqual(metric(s, "pipeops_agent_kubernetes_reachable"), 1)
        self.assertEqual(metric(s, "pipeops_agent_operations_total",
                                type="get_resources", outcome="success"), 0,
                         "readiness came back without an operation")

    @with_log
    def test_07_cp_reconnect_registers_again(self):
        count = self.cp.connection_count
        self.cp.kill_connections()
        # registered drops with the link; the auto ack of the next
        # register restores it
        self.cp.wait_connected(T_START, count=count + 1)
        self.wait_ready(200, T_START)
        self.wait_metrics([
            ("pipeops_agent_reconnects_total",
             {"endpoint": "control_plane"}, 1),
            ("pipeops_agent_messages_sent_total",
             {"endpoint": "control_plane", "type": "register"}, 2),
        ])

    @with_log
    def test_08_stopping_not_ready_then_listener_closed(self):
        # one slow API call keeps an operation in flight after SIGTERM
        self.k8s.set_fault("slow:2", match="deployments/web0/scale", times=1)
        mark = self.runner.mark()
        rid = self.runner.request("scale", {"name": "web0", "replicas": 4},
                                  id="scale-slow")
        time.sleep(0.5)   # read and handed to a worker
        self.agent.send_signal(signal.SIGTERM)
        body = self.wait_ready(503, 5)
        self.assertEqual(body.splitlines()[0], "agent stopping", body)
        self.assertEqual(self.get("/healthz")[0], 200)
        # the operation finishes and is answered before the exit
        r = self.runner.wait_for(reply_to(rid), 10, after=mark)
        self.assertIs(r["data"].get("success"), True, r)
        self.assertEqual(self.agent.stop(timeout=15), 0)
        host, port = self.listen.rsplit(":", 1)
        with self.assertRaises(OSError):
            socket.create_connection((host, int(port)), timeout=2).close()
        host, port = self.listen.rsplit(":", 1)
        with self.assertRaises(OSError):
            socket.create_connection((host, int(port)), timeout=2).close()


class HealthStartup(unittest.TestCase):
    """Start-up with the listener misconfigured, off, or on IPv6."""

    def setUp(self):
        if not agentproc.have_agent():
            self.skipTest("%s not built" % agentproc.AGENT_BIN)
        self.tmp = tempfile.mkdtemp(prefix="pipeops-health-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # a CP that is never there: start-up does not wait for it
        self.cfg = agentproc.base_config(
            self.tmp, cluster_name="health",
            cp_url="ws://127.0.0.1:%d" % harness.free_port(),
            cp_token="t", k8s_url="http://127.0.0.1:%d"
            % harness.free_port(), log_level="info")

    def start(self):
        agent = agentproc.Agent(self.tmp, self.cfg)
        self.addCleanup(agent.kill)
        return agent.start()

    def test_port_in_use_is_exit_3(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            self.cfg["health"]["listen"] = "127.0.0.1:%d" % s.getsockname()[1]
            agent = self.start()
            rc = agent.wait(15)
        self.assertEqual(rc, 3, agent.log_tail())
        log = agent.log()
        self.assertRegex(log, r'level=error .*msg="cannot start the health '
                              r'listener" error="cannot listen on '
                              r'127\.0\.0\.1:\d+: Address already in use"')
        self.assertNotIn('msg="started"', log)

    def test_empty_listen_is_off(self):
        self.cfg["health"]["listen"] = ""
        agent = self.start()
        agent.wait_log(r'msg="started"', T_START)
        self.assertNotIn("health listener", agent.log())
        self.assertEqual(agent.stop(), 0)

    def test_ipv6_listen(self):
        try:
            port = harness.free_port("::1")
        except OSError:
            self.skipTest("no IPv6 loopback")
        self.cfg["health"]["listen"] = "[::1]:%d" % port
        agent = self.start()
        agent.wait_log(r'msg="started"', T_START)
        status, _, body = http("GET", "http://[::1]:%d/healthz" % port)
        self.assertEqual((status, body), (200, "ok\n"))
        status, _, body = http("GET", "http://[::1]:%d/readyz" % port)
        self.assertEqual(status, 503)
        self.assertEqual(body.splitlines()[0], "control plane not registered")
        self.assertRegex(body.splitlines()[1],
                         r"^kubernetes API unreachable: (not checked yet|"
                         r"cannot reach the Kubernetes API at )")
        self.assertEqual(agent.stop(), 0)


if __name__ == "__main__":
    harness.main()
