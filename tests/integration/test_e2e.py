"""End to end: the real agent binary between the Control Plane and Runner
simulators (tests/sim/ws_sim.py, wss with the test CA) and the Kubernetes API
simulator (tests/sim/k8s_sim.py, https).

The test methods run in name order and share one agent: register ->
heartbeat -> runner_assigned -> deploy -> scale -> get_resources -> malformed
input -> Runner down -> SIGTERM -> log audit. Contract: PROTOCOL.md.
"""
import functools
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "lib"))
sys.path.insert(0, os.path.join(TESTS, "sim"))
import harness  # noqa: E402
import agentproc  # noqa: E402
import ws_sim  # noqa: E402
from ws_sim import heartbeat_with, reply_to  # noqa: E402

try:
    import k8s_sim  # noqa: E402
except ImportError as e:  # written by another engineer
    k8s_sim = None
    K8S_IMPORT_ERROR = str(e)

# Distinctive secrets: the log audit greps for them.
CP_TOKEN = "cp-" + secrets.token_hex(16)
RUNNER_TOKEN = "runner-" + secrets.token_hex(16)
K8S_TOKEN = "k8s-" + secrets.token_hex(16)
CLUSTER = "e2e-cluster"
AGENT_ID = "agent-e2e-1"
AGENT_NAME = "e2e-agent"
RUNNER_ID = "runner-e2e"

T_CONNECT = 15      # agent start -> register
T_HEARTBEAT = 6     # heartbeat_interval is 1 s
T_OP = 20           # one operation against the K8s simulator


def with_log(f):
    """On failure, append the tail of the agent's log to the message."""
    @functools.wraps(f)
    def wrapper(self):
        try:
            return f(self)
        except AssertionError as e:
            agent = type(self).agent
            tail = agent.log_tail(60) if agent else "(no agent)"
            if agent and agent.proc and not agent.alive and \
                    f.__name__ < "test_09":
                e = "%s\n(the agent had exited with code %s)" % (
                    e, agent.proc.poll())
            raise AssertionError("%s\n--- agent log tail (%s) ---\n%s" % (
                e, agent.log_path if agent else "-", tail)) from None
    return wrapper


