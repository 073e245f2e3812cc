"""Fault injection (issue 5): the real agent between the Control Plane and
Runner simulators (tests/sim/ws_sim.py, plain ws://) and the Kubernetes API
simulator (tests/sim/k8s_sim.py, plain http://), with a TCP relay
(tests/lib/relay.py) in front of each simulator so links can be reset (RST),
refused, black-holed or delayed. Contract: PROTOCOL.md 3 and 5, DESIGN.md
"State and time" and "Queues".

Every test starts its own agent and simulators (nothing carries over), with
short timings: heartbeat_interval 1s, reconnect_initial 200ms,
reconnect_max 2s, register_timeout 2s, runner ping_interval 1s /
ping_timeout 2s (CP keeps the 20s/40s defaults unless a test says so).

  01 1,000 scale operations while the Runner link is reset 20 times; the
     Runner re-sends what has no reply after each reconnect: every id
     answered, identical replies per id, each scale executed exactly once.
  02 CP refused for 10 s (shortened from 30 s to keep the file fast; the
     agent does nothing different after 10 s than after 30 s with
     reconnect_max 2s) while Runner operations keep flowing; afterwards
     register, fresh heartbeats and the runner_status messages queued
     during the outage; reconnect attempts back off exponentially.
  03 both links down, then back, without restarting the agent.
  04 Runner link black-holed: detected within ping_timeout + 1 s, heartbeat
     says runner false, the CP connection untouched.
  05 Kubernetes API answering 500/503, slow (past request_timeout), closing
     connections, reset by the relay: distinct errors, agent stays, recovers.
  06 10,000 requests flooded at a slower API: VmRSS bound, every id answered.
  07 50 agents (workers=1) against a CP simulator that restarts: first
     reconnect times spread by the backoff jitter.
  08 SIGTERM with 100 operations in flight: all answered, exit 0.
  09 runner_assigned for a new runner while replies are owed to the old.
  10 runner_unassigned: link closed, token forgotten, runner id null.

Slowest parts: 07 (50 processes, a CP outage of 2 s) and 02 (the 10 s
outage). Run one test: /usr/bin/python3 test_faults.py Faults.test_04_...
"""
import collections
import datetime
import json
import os
import random
import shutil
import signal
import statistics
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
import faultkit  # noqa: E402
import relay as relaymod  # noqa: E402
import ws_sim  # noqa: E402
from ws_sim import heartbeat_with, make_msg, of_type, reply_to  # noqa: E402

try:
    import k8s_sim  # noqa: E402
except ImportError as e:
    k8s_sim = None
    K8S_IMPORT_ERROR = str(e)

CP_TOKEN = "cp-fault-token"
RUNNER_TOKEN = "runner-fault-token"
CLUSTER = "fault-cluster"

T_CONNECT = 15
T_HB = 5            # heartbeat_interval is 1 s
T_OP = 15


def rfc3339_to_epoch(ts):
    """Seconds since the epoch for '2026-12-03T15:38:27.123456789Z'."""
    base, _, frac = ts.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def deployment(name, replicas=1, ns="default"):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [
                                      {"name": name, "image": "nginx"}]}}}}


def data_of(m):
    d = m.get("data")
    return d if isinstance(d, dict) else {}


def runner_status_with(connected):
    def pred(m):
        return m.get("type") == "runner_status" and \
            data_of(m).get("connected") is connected
    pred.__doc__ = "runner_status connected=%s" % connected
    return pred


