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
  02 CP refused for 30 s while Runner operations keep flowing; afterwards
     register, fresh heartbeats and the runner_status messages queued
     during the outage (after register); reconnect attempts back off
     exponentially.
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
  10 runner_unassigned: link closed, token forgotten, runner id null; a
     stale one naming another runner leaves the current link alone.
  11 outbox_max_messages 50 while the Runner is refused: execution stalls
     at outbox + reply ring instead of dropping; everything answered after.

Agent bugs these found (fixed in agent/endpoint.c, agent/supervisor.c):
a finished request cancelled a reconnect handshake in progress (01); the
agent declared its own throttled link dead under a flood and lost the
buffered requests (06); a link reset while rings and outbox were full was
never noticed (11); runner_unassigned for another runner dropped the
current one (10); a re-assignment's late cancel aborted the first
handshake to the new runner (10); a reply popped from a ring but not yet
queued looked idle to the drain before a switch or stop (09, 08).

Slowest parts: 06 (10,000 operations through the Python Kubernetes
simulator, about 300-400 a second: ~30 s) and 02 (the 30 s outage). The
whole file takes about 2 minutes. Run one test: /usr/bin/python3 test_faults.py Faults.test_04_...
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
from ws_sim import heartbeat_with, make_msg, reply_to  # noqa: E402

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


