"""Operations beyond deploy/scale/delete, through the real agent binary:
command logs, proxy_request, streams (watch, follow logs, proxy_cancel,
link drop, 200 at once, a slow Runner), and the error paths of every
operation (NotFound, AlreadyExists, Conflict retried, Forbidden, Invalid,
500, timeout, API down). Contract: PROTOCOL.md 4.5-4.7, docs/PROTOCOL.md.

One agent for the whole file (tests run in name order and share it), the
Runner simulator (ws_sim, wss) and the Kubernetes simulator (k8s_sim,
https). The Control Plane is there only to assign the Runner.
"""
import base64
import functools
import json
import os
import secrets
import shutil
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
import ws_sim  # noqa: E402
from ws_sim import reply_to  # noqa: E402

try:
    import k8s_sim  # noqa: E402
except ImportError as e:
    k8s_sim = None
    K8S_IMPORT_ERROR = str(e)

CP_TOKEN = "cp-" + secrets.token_hex(16)
RUNNER_TOKEN = "runner-" + secrets.token_hex(16)
K8S_TOKEN = "k8s-" + secrets.token_hex(16)
NS = "ops"
MAX_STREAMS = 210
MAX_LOG = 1024              # [kubernetes] max_log_bytes = 1K
T_OP = 15


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text or "")


def with_log(f):
    """On failure, append the tail of the agent's log to the message."""
    @functools.wraps(f)
    def wrapper(self):
        try:
            return f(self)
        except AssertionError as e:
            agent = type(self).agent
            tail = agent.log_tail(40) if agent else "(no agent)"
            raise AssertionError("%s\n--- agent log tail ---\n%s" % (
                e, tail)) from None
    return wrapper


def stream_msgs(peer, sid, after=0):
    """Every proxy_response of stream sid received after mark `after`."""
    return [m for m in peer.received[after:]
            if m.get("type") == "proxy_response" and
            isinstance(m.get("data"), dict) and
            m["data"].get("stream_id") == sid]


def is_done(sid):
    def pred(m):
        d = m.get("data")
        return (m.get("type") == "proxy_response" and isinstance(d, dict)
                and d.get("stream_id") == sid and d.get("done") is True)
    pred.__doc__ = "done of stream %s" % sid
    return pred