class Rig:
    """CP and Runner simulators and the Kubernetes simulator, a relay in
    front of each, and one agent connected to the relays."""

    def __init__(self, test, workers=4, controllers=False, agent_id=None,
                 cp_overrides=None, runner_overrides=None,
                 agent_overrides=None, k8s_overrides=None,
                 log_level="info"):
        self.test = test
        self.tmp = tempfile.mkdtemp(prefix="pipeops-faults-")
        test.addCleanup(self._cleanup_tmp)
        self.cp = ws_sim.WsPeer(role="cp", token=CP_TOKEN, name="CP")
        test.addCleanup(self.cp.stop)
        self.cp.start()
        self.runner = ws_sim.WsPeer(role="runner", token=RUNNER_TOKEN,
                                    name="Runner")
        test.addCleanup(self.runner.stop)
        self.runner.start()
        self.k8s = k8s_sim.K8sSim(port=0, token=None, controllers=controllers)
        # every request kept, not the last 2,000: executions are counted
        self.k8s.requests = collections.deque()
        test.addCleanup(self.k8s.stop)
        self.k8s.start()
        self.cp_relay = relaymod.Relay(self.cp.port).start()
        test.addCleanup(self.cp_relay.stop)
        self.runner_relay = relaymod.Relay(self.runner.port).start()
        test.addCleanup(self.runner_relay.stop)
        self.k8s_relay = relaymod.Relay(self.k8s.port).start()
        test.addCleanup(self.k8s_relay.stop)

        cfg = agentproc.base_config(
            self.tmp, cluster_name=CLUSTER,
            cp_url="ws://127.0.0.1:%d" % self.cp_relay.port,
            cp_token=CP_TOKEN,
            k8s_url="http://127.0.0.1:%d" % self.k8s_relay.port,
            agent_id=agent_id or "agent-%s" % test._testMethodName[5:7],
            name="fault-agent", heartbeat="1s", log_level=log_level,
            workers=workers, health=False)
        cfg["health"] = {"listen": ""}   # off: no fixed port to collide on
        cfg["agent"]["shutdown_timeout"] = "10s"
        cfg["control_plane"].update({"register_timeout": "2s",
                                     "status_interval": "0"})
        cfg["runner"].update({"ping_interval": "1s", "ping_timeout": "2s"})
        cfg["kubernetes"].update({"request_timeout": "5s",
                                  "connect_timeout": "1s"})
        for sec, ov in (("agent", agent_overrides),
                        ("control_plane", cp_overrides),
                        ("runner", runner_overrides),
                        ("kubernetes", k8s_overrides)):
            cfg[sec].update(ov or {})
        self.agent = agentproc.Agent(self.tmp, cfg)
        test.addCleanup(self.agent.kill)
        self.agent.start()

    def _cleanup_tmp(self):
        if os.environ.get("KEEP_FAULTS"):
            print("fault test files kept in %s" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def runner_url(self):
        return "ws://127.0.0.1:%d" % self.runner_relay.port

    def up(self, runner_id="runner-1"):
        """Wait for register, assign the runner, wait until it is open."""
        self.cp.wait_for("register", T_CONNECT)
        msg = self.cp.assign_runner(self.runner_url, RUNNER_TOKEN, runner_id)
        reply = self.cp.wait_for(reply_to(msg["id"]), T_HB)
        self.test.assertIs(data_of(reply).get("success"), True,
                           ws_sim.summarize(reply))
        self.runner.wait_connected(T_CONNECT)
        self.cp.wait_for(heartbeat_with(cp=True, runner=True), T_HB)

    def add_deployments(self, names, replicas=1):
        for n in names:
            self.k8s.create(deployment(n, replicas))

    def scale(self, name, replicas, rid, timeout=T_OP):
        """A scale through the Runner link; asserts success."""
        reply = self.runner.call("scale", {"name": name,
                                           "replicas": replicas},
                                 timeout, id=rid)
        self.test.assertIs(data_of(reply).get("success"), True,
                           "scale %s: %s" % (rid, ws_sim.summarize(reply)))
        self.test.assertEqual(data_of(reply).get("replicas"), replicas)
        return reply

    def log_has(self, text):
        return text in self.agent.log()


class Faults(unittest.TestCase):

    def setUp(self):
        if not agentproc.have_agent():
            self.skipTest("%s not built (run make)" % agentproc.AGENT_BIN)
        if k8s_sim is None:
            self.skipTest("k8s_sim not importable: %s" % K8S_IMPORT_ERROR)
        self.rig = None
        self.t_start = time.monotonic()

    def tearDown(self):
        print("   [%s: %.1f s]" % (self._testMethodName,
                                  time.monotonic() - self.t_start))

    def make_rig(self, **kw):
        self.rig = Rig(self, **kw)
        return self.rig

    def fail_with_log(self, msg):
        tail = self.rig.agent.log_tail(60) if self.rig else "(no agent)"
        self.fail("%s\n--- agent log tail ---\n%s" % (msg, tail))

    def assert_alive(self, rig):
        if not rig.agent.alive:
            self.fail_with_log("the agent exited (%s)" % rig.agent.proc.poll())

    # ---------------------------------------------------------------- 01

    def test_01_runner_cut_20_times_during_1000_scales(self):
        rig = self.make_rig(workers=4)
        n_ops, n_cuts = 1000, 20
        names = ["s-%04d" % i for i in range(n_ops)]
        rig.add_deployments(names, replicas=1)
        rig.up()
        want = {"scale-%04d" % i: (names[i], 2 + i % 5) for i in range(n_ops)}
        msgs = {rid: make_msg("scale", {"name": n, "replicas": r}, id=rid)
                for rid, (n, r) in want.items()}
        order = list(msgs)
        runner, relay = rig.runner, rig.runner_relay
        rnd = random.Random(int(os.environ.get("FAULT_SEED", "0")) or None)

        # the cutter: 20 RSTs at random moments while the requests flow
        cuts = []
        send_span = 5.0
        cut_times = sorted(rnd.uniform(0.1, send_span + 1.0)
                           for _ in range(n_cuts))
        stop_cutter = threading.Event()

        def cutter():
            t0 = time.monotonic()
            for at in cut_times:
                while not stop_cutter.is_set() and \
                        (time.monotonic() - t0 < at or
                         relay.open_connections() == 0):
                    time.sleep(0.005)
                if stop_cutter.is_set():
                    return
                cuts.append((time.monotonic() - t0, relay.cut()))
                time.sleep(0.05)   # let it reconnect at least once
        ct = threading.Thread(target=cutter, daemon=True)
        self.addCleanup(stop_cutter.set)

        answered = set()
        resent = collections.Counter()
        mark = [0]

        def refresh():
            rec = runner.received
            for m in rec[mark[0]:]:
                rid = faultkit.reply_id(m)
                if rid in msgs:
                    answered.add(rid)
            mark[0] = len(rec)

        seen_conn = runner.last_connection.index
        sent = []
        t0 = time.monotonic()
        ct.start()
        i = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            conn = runner.last_connection
            if conn.index != seen_conn and conn.open:
                # a new connection: re-send everything without a reply
                refresh()
                again = [r for r in sent if r not in answered]
                for r in again:
                    resent[r] += 1
                faultkit.send_many(runner, [msgs[r] for r in again], conn)
                seen_conn = conn.index
            if i < n_ops:
                batch = order[i:i + 10]
                if conn.open:
                    faultkit.send_many(runner, [msgs[r] for r in batch],
                                       conn)
                sent.extend(batch)   # lost ones go again on the next link
                i += len(batch)
                time.sleep(send_span / (n_ops / 10))
                continue
            refresh()
            if len(answered) == n_ops and not ct.is_alive():
                break
            time.sleep(0.05)
        stop_cutter.set()
        ct.join(5)
        elapsed = time.monotonic() - t0
        refresh()

        replies = faultkit.replies_by_id(runner, list(msgs))
        missing = [r for r in order if not replies[r]]
        differing = [r for r in order if len(set(replies[r])) > 1]
        dup = sum(len(v) - 1 for v in replies.values() if v)
        puts = faultkit.scale_puts(rig.k8s)
        print("   %d scales, %d cuts (%s), %d runner connections, "
              "%d re-sent, %d duplicate replies, %.1f s"
              % (n_ops, len(cuts), ", ".join("%.2fs" % t for t, _ in cuts),
                 runner.connection_count, sum(resent.values()), dup, elapsed))
        self.assertEqual(len(cuts), n_cuts, "the cutter did not finish")
        self.assertTrue(all(n > 0 for _, n in cuts), cuts)
        self.assertGreaterEqual(relay.accepted, n_cuts + 1)
        if missing:
            self.fail_with_log("%d ids without a reply, e.g. %s"
                               % (len(missing), missing[:5]))
        self.assertEqual(differing, [], "ids answered with different texts")
        bad = []
        for rid, (name, reps) in want.items():
            m = json.loads(replies[rid][0])
            d = data_of(m)
            if d.get("success") is not True or d.get("replicas") != reps or \
                    m.get("request_id") != rid:
                bad.append(ws_sim.summarize(m))
        self.assertEqual(bad, [], "replies that are not the scale's success")
        execs = {n: puts[("default", n)] for n in names}
        not_once = {n: c for n, c in execs.items() if c != 1}
        self.assertEqual(not_once, {}, "deployments not scaled exactly once "
                         "(name: successful PUT .../scale count)")
        for rid, (name, reps) in want.items():
            self.assertEqual(rig.k8s.get("deployments", "default", name)
                             ["spec"]["replicas"], reps, name)
        self.assert_alive(rig)



if __name__ == "__main__":
    if len(sys.argv) > 1:
        unittest.main()
    else:
        harness.main()