def backoff_attempts(initial, maximum, duration):
    """(fewest, most) connection attempts within `duration` seconds after a
    link drop: one at once, then delays in [bound/2, bound] with the bound
    doubling from `initial` up to `maximum` (common/backoff.c)."""
    def count(pick):
        t, bound, n = 0.0, initial, 1
        while True:
            t += pick(bound)
            if t > duration:
                return n
            n += 1
            bound = min(bound * 2, maximum)
    return count(lambda b: b), count(lambda b: b / 2)


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
        # A finished operation must not abort a reconnect in progress
        # (agent bug fixed in endpoint.c: ws_connect was cancelled by
        # reader_wake, which every finished request signals).
        self.assertNotIn("cancelled during", rig.agent.log(),
                         "a connect attempt was cancelled without a new "
                         "target or a stop")
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



    # ---------------------------------------------------------------- 02

    def call_until_answered(self, rig, mtype, data, rid, timeout=T_OP):
        """Send a request on the Runner link and wait for its reply; re-send
        it (same id) after a reconnect, as a Runner does."""
        runner = rig.runner
        deadline = time.monotonic() + timeout
        conn = None
        while time.monotonic() < deadline:
            c = runner.last_connection
            if c is not None and c.open and c is not conn:
                conn = c
                try:
                    runner.send(make_msg(mtype, data, id=rid), conn)
                except AssertionError:
                    conn = None
            try:
                return runner.wait_for(reply_to(rid), 0.5)
            except AssertionError:
                pass
        self.fail_with_log("no reply to %s %s within %.0fs"
                           % (mtype, rid, timeout))

    def test_02_cp_down_runner_ops_continue(self):
        rig = self.make_rig(workers=2)
        rig.add_deployments(["cp-down"])
        rig.up()
        cp, relay = rig.cp, rig.cp_relay
        outage = 30.0
        cp_conns = cp.connection_count
        refused0 = relay.refused
        relay.mode("refuse")
        t_down = time.time()
        relay.cut()
        cp.wait_disconnected(T_HB)
        replies = []
        n = 0
        cut_runner_at = t_down + 3.0
        runner_cut = None
        while time.time() < t_down + outage:
            if runner_cut is None and time.time() >= cut_runner_at:
                rig.runner_relay.cut()          # queues 2 runner_status
                runner_cut = time.time()
            n += 1
            r = self.call_until_answered(rig, "scale", {
                "name": "cp-down", "replicas": n % 4 + 1}, "cpdown-%d" % n)
            self.assertIs(data_of(r).get("success"), True,
                          ws_sim.summarize(r))
            replies.append(r)
            time.sleep(0.25)
        attempts = relay.refused - refused0
        mark = cp.mark()
        relay.mode("pass")
        t_up = time.time()
        reg = cp.wait_for("register", T_CONNECT, after=mark)
        t_reg = reg.t - t_up
        hb = cp.wait_for(heartbeat_with(cp=True, runner=True), T_HB,
                         after=mark)
        down = cp.wait_for(runner_status_with(False), T_HB, after=mark)
        up = cp.wait_for(runner_status_with(True), T_HB, after=mark)
        time.sleep(1.5)
        after = cp.received[mark:]
        hbs = [m for m in after if m.get("type") == "heartbeat"]
        order = [m.get("type") for m in after[:6]]
        # the backoff while refused: first attempt at once, then delays in
        # [bound/2, bound], bound 200 ms doubling to 2 s
        lo, hi = backoff_attempts(0.2, 2.0, outage)
        print("   CP outage %.1f s: %d Runner ops answered, %d CP connect "
              "attempts (exponential backoff allows %d..%d), register %.2f s "
              "after the CP came back; first messages: %s"
              % (outage, len(replies), attempts, lo, hi, t_reg,
                 ", ".join(order)))
        self.assertGreaterEqual(len(replies), int(outage / 0.5))
        self.assertEqual(len(set(r["request_id"] for r in replies)),
                         len(replies))
        self.assertGreater(cp.connection_count, cp_conns)
        self.assertLessEqual(attempts, hi + 1,
                             "reconnect attempts do not back off")
        self.assertGreaterEqual(attempts, lo - 2,
                                "the agent stopped trying to reconnect")
        # the queued runner_status messages, created during the outage
        for m in (down, up):
            t = rfc3339_to_epoch(m["timestamp"])
            self.assertTrue(t_down <= t <= t_up + 0.5,
                            "runner_status not from the outage: %s" %
                            ws_sim.summarize(m))
            self.assertEqual(data_of(m).get("runner_id"), "runner-1")
        self.assertLess(cp.received.index(down), cp.received.index(up),
                        "runner_status down/up out of order")
        self.assertLess(cp.received.index(reg), cp.received.index(down),
                        "runner_status sent before register")
        self.assertTrue(data_of(down).get("error"),
                        "runner_status connected=false without error")
        # heartbeats are not queued: each one is fresh
        self.assertTrue(hbs, "no heartbeat after the CP came back")
        for m in hbs:
            t = rfc3339_to_epoch(m["timestamp"])
            self.assertGreaterEqual(t, t_up - 0.2,
                                    "a heartbeat from the outage was "
                                    "queued: %s" % m["timestamp"])
        self.assertEqual(data_of(hb)["connections"],
                         {"control_plane": True, "runner": True})
        self.assert_alive(rig)

    # ---------------------------------------------------------------- 03

    def test_03_both_links_down_then_back(self):
        rig = self.make_rig(workers=2)
        rig.add_deployments(["both"])
        rig.up()
        pid = rig.agent.pid
        cp_conns, rn_conns = rig.cp.connection_count, \
            rig.runner.connection_count
        for r in (rig.cp_relay, rig.runner_relay):
            r.mode("refuse")
            r.cut()
        rig.cp.wait_disconnected(T_HB)
        rig.runner.wait_disconnected(T_HB)
        time.sleep(3)
        mark = rig.cp.mark()
        for r in (rig.cp_relay, rig.runner_relay):
            r.mode("pass")
        t0 = time.monotonic()
        rig.cp.wait_for("register", T_CONNECT, after=mark)
        hb = rig.cp.wait_for(heartbeat_with(cp=True, runner=True),
                             T_CONNECT, after=mark)
        t_back = time.monotonic() - t0
        rig.runner.wait_connected(T_CONNECT, count=rn_conns + 1)
        rig.scale("both", 3, "both-after")
        print("   both links back %.2f s after the peers returned" % t_back)
        self.assertEqual(rig.agent.pid, pid)
        self.assert_alive(rig)
        self.assertEqual(rig.agent.log().count('msg="started"'), 1)
        self.assertGreater(rig.cp.connection_count, cp_conns)
        self.assertEqual(data_of(hb)["runner"].get("id"), "runner-1")
        self.assertLess(t_back, 2 * 2.0 + 2,
                        "recovery slower than reconnect_max allows")

    # ---------------------------------------------------------------- 04

    def test_04_runner_blackhole_detected(self):
        rig = self.make_rig(workers=2)
        rig.up()
        time.sleep(1.5)          # a ping or two: the link is healthy
        cp_conns = rig.cp.connection_count
        rn_accepted = rig.runner_relay.accepted
        mark = rig.cp.mark()
        rig.runner_relay.mode("blackhole")
        t0 = time.time()
        down = rig.cp.wait_for(runner_status_with(False), 10, after=mark)
        detect = down.t - t0
        hb = rig.cp.wait_for(heartbeat_with(cp=True, runner=False), T_HB,
                             after=mark)
        print("   black-holed Runner link detected after %.2f s "
              "(ping_interval 1 s, ping_timeout 2 s); error: %s"
              % (detect, data_of(down).get("error")))
        self.assertLessEqual(detect, 2.0 + 1.0,
                             "not detected within ping_timeout + 1 s")
        self.assertGreaterEqual(detect, 0.9, "detected before any timeout")
        self.assertIn("no frame", data_of(down).get("error") or "")
        self.assertIs(data_of(hb)["runner"].get("connected"), False)
        self.assertEqual(rig.cp.connection_count, cp_conns,
                         "the CP connection was touched")
        self.assertTrue(rig.cp.connected)
        # back to normal: the agent reconnects and operations work
        rig.runner_relay.cut()
        rig.runner_relay.mode("pass")
        rig.cp.wait_for(runner_status_with(True), T_CONNECT, after=mark)
        rig.add_deployments(["bh"])
        rig.scale("bh", 2, "bh-after")
        self.assertGreater(rig.runner_relay.accepted, rn_accepted)
        self.assertEqual(rig.cp.connection_count, cp_conns)

    # ---------------------------------------------------------------- 05

    def test_05_kubernetes_api_faults(self):
        rig = self.make_rig(workers=2,
                            k8s_overrides={"request_timeout": "2s"})
        rig.add_deployments(["api"])
        rig.up()
        rn_conns = rig.runner.connection_count
        k8s = rig.k8s
        seen = {}
        n = [0]

        def op():
            n[0] += 1
            rid = "api-%d" % n[0]
            t = time.monotonic()
            r = rig.runner.call("scale", {"name": "api", "replicas": 2},
                                T_OP, id=rid)
            return r, time.monotonic() - t

        def expect_failure(label):
            r, took = op()
            d = data_of(r)
            self.assertIs(d.get("success"), False,
                          "%s: %s" % (label, ws_sim.summarize(r)))
            self.assertTrue(r.get("error"), label)
            self.assertEqual(d.get("error"), r.get("error"), label)
            seen[label] = (d.get("code"), d.get("reason"), r["error"], took)
            return d

        def expect_recovery(label):
            r, took = op()
            self.assertIs(data_of(r).get("success"), True,
                          "no recovery after %s: %s"
                          % (label, ws_sim.summarize(r)))

        k8s.set_fault("500")
        d = expect_failure("500")
        self.assertEqual((d.get("code"), d.get("reason")),
                         (500, "InternalError"))
        k8s.set_fault(None)
        expect_recovery("500")

        k8s.set_fault("503")
        d = expect_failure("503")
        self.assertEqual((d.get("code"), d.get("reason")),
                         (503, "ServiceUnavailable"))
        k8s.set_fault(None)
        expect_recovery("503")

        k8s.set_fault("slow:3")
        d = expect_failure("slow")
        self.assertEqual(d.get("reason"), "Timeout")
        self.assertNotIn("code", d)
        self.assertIn("timed out after 2s", d["error"])
        k8s.set_fault(None)
        time.sleep(1.2)        # the slow request in the simulator ends
        expect_recovery("slow")

        k8s.set_fault("down")
        d = expect_failure("down")
        self.assertNotIn("code", d)
        self.assertIn(d.get("reason"), ("TransportError", "Unreachable"))
        k8s.set_fault(None)
        expect_recovery("down")

        rig.k8s_relay.mode("refuse")
        rig.k8s_relay.cut()
        d = expect_failure("reset")
        self.assertNotIn("code", d)
        self.assertIn(d.get("reason"), ("TransportError", "Unreachable"))
        rig.k8s_relay.mode("pass")
        expect_recovery("reset")

        for label, (code, reason, err, took) in seen.items():
            print("   API %-6s -> code=%s reason=%s in %.2f s: %s"
                  % (label, code, reason, took, err[:110]))
        texts = [v[2] for v in seen.values()]
        self.assertEqual(len(set(texts)), len(texts),
                         "two faults gave the same error text")
        kinds = set((v[0], v[1]) for k, v in seen.items()
                    if k in ("500", "503", "slow", "down"))
        self.assertEqual(len(kinds), 4,
                         "500, 503, timeout and a dropped connection "
                         "must be told apart by code/reason: %s" % seen)
        self.assertLess(seen["slow"][3], 2 * 2.0 + 3,
                        "a slow API held the operation past "
                        "request_timeout")
        self.assertEqual(rig.runner.connection_count, rn_conns,
                         "an API fault touched the Runner link")
        self.assert_alive(rig)


    # ---------------------------------------------------------------- 06

    FLOOD_N = 10000
    FLOOD_SLOW = os.environ.get("FLOOD_SLOW", "0.002")
    RSS_BOUND_MIB = 48      # measured 23-26 MiB (4 workers, 100 objects)

    def test_06_flood_10000_at_slow_api(self):
        rig = self.make_rig(workers=4)
        names = ["fl-%02d" % i for i in range(100)]
        rig.add_deployments(names)
        rig.up()
        n = self.FLOOD_N
        msgs, last = [], {}
        for i in range(n):
            name, reps = names[i % 100], (i // 100) % 7 + 1
            msgs.append(make_msg("scale", {"name": name, "replicas": reps},
                                 id="flood-%05d" % i))
            last[name] = reps
        ids = [m["id"] for m in msgs]
        if self.FLOOD_SLOW != "0":
            rig.k8s.set_fault("slow:" + self.FLOOD_SLOW)
        sampler = faultkit.RssSampler(rig.agent.pid, 0.02).start()
        self.addCleanup(sampler.stop)
        conn = rig.runner.last_connection
        t0 = time.monotonic()
        sent = faultkit.send_many(rig.runner, msgs, conn, timeout=240)
        t_sent = time.monotonic() - t0
        self.assertEqual(sent, n, "the Runner link closed during the flood")
        answered = set()
        deadline = time.monotonic() + 240
        mark = 0
        while len(answered) < n and time.monotonic() < deadline:
            rec = rig.runner.received
            for m in rec[mark:]:
                answered.add(faultkit.reply_id(m))
            mark = len(rec)
            if not rig.agent.alive:
                break
            time.sleep(0.1)
        took = time.monotonic() - t0
        sampler.stop()
        rig.k8s.set_fault(None)
        missing = [i for i in ids if i not in answered]
        max_mib = sampler.max_kib / 1024.0
        print("   %d scales at a slow:%s API: sent in %.1f s, "
              "all answered in %.1f s (%.0f ops/s); VmRSS %.1f MiB before, "
              "max %.1f MiB (bound %d MiB), %d samples"
              % (n, self.FLOOD_SLOW, t_sent, took, n / took,
                 sampler.first_kib / 1024.0, max_mib, self.RSS_BOUND_MIB,
                 len(sampler.samples)))
        self.assert_alive(rig)
        if missing:
            self.fail_with_log("%d of %d ids without a reply, e.g. %s"
                               % (len(missing), n, missing[:5]))
        replies = faultkit.replies_by_id(rig.runner, ids)
        failed = [r for r in ids
                  if json.loads(replies[r][0]).get("error")]
        self.assertEqual(failed, [], "failed operations: %s" %
                         [json.loads(replies[r][0]).get("error")
                          for r in failed[:3]])
        self.assertLess(max_mib, self.RSS_BOUND_MIB, "VmRSS over the bound")
        # per-object order: each deployment ends at its last request's value
        wrong = {nm: rig.k8s.get("deployments", "default", nm)["spec"]
                 ["replicas"] for nm in names}
        wrong = {nm: (v, last[nm]) for nm, v in wrong.items()
                 if v != last[nm]}
        self.assertEqual(wrong, {}, "operations on one object reordered "
                         "(name: (final, last requested))")
        self.assertEqual(rig.runner.connection_count, 1,
                         "the Runner link was dropped under load")


    # ---------------------------------------------------------------- 07

    HERD = 50

    def start_herd(self, initial, maximum):
        """HERD agents (workers=1) on one CP simulator; returns (cp, agents).
        """
        tmp = tempfile.mkdtemp(prefix="pipeops-herd-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cp = ws_sim.WsPeer(role="cp", token=CP_TOKEN, name="CP").start()
        self.addCleanup(cp.stop)
        k8s = k8s_sim.K8sSim(port=0, token=None, controllers=False).start()
        self.addCleanup(k8s.stop)
        agents = []
        for i in range(self.HERD):
            d = os.path.join(tmp, "a%02d" % i)
            os.makedirs(d)
            cfg = agentproc.base_config(
                d, cluster_name=CLUSTER, cp_url=cp.url, cp_token=CP_TOKEN,
                k8s_url=k8s.url, agent_id="herd-%02d" % i, name="herd",
                heartbeat="5s", log_level="info", workers=1, health=False)
            cfg["health"] = {"listen": ""}
            cfg["control_plane"].update({
                "reconnect_initial": "%gs" % initial,
                "reconnect_max": "%gs" % maximum,
                "status_interval": "0", "register_timeout": "5s"})
            a = agentproc.Agent(d, cfg)
            self.addCleanup(a.kill)
            agents.append(a.start())
        deadline = time.monotonic() + 30
        while len(self.registered(cp)) < self.HERD and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(self.registered(cp)), self.HERD,
                         "not every agent registered")
        time.sleep(0.5)
        return cp, agents

    @staticmethod
    def registered(peer):
        ids = {}
        for m in peer.of_type("register"):
            ids.setdefault(data_of(m).get("id"), m)
        return ids

    def test_07_herd_of_50_agents_cp_restart(self):
        initial, maximum = 1.0, 4.0
        cp, agents = self.start_herd(initial, maximum)
        cp2 = None
        self.addCleanup(lambda: cp2.stop() if cp2 else None)
        port = cp.port
        t_stop = time.time()
        cp.stop()
        time.sleep(2.0)
        cp2 = ws_sim.WsPeer(role="cp", token=CP_TOKEN, name="CP2",
                            port=port).start()
        t_up = time.time()
        deadline = time.monotonic() + maximum + 10
        while len(self.registered(cp2)) < self.HERD and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        regs = self.registered(cp2)
        dead = [a.workdir for a in agents if not a.alive]
        self.assertEqual(dead, [], "agents exited")
        self.assertEqual(len(regs), self.HERD,
                         "agents that did not come back: %s" % sorted(
                             set("herd-%02d" % i for i in range(self.HERD))
                             - set(regs)))
        delays = sorted(m.conn.opened_at - t_up for m in regs.values())
        hist = collections.Counter(int(x / 0.5) for x in delays)
        busiest = max(sum(1 for x in delays if w <= x < w + 0.1)
                      for w in delays)
        spread = delays[-1] - delays[0]
        print("   %d agents, CP down %.1f s: first reconnect after the "
              "restart min %.2f s, median %.2f s, max %.2f s (spread %.2f "
              "s); per 0.5 s: %s; busiest 100 ms window %d agents"
              % (self.HERD, t_up - t_stop, delays[0],
                 statistics.median(delays), delays[-1], spread,
                 " ".join("%d" % hist.get(b, 0)
                          for b in range(int(delays[-1] / 0.5) + 1)),
                 busiest))
        self.assertGreater(spread, 0.3 * initial,
                           "reconnects not spread by the jitter")
        self.assertLessEqual(delays[-1], maximum + 1.0,
                             "an agent waited longer than reconnect_max")
        self.assertLess(busiest, self.HERD / 2,
                        "half of the agents reconnected within 100 ms")

    def test_07b_herd_links_dropped_cp_still_up(self):
        """The CP drops every connection but stays up (a proxy or load
        balancer restart, a network blip): the reconnects should spread
        too, or every agent registers in the same instant."""
        initial, maximum = 1.0, 4.0
        cp, agents = self.start_herd(initial, maximum)
        n0 = cp.connection_count
        t_cut = time.time()
        cp.kill_connections()
        deadline = time.monotonic() + maximum + 10
        while cp.connection_count < n0 + self.HERD and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        delays = sorted(c.opened_at - t_cut for c in cp.connections[n0:])
        self.assertEqual(len(delays), self.HERD, "agents did not reconnect")
        spread = delays[-1] - delays[0]
        print("   %d agents, connections dropped, CP up: reconnect min %.3f "
              "s, median %.3f s, max %.3f s (spread %.3f s)"
              % (self.HERD, delays[0], statistics.median(delays),
                 delays[-1], spread))
        # The reader waits a jittered backoff delay ([initial/2, initial]
        # for a stable link) before the first reconnect after a drop.
        self.assertGreater(spread, 0.3 * initial,
                           "reconnects after a dropped link are not spread")
        self.assertGreaterEqual(delays[0], 0.4 * initial,
                                "a reconnect came before the backoff delay")

    # ---------------------------------------------------------------- 08

    def test_08_sigterm_with_100_in_flight(self):
        rig = self.make_rig(workers=4)
        names = ["term-%03d" % i for i in range(100)]
        rig.add_deployments(names)
        rig.up()
        msgs = [make_msg("scale", {"name": n, "replicas": 3}, id="t-" + n)
                for n in names]
        ids = [m["id"] for m in msgs]
        rig.k8s.set_fault("slow:0.05")
        conn = rig.runner.last_connection
        self.assertEqual(faultkit.send_many(rig.runner, msgs, conn), 100)
        rig.k8s.wait_for(lambda: sum(
            1 for _, p, _ in list(rig.k8s.requests)
            if "/deployments/term-" in p) >= 8, 10)
        answered_before = len(faultkit.replies_by_id(rig.runner, ids)) - \
            sum(1 for v in faultkit.replies_by_id(rig.runner, ids).values()
                if not v)
        t0 = time.monotonic()
        rig.agent.send_signal(signal.SIGTERM)
        rc = rig.agent.wait(30)
        took = time.monotonic() - t0
        if rc is None:
            rig.agent.kill()
            self.fail_with_log("the agent did not exit within 30 s")
        replies = faultkit.replies_by_id(rig.runner, ids)
        missing = [i for i in ids if not replies[i]]
        failed = [i for i in ids if replies[i] and
                  data_of(json.loads(replies[i][0])).get("success") is not
                  True]
        try:
            rig.runner.wait_disconnected(5)
        except AssertionError:
            pass
        print("   SIGTERM with %d of 100 answered: exit %s after %.2f s, "
              "%d answered in all, Runner close code %s"
              % (answered_before, rc, took, 100 - len(missing),
                 rig.runner.last_connection.close_code))
        self.assertEqual(rc, 0, "exit code after SIGTERM")
        if missing:
            self.fail_with_log("%d operations not answered before exit, "
                               "e.g. %s" % (len(missing), missing[:5]))
        self.assertEqual(failed, [], "operations failed during the stop")
        self.assertLess(answered_before, 100,
                        "nothing was in flight at SIGTERM")
        self.assertTrue(all(rig.k8s.get("deployments", "default", n)
                            ["spec"]["replicas"] == 3 for n in names))
        rig.runner.wait_disconnected(5)
        self.assertEqual(rig.runner.last_connection.close_code, 1001)

    # ---------------------------------------------------------------- 09

    def test_09_reassignment_flushes_old_runner(self):
        rig = self.make_rig(workers=2)
        names = ["re-%d" % i for i in range(6)]
        rig.add_deployments(names + ["re-b"])
        rig.up("runner-A")
        b = ws_sim.WsPeer(role="runner", token="runner-b-token",
                          name="RunnerB").start()
        self.addCleanup(b.stop)
        a_conn = rig.runner.last_connection
        msgs = [make_msg("scale", {"name": n, "replicas": 2}, id="a-" + n)
                for n in names]
        ids = [m["id"] for m in msgs]
        rig.k8s.set_fault("slow:0.4")
        faultkit.send_many(rig.runner, msgs, a_conn)
        # both workers busy with runner-A's requests (slow: 0.8 s a scale)
        rig.k8s.wait_for(lambda: sum(
            1 for _, p, _ in list(rig.k8s.requests)
            if "/deployments/re-" in p) >= 2, 10)
        mark = rig.cp.mark()
        t0 = time.monotonic()
        assign = rig.cp.assign_runner(b.url, "runner-b-token", "runner-B")
        reply = rig.cp.wait_for(reply_to(assign["id"]), T_HB, after=mark)
        self.assertIs(data_of(reply).get("success"), True)
        b.wait_connected(20)
        t_b = time.monotonic() - t0
        rig.k8s.set_fault(None)
        rig.runner.wait_disconnected(5)
        a_replies = faultkit.replies_by_id(rig.runner, ids)
        b_replies = faultkit.replies_by_id(b, ids)
        got_a = [i for i in ids if a_replies[i]]
        got_b = [i for i in ids if b_replies[i]]
        print("   re-assignment with %d replies owed to runner-A: A got %d, "
              "B got %d of them; B connected %.2f s after the assignment; "
              "A closed with %s"
              % (len(ids), len(got_a), len(got_b), t_b,
                 a_conn.close_code))
        self.assertEqual(got_b, [], "replies owed to runner-A went to "
                         "runner-B")
        self.assertEqual(len(got_a), len(ids),
                         "replies owed to runner-A were lost: %s"
                         % sorted(set(ids) - set(got_a)))
        self.assertFalse(a_conn.open)
        hb = rig.cp.wait_for(lambda m: m.get("type") == "heartbeat" and
                             data_of(m)["runner"].get("id") == "runner-B" and
                             data_of(m)["connections"]["runner"] is True,
                             T_HB, after=mark)
        self.assertEqual(data_of(hb)["runner"].get("endpoint"), b.url)
        r = b.call("scale", {"name": "re-b", "replicas": 4}, T_OP,
                   id="b-scale")
        self.assertIs(data_of(r).get("success"), True, ws_sim.summarize(r))
        self.assertEqual(rig.runner.connection_count, 1,
                         "the agent went back to runner-A")

    # ---------------------------------------------------------------- 10

    def test_10_runner_unassigned(self):
        rig = self.make_rig(workers=2)
        rig.up("runner-1")
        conns = rig.runner.connection_count
        mark = rig.cp.mark()
        accepted = rig.runner_relay.accepted
        handshakes = len(rig.runner.handshakes)
        m = rig.cp.unassign_runner("runner-1")
        reply = rig.cp.wait_for(reply_to(m["id"]), T_HB, after=mark)
        self.assertIs(data_of(reply).get("success"), True,
                      ws_sim.summarize(reply))
        rig.runner.wait_disconnected(T_HB)
        hb = rig.cp.wait_for(
            lambda m: m.get("type") == "heartbeat" and
            data_of(m)["runner"].get("id") is None, T_HB, after=mark)
        time.sleep(2.5)      # reconnect_initial is 200 ms: no attempt may come
        self.assertEqual(data_of(hb)["connections"]["runner"], False)
        self.assertIsNone(data_of(hb)["runner"].get("endpoint"))
        self.assertNotIn(RUNNER_TOKEN, hb.raw)
        self.assertEqual(rig.runner_relay.accepted, accepted,
                         "the agent reconnected to an unassigned runner")
        self.assertEqual(len(rig.runner.handshakes), handshakes,
                         "the forgotten token was used again")
        self.assertTrue(rig.cp.connected)
        # assignable again
        mark = rig.cp.mark()
        rig.cp.assign_runner(rig.runner_url, RUNNER_TOKEN, "runner-1")
        rig.runner.wait_connected(T_CONNECT, count=conns + 1)
        rig.cp.wait_for(heartbeat_with(cp=True, runner=True), T_HB,
                        after=mark)
        # a stale unassignment naming another runner leaves this one alone
        mark = rig.cp.mark()
        m = rig.cp.unassign_runner("runner-other")
        stale = rig.cp.wait_for(reply_to(m["id"]), T_HB, after=mark)
        time.sleep(1.0)
        print("   unassign runner-1: link closed, no reconnect, heartbeat "
              "runner %s; stale unassign of runner-other -> %s"
              % (json.dumps(data_of(hb)["runner"])[:120],
                 ws_sim.summarize(stale, 120)))
        self.assertTrue(rig.runner.connected and
                        rig.runner.connection_count == conns + 1,
                        "runner_unassigned for runner-other closed the link "
                        "to runner-1 (PROTOCOL 3: close *that* runner "
                        "connection); reply was %s; connections %s" % (ws_sim.summarize(stale), rig.runner.connections))
        self.assertIs(data_of(stale).get("success"), False,
                      "a stale unassignment is not acknowledged as done")
        rig.cp.wait_for(heartbeat_with(cp=True, runner=True), T_HB,
                        after=mark)


    # ---------------------------------------------------------------- 11

    def test_11_outbox_bound_while_runner_away(self):
        """PROTOCOL 5: replies for a disconnected Runner are kept, bounded;
        when full the agent stops executing and reading instead of
        dropping. One worker, outbox_max_messages 50: while the Runner is
        refused at most 50 (outbox) + 1024 (the worker's reply ring) + 1
        (the worker blocked delivering) scales may complete; after it comes
        back (re-sending what has no reply) every id is answered once per
        execution and each scale ran exactly once."""
        rig = self.make_rig(workers=1, runner_overrides={
            "outbox_max_messages": "50"})
        n = 2500
        names = ["ob-%04d" % i for i in range(n)]
        rig.add_deployments(names)
        rig.up()
        msgs = {"ob-" + nm: make_msg("scale", {"name": nm, "replicas": 2},
                                     id="ob-" + nm) for nm in names}
        ids = list(msgs)
        # the Runner goes away first; requests then sit in the relay and
        # socket buffers and are re-sent after it is back
        rig.k8s.set_fault("slow:0.002")
        faultkit.send_many(rig.runner, list(msgs.values())[:1500],
                           rig.runner.last_connection)
        rig.k8s.wait_for(lambda: sum(rig.k8s.counts[k] for k in
                                     [("PUT", "deployments/scale")]) >= 5,
                         10)
        rig.runner_relay.mode("refuse")
        rig.runner_relay.cut()
        rig.runner.wait_disconnected(T_HB)
        answered_before = set(faultkit.reply_id(m)
                              for m in rig.runner.received) & set(ids)
        rig.k8s.set_fault(None)

        def executed():
            return sum(faultkit.scale_puts(rig.k8s).values())
        # run into the full outbox, until executions stop
        last, still = -1, 0
        deadline = time.monotonic() + 30
        while still < 10 and time.monotonic() < deadline:
            now = executed()
            still = still + 1 if now == last else 0
            last = now
            time.sleep(0.1)
        done_away = last - len(answered_before)
        rig.runner_relay.mode("pass")
        deadline = time.monotonic() + 90
        seen = 0
        while time.monotonic() < deadline:
            conn = rig.runner.last_connection
            if conn.index != seen and conn.open:
                seen = conn.index
                got = set(faultkit.reply_id(m) for m in rig.runner.received)
                faultkit.send_many(rig.runner, [msgs[i] for i in ids
                                                if i not in got], conn)
            got = set(faultkit.reply_id(m) for m in rig.runner.received)
            if set(ids) <= got:
                break
            time.sleep(0.1)
        replies = faultkit.replies_by_id(rig.runner, ids)
        missing = [i for i in ids if not replies[i]]
        puts = faultkit.scale_puts(rig.k8s)
        not_once = {nm: puts[("default", nm)] for nm in names
                    if puts[("default", nm)] != 1}
        print("   outbox 50, 1 worker: %d answered before the Runner left, "
              "%d scales completed while it was away (bound %d), then "
              "stalled; all %d answered after it came back"
              % (len(answered_before), done_away, 50 + 1024 + 1 + 10,
                 n - len(missing)))
        if missing:
            self.fail_with_log("%d ids never answered, e.g. %s"
                               % (len(missing), missing[:5]))
        self.assertEqual([i for i in ids if len(set(replies[i])) > 1], [])
        self.assertEqual(not_once, {}, "scales not executed exactly once")
        self.assertLessEqual(done_away, 50 + 1024 + 1 + 10,
                             "replies beyond the outbox and ring bounds")
        self.assert_alive(rig)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        unittest.main()
    else:
        harness.main()