def is_chunk(sid):
    def pred(m):
        d = m.get("data")
        return (m.get("type") == "proxy_response" and isinstance(d, dict)
                and d.get("stream_id") == sid and d.get("chunk") is True)
    pred.__doc__ = "chunk of stream %s" % sid
    return pred


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Operations(unittest.TestCase):
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
        cls.tmp = tempfile.mkdtemp(prefix="pipeops-ops-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.certdir = os.path.join(cls.tmp, "pki")
        subprocess.run([os.path.join(TESTS, "lib", "certs.sh"), cls.certdir],
                       check=True, timeout=120, stdout=subprocess.DEVNULL)
        cls.ca = os.path.join(cls.certdir, "ca.pem")
        cls.cp = ws_sim.WsPeer(role="cp", certdir=cls.certdir,
                               token=CP_TOKEN, name="CP")
        cls.addClassCleanup(cls.cp.stop)
        cls.cp.start()
        cls.runner = ws_sim.WsPeer(role="runner", certdir=cls.certdir,
                                   token=RUNNER_TOKEN, name="Runner")
        cls.addClassCleanup(cls.runner.stop)
        cls.runner.start()
        cls.k8s = k8s_sim.K8sSim(port=0, certdir=cls.certdir,
                                 token=K8S_TOKEN)
        cls.addClassCleanup(cls.k8s.stop)
        cls.k8s.start()
        cls.k8s.create({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": NS}})
        cls.k8s.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "two", "namespace": NS},
            "spec": {"containers": [{"name": "c1", "image": "nginx"},
                                    {"name": "c2", "image": "busybox"}]}})

        cfg = agentproc.base_config(
            cls.tmp, cluster_name="ops-cluster", cp_url=cls.cp.url,
            cp_token=CP_TOKEN, ca_file=cls.ca,
            k8s_url="https://localhost:%d" % cls.k8s.port,
            k8s_token=K8S_TOKEN, agent_id="agent-ops", name="ops-agent",
            heartbeat="1s", log_level="info", workers=2)
        cfg["runner"]["max_streams"] = MAX_STREAMS
        cfg["kubernetes"]["request_timeout"] = "2s"
        cfg["kubernetes"]["proxy_deny"] = "/api/v1/secrets"
        cfg["kubernetes"]["max_log_bytes"] = "1K"
        cls.agent = agentproc.Agent(cls.tmp, cfg)
        cls.addClassCleanup(cls.agent.kill)
        cls.agent.start()
        try:
            cls.cp.wait_for("register", 30)
            cls.cp.assign_runner(cls.runner.url, RUNNER_TOKEN, "runner-ops")
            cls.runner.wait_connected(30)
        except AssertionError as e:
            raise AssertionError("%s\n--- agent log tail ---\n%s" % (
                e, cls.agent.log_tail(40))) from None

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)
        self.assertTrue(self.agent.alive, "the agent exited")

    # ------------------------------------------------ helpers

    def call(self, mtype, data, timeout=T_OP):
        return self.runner.call(mtype, data, timeout)

    def ok(self, reply, rid=None):
        self.assertEqual(reply.get("type"), "response",
                         ws_sim.summarize(reply))
        self.assertIsNone(reply.get("error"), ws_sim.summarize(reply))
        d = reply["data"]
        self.assertIs(d.get("success"), True, json.dumps(d)[:300])
        if rid:
            self.assertEqual(reply.get("request_id"), rid)
            self.assertEqual(d.get("request_id"), rid)
        return d

    def failed(self, reply, code=None, reason=None, error=None):
        self.assertEqual(reply.get("type"), "response",
                         ws_sim.summarize(reply))
        d = reply["data"]
        self.assertIs(d.get("success"), False, json.dumps(d)[:300])
        self.assertTrue(reply.get("error"))
        self.assertEqual(d.get("error"), reply["error"])
        if code is not None:
            self.assertEqual(d.get("code"), code, json.dumps(d)[:300])
        else:
            self.assertNotIn("code", d)
        if reason is not None:
            self.assertEqual(d.get("reason"), reason, json.dumps(d)[:300])
        if error is not None:
            self.assertEqual(reply["error"], error)
        return d

    def proxy(self, data, rid=None, timeout=T_OP):
        """proxy_request; checks the envelope; returns data."""
        rid = rid or ws_sim.new_id("px")
        mark = self.runner.mark()
        self.runner.request("proxy_request", data, id=rid)
        r = self.runner.wait_for(reply_to(rid), timeout, after=mark)
        self.assertEqual(r.get("type"), "proxy_response",
                         ws_sim.summarize(r))
        self.assertEqual(r.get("request_id"), rid)
        d = r["data"]
        self.assertEqual(d.get("request_id"), rid)
        self.assertIn("status_code", d)
        self.assertIsInstance(d.get("headers"), dict)
        self.assertIsInstance(d.get("body"), str)
        if d.get("error"):
            self.assertEqual(r.get("error"), d["error"])
        else:
            self.assertNotIn("error", r)
        return d

    def api_requests(self):
        return len(self.k8s.requests)

    def open_stream(self, mtype, data, sid=None):
        sid = sid or ws_sim.new_id("st")
        self.runner.request(mtype, data, id=sid)
        return sid

    def cancel(self, sid, timeout=T_OP):
        """proxy_cancel; returns (the done message, the cancel reply)."""
        mark = self.runner.mark()
        cid = self.runner.request("proxy_cancel", {"stream_id": sid})
        done = self.runner.wait_for(is_done(sid), timeout, after=mark)
        rep = self.runner.wait_for(reply_to(cid), timeout, after=mark)
        return done, rep

    def wait_streams(self, n, timeout=10):
        self.k8s.wait_for(lambda: self.k8s.streams == n, timeout)

    # ------------------------------------------------ 1: command logs

    @with_log
    def test_01_logs_tail_container(self):
        self.k8s.append_log(NS, "two", "c2", "alpha\nbeta\ngamma\n")
        rid = ws_sim.new_id("logs")
        r = self.call("command", {
            "id": "c1", "type": "logs",
            "target": {"type": "pod", "name": "two", "namespace": NS,
                       "container": "c2"},
            "args": {"lines": "3"}})
        d = self.ok(r)
        self.assertEqual(d["id"], "c1")
        self.assertEqual(d["output"], "alpha\nbeta\ngamma\n")
        self.assertEqual(d["exit_code"], 0)
        self.assertRegex(d["duration"], r"^\d+(\.\d+)?(ms|s)$")
        self.assertNotIn("truncated", d)
        # lines as a number, the other container; no data.id: request id
        r = self.runner.call("command", {
            "type": "logs", "target": {"name": "two", "namespace": NS,
                                       "container": "c1"},
            "args": {"lines": 2}}, T_OP, id=rid)
        d = self.ok(r, rid)
        self.assertEqual(d["id"], rid)
        self.assertEqual(d["output"], "two c1 line 9\ntwo c1 line 10\n")
        q = [p for m, p, s in self.k8s.requests if "/pods/two/log" in p]
        self.assertIn("/api/v1/namespaces/ops/pods/two/log?container=c1&"
                      "limitBytes=1025&tailLines=2", q)

    @with_log
    def test_02_logs_truncated(self):
        line = "x" * 99 + "\n"
        self.k8s.append_log(NS, "two", "c1", line * 30)     # 3000 bytes
        d = self.ok(self.call("command", {
            "type": "logs", "target": {"name": "two", "namespace": NS,
                                       "container": "c1"},
            "args": {"lines": "30"}}))
        self.assertIs(d.get("truncated"), True)
        self.assertEqual(len(d["output"]), MAX_LOG)
        self.assertEqual(d["output"], (line * 30)[:MAX_LOG])

    @with_log
    def test_03_command_errors(self):
        rid = ws_sim.new_id("cmd")
        r = self.runner.call("command", {
            "id": "x1", "type": "exec",
            "target": {"name": "two", "namespace": NS}}, T_OP, id=rid)
        d = self.failed(r, reason="Invalid",
                        error="unsupported command type: exec")
        self.assertEqual(d["request_id"], rid)
        self.assertEqual(d["id"], "x1")
        self.assertEqual(d["exit_code"], 1)
        self.assertEqual(d["output"], "")
        # NotFound from the API
        r = self.call("command", {
            "type": "logs", "target": {"name": "ghost", "namespace": NS}})
        d = self.failed(r, code=404, reason="NotFound",
                        error='pods "ghost" not found')
        self.assertEqual(d["exit_code"], 1)
        # a bad container: 400 from the API
        r = self.call("command", {
            "type": "logs", "target": {"name": "two", "namespace": NS,
                                       "container": "c9"}})
        self.failed(r, code=400, reason="BadRequest",
                    error="container c9 is not valid for pod two")

    # ------------------------------------------------ 2: proxy_request

    @with_log
    def test_10_proxy_get_list(self):
        d = self.proxy({"method": "GET",
                        "path": "/api/v1/namespaces/%s/pods" % NS,
                        "query": {"fieldSelector": ["metadata.name=two"],
                                  "limit": 10},
                        "headers": {"Accept": "application/json",
                                    "X-Dropped": "1"}}, rid="p1")
        self.assertEqual(d["id"], "p1")
        self.assertEqual(d["status_code"], 200)
        self.assertTrue(d["headers"]["Content-Type"].startswith(
            "application/json"), d["headers"])
        self.assertIn("Audit-Id", d["headers"])
        body = json.loads(unb64(d["body"]))
        self.assertEqual(body["kind"], "PodList")
        self.assertEqual([p["metadata"]["name"] for p in body["items"]],
                         ["two"])
        self.assertIn(("GET", "/api/v1/namespaces/ops/pods?fieldSelector="
                       "metadata.name%3Dtwo&limit=10", 200),
                      list(self.k8s.requests))

    @with_log
    def test_11_proxy_get_missing(self):
        d = self.proxy({"method": "GET",
                        "path": "/apis/apps/v1/namespaces/%s/deployments/"
                        "nope" % NS})
        self.assertEqual(d["status_code"], 404)
        self.assertNotIn("error", d)
        st = json.loads(unb64(d["body"]))
        self.assertEqual((st["kind"], st["reason"], st["code"]),
                         ("Status", "NotFound", 404))

    @with_log
    def test_12_proxy_post_body(self):
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "via-proxy", "namespace": NS},
               "spec": {"selector": {"app": "x"},
                        "ports": [{"port": 80}]}}
        d = self.proxy({"method": "POST",
                        "path": "/api/v1/namespaces/%s/services" % NS,
                        "headers": {"Content-Type": "application/json"},
                        "body": b64(json.dumps(svc))})
        self.assertEqual(d["status_code"], 201, unb64(d["body"])[:300])
        made = json.loads(unb64(d["body"]))
        self.assertEqual(made["metadata"]["name"], "via-proxy")
        self.assertIsNotNone(self.k8s.get("services", NS, "via-proxy"))
        # AlreadyExists is the API's answer, not an agent error
        d = self.proxy({"method": "POST",
                        "path": "/api/v1/namespaces/%s/services" % NS,
                        "body": b64(json.dumps(svc))})
        self.assertEqual(d["status_code"], 409)
        self.assertNotIn("error", d)
        self.assertEqual(json.loads(unb64(d["body"]))["reason"],
                         "AlreadyExists")
        # 422 Invalid with causes
        bad = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "Bad_Name", "namespace": NS},
               "spec": {}}
        d = self.proxy({"method": "POST",
                        "path": "/apis/apps/v1/namespaces/%s/deployments"
                        % NS, "body": b64(json.dumps(bad))})
        self.assertEqual(d["status_code"], 422)
        st = json.loads(unb64(d["body"]))
        self.assertEqual(st["reason"], "Invalid")
        self.assertTrue(st["details"]["causes"])

    @with_log
    def test_13_proxy_refused_without_call(self):
        cases = [
            ({"path": "/metrics"}, 403),
            ({"path": "/api/v1/../../metrics"}, 403),
            ({"path": "/api/%2e%2e/metrics"}, 403),
            ({"path": "/api/v1/namespaces/ops/pods%2ftwo"}, 403),
            ({"path": "/api/v1/secrets"}, 403),                  # deny
            ({"path": "/api/v1/secrets/x"}, 403),                # deny
            ({"path": "/api/v1/secret%73"}, 403),                # deny
            ({"path": "/api/v1/pods",
              "headers": {"Impersonate-User": "admin"}}, 403),
            ({"path": "/api/v1/pods",
              "headers": {"impersonate-group": "system:masters"}}, 403),
            ({"path": "/api/v1/pods", "method": "TRACE"}, 400),
            ({"path": "/api/v1/pods", "body": "not base64!"}, 400),
        ]
        before = self.api_requests()
        for data, code in cases:
            d = self.proxy(data)
            self.assertEqual(d["status_code"], code, data)
            self.assertTrue(d.get("error"), data)
            self.assertEqual(d["body"], "")
        self.assertEqual(self.api_requests(), before,
                         "a refused request reached the API")
        d = self.proxy({"path": "/api/v1/secrets"})
        self.assertEqual(d["error"], 'proxy path "/api/v1/secrets" refused: '
                         'denied by [kubernetes] proxy_deny')
        d = self.proxy({"path": "/api/v1/pods",
                        "headers": {"Impersonate-User": "admin"}})
        self.assertEqual(d["error"], 'proxy header "Impersonate-User" '
                         'refused: impersonation is not allowed')
        d = self.proxy({"path": "/version"})
        self.assertEqual(d["status_code"], 200)
        self.assertEqual(json.loads(unb64(d["body"]))["major"], "1")

    # ------------------------------------------------ 3: streams

    @with_log
    def test_20_watch_event_latency_and_cancel(self):
        rv = self.k8s.resource_version
        req = {"method": "GET", "path": "/apis/apps/v1/namespaces/%s/"
               "deployments" % NS,
               "query": {"watch": "true", "resourceVersion": rv}}
        sid = self.open_stream("proxy_request", req)
        self.wait_streams(1)
        # a redelivery of the open stream is not a second stream and gets
        # no reply of its own: the open stream's one done is its answer
        self.runner.request("proxy_request", req, id=sid)
        time.sleep(0.3)
        self.assertEqual(self.k8s.streams, 1)
        self.assertEqual([m for m in self.runner.received
                          if m.get("request_id") == sid and
                          not (m.get("data") or {}).get("chunk")], [])
        time.sleep(0.2)
        lat = []
        for i in range(3):
            mark = self.runner.mark()
            t0 = time.monotonic()
            self.k8s.create({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "w%d" % i, "namespace": NS},
                "spec": {"replicas": 0,
                         "selector": {"matchLabels": {"app": "w%d" % i}},
                         "template": {
                             "metadata": {"labels": {"app": "w%d" % i}},
                             "spec": {"containers": [
                                 {"name": "c", "image": "nginx"}]}}}})
            def added(m, sid=sid, name="w%d" % i):
                if not is_chunk(sid)(m):
                    return False
                evs = [json.loads(ln) for ln in
                       unb64(m["data"]["body"]).splitlines()]
                return any(e["type"] == "ADDED" and
                           e["object"]["metadata"]["name"] == name
                           for e in evs)
            m = self.runner.wait_for(added, 5, after=mark)
            lat.append(m.mono - t0)
            d = m["data"]
            self.assertEqual(m.get("request_id"), sid)
            self.assertIs(d["stream"], True)
            body = unb64(d["body"])
            self.assertTrue(body.endswith(b"\n"), body[-50:])
            for ln in body.splitlines():
                json.loads(ln)          # whole events only
        print("\n  watch event latency: %s ms" % ", ".join(
            "%.1f" % (x * 1000) for x in lat))
        self.assertLess(max(lat), 1.0)
        done, rep = self.cancel(sid)
        d = done["data"]
        self.assertEqual(d.get("status_code"), 200)
        self.assertIs(d.get("cancelled"), True)
        self.assertNotIn("error", d)
        self.assertNotIn("chunk", d)
        self.ok(rep)
        self.assertEqual(rep["data"]["stream_id"], sid)
        self.wait_streams(0)
        # exactly one done; a second cancel finds nothing
        self.assertEqual(len([m for m in stream_msgs(self.runner, sid)
                              if m["data"].get("done")]), 1)
        r = self.runner.call("proxy_cancel", {"stream_id": sid}, T_OP)
        self.failed(r, error="no open stream: %s" % sid)

    @with_log
    def test_21_follow_logs(self):
        sid = self.open_stream("command", {
            "type": "logs", "target": {"name": "two", "namespace": NS,
                                       "container": "c2"},
            "args": {"follow": True, "lines": "1"}})
        first = self.runner.wait_for(is_chunk(sid), 5)
        self.assertEqual(unb64(first["data"]["body"]), b"gamma\n")
        mark = self.runner.mark()
        self.k8s.append_log(NS, "two", "c2", "delta\n")
        m = self.runner.wait_for(is_chunk(sid), 5, after=mark)
        self.assertEqual(unb64(m["data"]["body"]), b"delta\n")
        done, rep = self.cancel(sid)
        self.assertIs(done["data"].get("cancelled"), True)
        self.wait_streams(0)

    @with_log
    def test_22_stream_errors(self):
        # refused by the policy: one done with 403, no call
        before = self.api_requests()
        sid = self.open_stream("proxy_request", {
            "path": "/api/v1/secrets", "query": {"watch": "1"}})
        done = self.runner.wait_for(is_done(sid), 5)
        self.assertEqual(done["data"]["status_code"], 403)
        self.assertEqual(done["error"], 'proxy path "/api/v1/secrets" '
                         'refused: denied by [kubernetes] proxy_deny')
        self.assertEqual(self.api_requests(), before)
        # an API error answer: done with its status and Status
        sid = self.open_stream("command", {
            "type": "logs", "target": {"name": "ghost", "namespace": NS},
            "args": {"follow": True}})
        done = self.runner.wait_for(is_done(sid), 5)
        self.assertEqual(done["data"]["status_code"], 404)
        self.assertEqual(done["error"], 'pods "ghost" not found')
        self.assertEqual(json.loads(unb64(done["data"]["body"]))["reason"],
                         "NotFound")
        # a watch from a compacted RV: 200, an ERROR 410 event, done
        self.k8s.compact()
        sid = self.open_stream("proxy_request", {
            "path": "/api/v1/namespaces/%s/pods" % NS,
            "query": {"watch": "true", "resourceVersion": "1"}})
        done = self.runner.wait_for(is_done(sid), 5)
        chunks = [m for m in stream_msgs(self.runner, sid)
                  if m["data"].get("chunk")]
        ev = json.loads(unb64(chunks[0]["data"]["body"]))
        self.assertEqual((ev["type"], ev["object"]["code"]), ("ERROR", 410))
        self.assertEqual(done["data"]["status_code"], 200)
        self.assertNotIn("error", done["data"])
        self.wait_streams(0)

    @with_log
    def test_23_streams_end_when_runner_drops(self):
        sids = [self.open_stream("proxy_request", {
            "path": "/api/v1/namespaces", "query": {"watch": "true"}})
            for _ in range(3)]
        for sid in sids:
            self.runner.wait_for(is_chunk(sid), 5)
        self.wait_streams(3)
        n = self.runner.connection_count
        self.runner.kill_connections()
        self.wait_streams(0, 10)
        self.runner.wait_connected(15, count=n + 1)
        for sid in sids:
            done = self.runner.wait_for(is_done(sid), 10)
            self.assertEqual(done["error"], "runner connection lost")

    @with_log
    def test_24_many_watches(self):
        n = 200
        t0 = time.monotonic()
        mark = self.runner.mark()
        sids = [self.open_stream("proxy_request", {
            "path": "/api/v1/namespaces", "query": {"watch": "true"}})
            for _ in range(n)]
        pending = set(sids)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for m in self.runner.received[mark:]:
                d = m.get("data")
                if isinstance(d, dict) and d.get("chunk"):
                    pending.discard(d.get("stream_id"))
                if isinstance(d, dict) and d.get("done") and \
                        d.get("stream_id") in pending:
                    self.fail("watch ended: %s" % ws_sim.summarize(m))
            time.sleep(0.05)
        self.assertFalse(pending, "%d watches got no event" % len(pending))
        t_first = time.monotonic() - t0
        self.assertEqual(self.k8s.streams, n)
        # beyond max_streams
        extra = [self.open_stream("proxy_request", {
            "path": "/api/v1/namespaces", "query": {"watch": "true"}})
            for _ in range(MAX_STREAMS - n + 1)]
        refused = []
        for sid in extra:
            m = self.runner.wait_for(
                lambda m, s=sid: (is_chunk(s)(m) or is_done(s)(m)), 10,
                after=mark)
            if m["data"].get("done"):
                refused.append(m)
        self.assertEqual(len(refused), 1)
        self.assertEqual(refused[0]["error"],
                         "too many open streams (max %d)" % MAX_STREAMS)
        self.assertEqual(refused[0]["data"]["status_code"], 429)
        hb = self.cp.wait_for(
            lambda m: m.get("type") == "heartbeat" and
            ws_sim.data_of(m)["operations"].get("streams") == MAX_STREAMS,
            5)
        self.assertIsNotNone(hb)
        t1 = time.monotonic()
        mark = self.runner.mark()
        for sid in sids + extra:
            self.runner.request("proxy_cancel", {"stream_id": sid})
        left = set(sids + extra) - {refused[0]["data"]["stream_id"]}
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for m in self.runner.received[mark:]:
                d = m.get("data")
                if isinstance(d, dict) and d.get("done"):
                    left.discard(d.get("stream_id"))
            time.sleep(0.05)
        self.assertFalse(left, "%d streams without done" % len(left))
        self.wait_streams(0, 15)
        print("\n  %d watches: all first events in %.2f s; %d cancelled "
              "and closed in %.2f s" % (n, t_first, MAX_STREAMS,
                                         time.monotonic() - t1))
        self.cp.wait_for(
            lambda m: m.get("type") == "heartbeat" and
            ws_sim.data_of(m)["operations"].get("streams") == 0, 5,
            after=len(self.cp.received) - 1)

    @with_log
    def test_25_slow_runner_memory_flat(self):
        stop = threading.Event()
        line = ("y" * 1000) + "\n"
        written = [0]

        def writer():
            while not stop.is_set():
                self.k8s.append_log(NS, "two", "c1", line * 50)
                written[0] += len(line) * 50
                time.sleep(0.005)
        sid = self.open_stream("command", {
            "type": "logs", "target": {"name": "two", "namespace": NS,
                                       "container": "c1"},
            "args": {"follow": True, "lines": "0"}})
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        try:
            self.runner.wait_for(is_chunk(sid), 5)
            time.sleep(1)
            self.runner.pause_reading()
            time.sleep(1)
            pid = self.agent.pid
            samples = []
            w0 = written[0]
            for _ in range(20):
                samples.append(rss_kib(pid))
                time.sleep(0.5)
            w1 = written[0]
            got = len(stream_msgs(self.runner, sid))
        finally:
            stop.set()
            th.join()
            self.runner.resume_reading()
        growth = max(samples) - samples[0]
        print("\n  VmRSS under a slow Runner (KiB, every 0.5 s): %s; "
              "growth %d KiB while the pod wrote %d MiB of log" % (
                  samples, growth, (w1 - w0) >> 20))
        self.assertLess(growth, 16 * 1024)
        done, _ = self.cancel(sid, 30)
        self.assertIs(done["data"].get("cancelled"), True)
        self.assertGreater(len(stream_msgs(self.runner, sid)), got)
        self.wait_streams(0)

    # ------------------------------------------------ 4: error paths

    @with_log
    def test_30_error_paths(self):
        k8s = self.k8s
        dep = {"name": "err-web", "namespace": NS, "image": "nginx:1.27",
               "replicas": 1}
        self.ok(self.call("deploy", dep))
        # NotFound
        self.failed(self.call("scale", {"name": "nope", "namespace": NS,
                                        "replicas": 2}),
                    code=404, reason="NotFound",
                    error='deployments.apps "nope" not found')
        # Conflict on the scale write: retried, succeeds
        k8s.set_fault("409", match="deployments/scale", times=1)
        d = self.ok(self.call("scale", {"name": "err-web", "namespace": NS,
                                        "replicas": 3}))
        self.assertEqual(d["replicas"], 3)
        self.assertEqual(k8s.get("deployments", NS, "err-web")["spec"][
            "replicas"], 3)
        # Forbidden
        k8s.deny("update", "deployments/scale")
        try:
            d = self.failed(self.call("scale", {
                "name": "err-web", "namespace": NS, "replicas": 1}),
                code=403, reason="Forbidden")
            self.assertIn("forbidden", d["error"])
        finally:
            k8s.allow_all()
        # Invalid (422 from the API, message from the causes)
        k8s.create({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "err-sel", "namespace": NS},
            "spec": {"replicas": 0,
                     "selector": {"matchLabels": {"app": "other"}},
                     "template": {
                         "metadata": {"labels": {"app": "other"}},
                         "spec": {"containers": [
                             {"name": "c", "image": "nginx"}]}}}})
        d = self.failed(self.call("deploy", dict(dep, name="err-sel")),
                        code=422, reason="Invalid")
        self.assertIn("spec.selector", d["error"])
        self.assertIn("field is immutable", d["error"])
        # 500
        k8s.set_fault("500", match="/pods", times=1)
        self.failed(self.call("get_resources", {"resource_type": "pods"}),
                    code=500, reason="InternalError")
        # timeout (request_timeout = 2s)
        k8s.set_fault("slow:3", match="deployments/err-web/scale", times=1)
        d = self.failed(self.call("scale", {
            "name": "err-web", "namespace": NS, "replicas": 2}),
            reason="Timeout")
        self.assertIn("timed out after 2s", d["error"])
        k8s.set_fault("slow:3", match="ops/services", times=1)
        d = self.proxy({"path": "/api/v1/namespaces/ops/services"})
        self.assertEqual(d["status_code"], 504)
        self.assertIn("timed out after 2s", d["error"])
        # API down
        k8s.set_fault("refuse")
        try:
            self.failed(self.call("delete", {"name": "err-web",
                                             "namespace": NS}),
                        reason="Unreachable")
            d = self.proxy({"path": "/api/v1/namespaces"})
            self.assertEqual(d["status_code"], 502)
            self.assertIn("cannot reach the Kubernetes API", d["error"])
            sid = self.open_stream("proxy_request", {
                "path": "/api/v1/namespaces", "query": {"watch": "1"}})
            done = self.runner.wait_for(is_done(sid), 10)
            self.assertEqual(done["data"]["status_code"], 502)
            self.assertIn("cannot reach the Kubernetes API", done["error"])
        finally:
            k8s.set_fault(None)
        self.ok(self.call("delete", {"name": "err-web", "namespace": NS}))

    @with_log
    def test_40_register_capabilities(self):
        reg = self.cp.wait_for("register", 5)
        caps = ws_sim.data_of(reg)["capabilities"]
        self.assertIn("command", caps)
        self.assertIn("proxy_request", caps)

    @with_log
    def test_99_sigterm_with_open_stream(self):
        sid = self.open_stream("proxy_request", {
            "path": "/api/v1/namespaces", "query": {"watch": "true"}})
        self.runner.wait_for(is_chunk(sid), 5)
        rc = self.agent.stop(timeout=15)
        self.assertEqual(rc, 0)
        done = self.runner.wait_for(is_done(sid), 5)
        self.assertEqual(done["error"], "agent stopping")
        self.wait_streams(0)


if __name__ == "__main__":
    harness.main()
