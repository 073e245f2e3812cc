"""SIGHUP reload against the real agent (CONFIG.md, DESIGN.md "Configuration
and reload"):

- changing only log_level keeps the Control Plane connection (same
  connection, no new register) and takes effect at once;
- a broken file is refused, the running configuration stays and the agent
  keeps working;
- a reload while 500 operations flow loses none of them;
- changing the Control Plane endpoint reconnects to the new one.

The methods run in name order and share one agent.
"""
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "lib"))
sys.path.insert(0, os.path.join(TESTS, "sim"))
import harness  # noqa: E402
import agentproc  # noqa: E402
import k8s_sim  # noqa: E402
import ws_sim  # noqa: E402
from ws_sim import heartbeat_with, of_type, reply_to  # noqa: E402

CP_TOKEN = "cp-" + secrets.token_hex(12)
RUNNER_TOKEN = "runner-" + secrets.token_hex(12)
K8S_TOKEN = "k8s-" + secrets.token_hex(12)


class Reload(unittest.TestCase):
    skip_reason = None

    @classmethod
    def setUpClass(cls):
        if not agentproc.have_agent():
            cls.skip_reason = "%s not built" % agentproc.AGENT_BIN
            return
        cls.tmp = tempfile.mkdtemp(prefix="pipeops-reload-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.certdir = os.path.join(cls.tmp, "pki")
        subprocess.run([os.path.join(TESTS, "lib", "certs.sh"), cls.certdir],
                       check=True, timeout=120)
        ca = os.path.join(cls.certdir, "ca.pem")
        cls.cp = ws_sim.WsPeer(role="cp", certdir=cls.certdir,
                               token=CP_TOKEN, name="CP")
        cls.addClassCleanup(cls.cp.stop)
        cls.cp.start()
        cls.runner = ws_sim.WsPeer(role="runner", certdir=cls.certdir,
                                   token=RUNNER_TOKEN, name="Runner")
        cls.addClassCleanup(cls.runner.stop)
        cls.runner.start()
        cls.k8s = k8s_sim.K8sSim(port=0, certdir=cls.certdir,
                                 token=K8S_TOKEN, controllers=False)
        cls.addClassCleanup(cls.k8s.stop)
        cls.k8s.start()
        cls.cfg = agentproc.base_config(
            cls.tmp, cluster_name="reload", cp_url=cls.cp.url,
            cp_token=CP_TOKEN, ca_file=ca,
            k8s_url="https://localhost:%d" % cls.k8s.port,
            k8s_token=K8S_TOKEN, log_level="info", workers=2, health=False)
        cls.agent = agentproc.Agent(cls.tmp, cls.cfg)
        cls.addClassCleanup(cls.agent.kill)
        cls.agent.start()
        cls.cp.wait_for("register", 15)
        cls.cp.wait_connected(10)
        cls.cp.assign_runner(cls.runner.url, RUNNER_TOKEN, "runner-r")
        cls.runner.wait_connected(15)
        cls.cp.wait_for(heartbeat_with(cp=True, runner=True), 10)

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def reload(self, sections):
        """Write @sections, send SIGHUP, wait for the verdict in the log."""
        before = self.agent.log().count("configuration reloaded")
        refused = self.agent.log().count("reload refused")
        self.agent.write_config(sections)
        self.agent.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = self.agent.log()
            if log.count("configuration reloaded") > before:
                return True
            if log.count("reload refused") > refused:
                return False
            time.sleep(0.05)
        self.fail("no reload verdict in the log:\n" + self.agent.log_tail())

    def test_1_log_level_only_keeps_the_link(self):
        conns = self.cp.connection_count
        mark = self.cp.mark()
        self.assertNotIn("level=debug", self.agent.log())
        self.cfg["agent"]["log_level"] = "debug"
        self.assertTrue(self.reload(self.cfg))
        # debug lines appear at once (a heartbeat is sent every second)
        self.agent.wait_log(r"level=debug", 5)
        self.cp.wait_for("heartbeat", 5, after=mark)
        self.assertEqual(self.cp.connection_count, conns,
                         "the CP link was restarted")
        self.assertTrue(self.cp.connected)
        regs = [m for m in self.cp.received[mark:]
                if m.get("type") == "register"]
        self.assertEqual(regs, [], "registered again after a log-level "
                         "reload")

    def test_2_broken_file_is_refused(self):
        conns = self.cp.connection_count
        path = self.agent.config_path
        with open(path) as f:
            good = f.read()
        with open(path, "w") as f:
            f.write(good.replace("workers = 2", "workers = lots"))
        before = self.agent.log().count("reload refused")
        self.agent.send_signal(signal.SIGHUP)
        self.agent.wait_log(r"reload refused", 10)
        log = self.agent.log()
        self.assertEqual(log.count("reload refused"), before + 1)
        self.assertRegex(log, r'configuration error" line=\d+ '
                              r'error="\[agent\] workers')
        self.assertTrue(self.agent.alive)
        # still working, on the same links
        reply = self.runner.call("get_resources",
                                 {"resource_type": "namespaces"}, 20)
        self.assertTrue(reply["data"]["success"], reply)
        self.assertEqual(self.cp.connection_count, conns)
        with open(path, "w") as f:
            f.write(good)

    def test_3_reload_during_500_operations(self):
        names = ["app%d" % i for i in range(5)]
        for n in names:
            r = self.runner.call("deploy", {"name": n, "image": "nginx:1",
                                            "replicas": 1}, 20)
            self.assertTrue(r["data"]["success"], r)
        self.k8s.reset_counts()
        mark = self.runner.mark()
        ids = []
        for i in range(500):
            ids.append(self.runner.request(
                "scale", {"name": names[i % 5], "replicas": i % 7 + 1},
                id="load-%d" % i))
            if i % 100 == 50:
                self.cfg["agent"]["log_level"] = (
                    "info" if self.cfg["agent"]["log_level"] == "debug"
                    else "debug")
                self.assertTrue(self.reload(self.cfg))
        want = set(ids)
        deadline = time.monotonic() + 60
        got = {}
        while time.monotonic() < deadline and len(got) < len(want):
            for m in self.runner.received[mark:]:
                rid = m.get("request_id")
                if rid in want:
                    got[rid] = m
            time.sleep(0.1)
        missing = want - set(got)
        self.assertFalse(missing, "%d replies missing, e.g. %s" % (
            len(missing), sorted(missing)[:5]))
        failed = [m for m in got.values() if not m["data"].get("success")]
        self.assertEqual(failed, [], "failed: %s" % failed[:3])
        # each scale executed exactly once (a read and a write each)
        self.assertEqual(self.k8s.counts[("PUT", "deployments/scale")], 500)

    def test_4_endpoint_change_reconnects(self):
        new_cp = ws_sim.WsPeer(role="cp", certdir=self.certdir,
                               token=CP_TOKEN, name="CP2")
        self.addCleanup(new_cp.stop)
        new_cp.start()
        old_conns = self.cp.connection_count
        self.cfg["control_plane"]["endpoint"] = new_cp.url
        self.assertTrue(self.reload(self.cfg))
        reg = new_cp.wait_for("register", 15)
        self.assertEqual(reg["data"]["cluster_name"], "reload")
        new_cp.wait_for(heartbeat_with(cp=True, runner=True), 10)
        # the old CP saw its connection end and no new one
        deadline = time.monotonic() + 5
        while self.cp.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(self.cp.connected)
        self.assertEqual(self.cp.connection_count, old_conns)
        # the Runner link was not touched by a CP endpoint change
        self.assertEqual(self.runner.connection_count, 1)

    def test_5_restart_only_keys_are_named(self):
        self.cfg["agent"]["workers"] = 3
        self.cfg["kubernetes"]["proxy_deny"] = "/api/v1/secrets"
        self.assertTrue(self.reload(self.cfg))
        log = self.agent.log()
        for key in ("[agent] workers", "[kubernetes] proxy_deny"):
            self.assertIn('msg="setting changed; it takes effect after a '
                          'restart" key="%s"' % key, log)
        self.assertNotIn('key="[kubernetes] api_server"', log)


if __name__ == "__main__":
    harness.main()