class EndToEnd(unittest.TestCase):
    agent = None
    skip_reason = None

    # Skips are per test (setUp), not a class-level SkipTest: the harness
    # counts a skipped setUpClass as -1 passed.
    @classmethod
    def setUpClass(cls):
        if not agentproc.have_agent():
            cls.skip_reason = "%s not built (run make)" % agentproc.AGENT_BIN
            return
        if k8s_sim is None:
            cls.skip_reason = ("tests/sim/k8s_sim.py not importable: %s"
                               % K8S_IMPORT_ERROR)
            return
        cls.tmp = tempfile.mkdtemp(prefix="pipeops-e2e-")
        cls.addClassCleanup(cls._cleanup_tmp)
        cls.certdir = os.path.join(cls.tmp, "pki")
        subprocess.run([os.path.join(TESTS, "lib", "certs.sh"), cls.certdir],
                       check=True, timeout=120)
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

        cfg = agentproc.base_config(
            cls.tmp, cluster_name=CLUSTER, cp_url=cls.cp.url,
            cp_token=CP_TOKEN, ca_file=cls.ca,
            k8s_url="https://localhost:%d" % cls.k8s.port,
            k8s_token=K8S_TOKEN, agent_id=AGENT_ID, name=AGENT_NAME,
            heartbeat="1s", labels={"env": "e2e"})
        cls.agent = agentproc.Agent(cls.tmp, cfg)
        cls.addClassCleanup(cls.agent.kill)
        cls.agent.start()

    @classmethod
    def _cleanup_tmp(cls):
        if os.environ.get("KEEP_E2E"):
            print("e2e files kept in %s" % cls.tmp)
            return
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    # ------------------------------------------------ helpers

    def k8s_list(self, path):
        """GET a list from the K8s simulator over HTTP (as kubectl would)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        req = urllib.request.Request(
            "https://localhost:%d%s" % (self.k8s.port, path),
            headers={"Authorization": "Bearer %s" % K8S_TOKEN,
                     "Accept": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    def count_named(self, path, name):
        items = self.k8s_list(path).get("items") or []
        return sum(1 for i in items if i["metadata"]["name"] == name)

    def assert_success(self, reply, rid, what):
        self.assertEqual(reply.get("type"), "response",
                         "%s: reply type: %s" % (what, ws_sim.summarize(reply)))
        d = reply.get("data")
        self.assertIsInstance(d, dict, "%s: data is an object" % what)
        self.assertIsNone(reply.get("error"),
                          "%s failed: %s" % (what, ws_sim.summarize(reply)))
        self.assertIs(d.get("success"), True,
                      "%s: data.success: %s" % (what, json.dumps(d)[:400]))
        self.assertEqual(reply.get("request_id"), rid, what)
        self.assertEqual(d.get("request_id"), rid, what)
        return d

    def assert_error(self, reply, what, text=None):
        self.assertEqual(reply.get("type"), "response", what)
        self.assertTrue(reply.get("error"),
                        "%s: no top-level error: %s" % (what,
                                                        ws_sim.summarize(reply)))
        d = reply.get("data")
        self.assertIsInstance(d, dict, what)
        self.assertIs(d.get("success"), False, what)
        if text is not None:
            self.assertEqual(reply["error"], text, what)
        return d

    def runner_still_up(self, count):
        self.assertTrue(self.runner.connected, "runner connection closed")
        self.assertEqual(self.runner.connection_count, count,
                         "the agent reconnected to the runner")

    # ------------------------------------------------ 1-3: CP side

    @with_log
    def test_01_register(self):
        reg = self.cp.wait_for("register", T_CONNECT)
        conn = reg.conn
        self.assertEqual(conn.path, "/api/v1/agent/ws")
        self.assertEqual(conn.header("Authorization"), "Bearer " + CP_TOKEN)
        ua = conn.header("User-Agent") or ""
        self.assertTrue(ua.startswith("pipeops-agent/"), ua)
        self.assertTrue(reg.get("id"))
        self.assertIsInstance(reg.get("timestamp"), str)
        d = reg.get("data")
        self.assertIsInstance(d, dict, "register data is an object")
        self.assertEqual(d.get("id"), AGENT_ID)
        self.assertEqual(d.get("name"), AGENT_NAME)
        self.assertEqual(d.get("cluster_name"), CLUSTER)
        self.assertTrue(d.get("version"))
        self.assertEqual(ua, "pipeops-agent/%s" % d["version"])
        self.assertIsInstance(d.get("labels"), dict)
        self.assertTrue(d["labels"], "labels are empty")
        self.assertNotIn(CP_TOKEN, reg.raw)
        self.assertNotIn(K8S_TOKEN, reg.raw)
        # the simulator acknowledged it on the same connection
        ack = self.cp.wait_sent(reply_to(reg["id"]), 5)
        self.assertEqual(ack["data"]["agent_id"], AGENT_ID)

    @with_log
    def test_01b_configured_labels_sent(self):
        reg = self.cp.wait_for("register", T_CONNECT)
        self.assertEqual(reg["data"].get("labels", {}).get("env"), "e2e",
                         "[agent] labels = env=e2e not in register labels")

    @with_log
    def test_02_heartbeat_cp_only(self):
        hb = self.cp.wait_for(heartbeat_with(cp=True, runner=False),
                              T_HEARTBEAT)
        d = hb["data"]
        self.assertEqual(d["connections"],
                         {"control_plane": True, "runner": False})
        self.assertNotIn(CP_TOKEN, hb.raw)

    @with_log
    def test_03_runner_assigned(self):
        mark = self.cp.mark()
        count = self.cp.connection_count
        msg = self.cp.assign_runner(self.runner.url, RUNNER_TOKEN, RUNNER_ID)
        reply = self.cp.wait_for(reply_to(msg["id"]), T_HEARTBEAT, after=mark)
        self.assert_success(reply, msg["id"], "runner_assigned")
        conn = self.runner.wait_connected(T_CONNECT)
        self.assertEqual(conn.path, "/api/v1/runner/ws",
                         "default runner path when the endpoint has none")
        self.assertEqual(conn.header("Authorization"),
                         "Bearer " + RUNNER_TOKEN)
        self.assertTrue((conn.header("User-Agent") or "")
                        .startswith("pipeops-agent/"))
        hb = self.cp.wait_for(heartbeat_with(cp=True, runner=True),
                              T_HEARTBEAT, after=mark)
        self.assertNotIn(RUNNER_TOKEN, hb.raw, "runner token in a heartbeat")
        self.assertEqual(self.cp.connection_count, count,
                         "the CP connection was not replaced")

    # ------------------------------------------------ 4-6: operations

    DEPLOY = {"name": "web", "image": "nginx:1.27", "replicas": 2,
              "ports": [{"name": "http", "container_port": 80,
                         "protocol": "TCP"}]}

    @with_log
    def test_04_deploy_twice(self):
        self.runner.wait_connected(T_CONNECT)
        rid = "deploy-web-1"
        reply = self.runner.call("deploy", self.DEPLOY, T_OP, id=rid)
        d = self.assert_success(reply, rid, "deploy")
        dep = self.k8s.get("deployments", "default", "web")
        svc = self.k8s.get("services", "default", "web")
        self.assertIsNotNone(dep, "Deployment default/web not created")
        self.assertIsNotNone(svc, "Service default/web not created")
        self.assertEqual(dep["spec"]["replicas"], 2)
        c = dep["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["name"], "web")
        self.assertEqual(c["image"], "nginx:1.27")
        self.assertEqual(dep["spec"]["selector"]["matchLabels"].get("app"),
                         "web")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 80)
        uid = dep["metadata"]["uid"]
        self.assertIsInstance(d.get("deployment"), dict, json.dumps(d)[:300])
        self.assertEqual(d["deployment"].get("uid"), uid)
        self.assertEqual(d["deployment"].get("name"), "web")

        rid2 = "deploy-web-2"
        reply2 = self.runner.call("deploy", self.DEPLOY, T_OP, id=rid2)
        d2 = self.assert_success(reply2, rid2, "second deploy")
        self.assertEqual(d2["deployment"].get("uid"), uid,
                         "redeploy replaced the Deployment")
        self.assertEqual(self.count_named(
            "/apis/apps/v1/namespaces/default/deployments", "web"), 1)
        self.assertEqual(self.count_named(
            "/api/v1/namespaces/default/services", "web"), 1)
        self.assertEqual(self.k8s.get("deployments", "default",
                                      "web")["metadata"]["uid"], uid)
        self.assertEqual(self.cp.of_type("deploy"), [],
                         "nothing operational went to the CP")

    @with_log
    def test_05_scale(self):
        rid = "scale-web-3"
        reply = self.runner.call("scale", {"name": "web", "replicas": 3},
                                 T_OP, id=rid)
        d = self.assert_success(reply, rid, "scale")
        self.assertEqual(d.get("replicas"), 3)
        dep = self.k8s.get("deployments", "default", "web")
        self.assertEqual(dep["spec"]["replicas"], 3)

    @with_log
    def test_06_get_resources(self):
        self.get_resources_lists_web("resources-1")

    def get_resources_lists_web(self, rid):
        reply = self.runner.call("get_resources", {}, T_OP, id=rid)
        d = self.assert_success(reply, rid, "get_resources")
        self.assertIsInstance(d.get("deployments"), list, json.dumps(d)[:300])
        names = [(x.get("namespace"), x.get("name")) for x in d["deployments"]]
        self.assertIn(("default", "web"), names)

    # ------------------------------------------------ 7: bad input

    @with_log
    def test_07a_not_json(self):
        count = self.runner.connection_count
        mark = self.runner.mark()
        self.runner.send_raw("this is not json {")

        def err(m):
            return m.get("type") == "response" and bool(m.get("error"))
        err.__doc__ = "an error reply"
        reply = self.runner.wait_for(err, T_HEARTBEAT, after=mark)
        self.assert_error(reply, "not JSON")
        self.runner_still_up(count)
        self.get_resources_lists_web("resources-after-not-json")

    @with_log
    def test_07b_json_without_type(self):
        count = self.runner.connection_count
        mark = self.runner.mark()
        self.runner.send({"id": "no-type-1", "data": {}})
        reply = self.runner.wait_for(reply_to("no-type-1"), T_HEARTBEAT,
                                     after=mark)
        self.assert_error(reply, "no type")
        self.assertEqual(reply.get("request_id"), "no-type-1")
        self.runner_still_up(count)
        self.get_resources_lists_web("resources-after-no-type")

    @with_log
    def test_07c_unknown_type(self):
        count = self.runner.connection_count
        reply = self.runner.call("frobnicate", {"x": 1}, T_HEARTBEAT,
                                 id="frob-1")
        d = self.assert_error(reply, "unknown type",
                              "unsupported message type: frobnicate")
        self.assertEqual(reply.get("request_id"), "frob-1")
        self.assertEqual(d.get("error"), "unsupported message type: frobnicate")
        self.runner_still_up(count)
        self.get_resources_lists_web("resources-after-unknown")

    @with_log
    def test_07d_data_as_json_string_and_base64(self):
        count = self.runner.connection_count
        rid = "scale-str-2"
        reply = self.runner.call("scale", {"name": "web", "replicas": 2},
                                 T_OP, id=rid, encoding="string")
        self.assertEqual(self.assert_success(reply, rid, "string data")
                         .get("replicas"), 2)
        self.assertEqual(self.k8s.get("deployments", "default",
                                      "web")["spec"]["replicas"], 2)
        rid = "scale-b64-3"
        reply = self.runner.call("scale", {"name": "web", "replicas": 3},
                                 T_OP, id=rid, encoding="base64")
        self.assertEqual(self.assert_success(reply, rid, "base64 data")
                         .get("replicas"), 3)
        self.assertEqual(self.k8s.get("deployments", "default",
                                      "web")["spec"]["replicas"], 3)
        self.runner_still_up(count)

    # ------------------------------------------------ 8: Runner gone

    @with_log
    def test_08_runner_down_cp_stays(self):
        count = self.cp.connection_count
        mark = self.cp.mark()
        self.runner.stop()
        self.cp.wait_for(heartbeat_with(cp=True, runner=False),
                         T_HEARTBEAT, after=mark)
        time.sleep(1.5)   # a reconnect attempt or two later, still fine
        self.cp.wait_for(heartbeat_with(cp=True, runner=False),
                         T_HEARTBEAT, after=self.cp.mark())
        self.assertTrue(self.cp.connected, "CP connection dropped")
        self.assertEqual(self.cp.connection_count, count,
                         "the CP connection was replaced")
        self.assertTrue(self.agent.alive)

    # ------------------------------------------------ shutdown and audit

    @with_log
    def test_09_sigterm_exits_0(self):
        self.assertTrue(self.agent.alive, "agent died before SIGTERM")
        t0 = time.monotonic()
        rc = self.agent.stop(timeout=15)
        self.assertFalse(self.agent.forced,
                         "agent still running 15 s after SIGTERM")
        self.assertEqual(rc, 0, "exit code after SIGTERM")
        self.assertLess(time.monotonic() - t0, 15)

    @with_log
    def test_10_log_has_no_tokens(self):
        log = self.agent.log()
        self.assertTrue(log, "the agent logged nothing")
        for name, tok in (("CP", CP_TOKEN), ("runner", RUNNER_TOKEN),
                          ("kubernetes", K8S_TOKEN)):
            self.assertNotIn(tok, log, "%s token in the agent log" % name)
        for name, tok in (("CP", CP_TOKEN), ("runner", RUNNER_TOKEN)):
            raw_out = [m for m in self.cp.received if tok in m.raw]
            self.assertEqual(raw_out, [], "%s token sent to the CP" % name)


if __name__ == "__main__":
    harness.main()
