"""Hostile peers and hostile input: regression tests for what a tester broke
(probe scripts of the break-it round) and the agent now handles. Each test
starts its own agent and simulators (plain ws:// CP and Runner, plain http
Kubernetes API simulator, no relay); nothing carries over.

  01  300 scales owed to runner-A against a slow API, then runner_assigned
      for runner-B (another token, another id): B gets none of A's replies,
      everything A got is A's.
  01b the same across runner_unassigned of A, then an assignment of B.
  02  SIGTERM with 600 queued scales and shutdown_timeout 3s: exit 0 in
      time; requests not started are answered with reason ShuttingDown and
      not executed (successes == PUTs the API server saw).
  03  a Runner that stops reading and floods pings (400,000): VmRSS bound,
      the link dropped after ping_timeout with "peer stopped reading",
      reconnected afterwards.
  04  a malformed message with a 2,000-character id: the error reply echoes
      the whole id (top level and data).
  05  a `type` with a newline and a forged log line: no line of the log
      starts with the forged timestamp.
  06  runner_status for a connect failure: connected false, the error,
      the runner id.
  06b runner-A replaced by runner-B: the runner_status for A's link going
      down names runner-A, not runner-B.
  07  after runner_unassigned the heartbeat's runner has attempts 0 and
      last_error null.
  08  `-t`: ping_timeout not longer than ping_interval, a garbage PEM and a
      directory as ca_file: exit 1, FILE:LINE: error: [section] key ...
  09  proxy_deny covers the legacy /watch/ form: 403 and no API call.

Run one: cd tests/integration && /usr/bin/python3 -m unittest -v \
    test_hostile.Hostile.test_04_malformed_message_long_id_echoed_whole
Against another binary: PIPEOPS_AGENT_BIN=/path/to/pipeops-agent.
"""
import asyncio
import collections
import json
import os
import re
import shutil
import signal
import socket
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
import faultkit  # noqa: E402
import ws_sim  # noqa: E402
from ws_sim import heartbeat_with, make_msg, reply_to  # noqa: E402

try:
    import k8s_sim  # noqa: E402
except ImportError as e:
    k8s_sim = None
    K8S_IMPORT_ERROR = str(e)

CP_TOKEN = "cp-hostile-token"
RUNNER_TOKEN = "runner-a-hostile-token"
RUNNER_B_TOKEN = "runner-b-hostile-token"
CLUSTER = "hostile-cluster"

T_CONNECT = 15
T_HB = 5            # heartbeat_interval is 1 s
T_OP = 15


def data_of(m):
    d = m.get("data")
    return d if isinstance(d, dict) else {}


def reply_ids(m):
    """Both request ids a message carries (top level, data)."""
    return (m.get("request_id"), data_of(m).get("request_id"))


def deployment(name, replicas=1, ns="default"):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [
                                      {"name": name, "image": "nginx"}]}}}}


def ping_frames(count, payload=b"p" * 125):
    """`count` unmasked (server to client) ping frames."""
    return (bytes([0x89, len(payload)]) + payload) * count


class Rig:
    """CP, Runner and Kubernetes simulators and one agent."""

    def __init__(self, test, workers=2, agent_overrides=None,
                 cp_overrides=None, runner_overrides=None,
                 k8s_overrides=None, log_level="info"):
        self.test = test
        self.tmp = tempfile.mkdtemp(prefix="pipeops-hostile-")
        test.addCleanup(self._cleanup_tmp)
        self.cp = ws_sim.WsPeer(role="cp", token=CP_TOKEN, name="CP")
        test.addCleanup(self.cp.stop)
        self.cp.start()
        self.runner = ws_sim.WsPeer(role="runner", token=RUNNER_TOKEN,
                                    name="RunnerA")
        test.addCleanup(self.runner.stop)
        self.runner.start()
        self.k8s = k8s_sim.K8sSim(port=0, token=None, controllers=False)
        self.k8s.requests = collections.deque()   # keep every request
        test.addCleanup(self.k8s.stop)
        self.k8s.start()
        cfg = agentproc.base_config(
            self.tmp, cluster_name=CLUSTER, cp_url=self.cp.url,
            cp_token=CP_TOKEN,
            k8s_url="http://127.0.0.1:%d" % self.k8s.port,
            agent_id="agent-%s" % test._testMethodName[5:8].rstrip("_"),
            name="hostile-agent", heartbeat="1s", log_level=log_level,
            workers=workers, health=False)
        cfg["health"] = {"listen": ""}
        cfg["control_plane"].update({"register_timeout": "2s",
                                     "status_interval": "0"})
        cfg["kubernetes"].update({"request_timeout": "10s",
                                  "connect_timeout": "2s"})
        for sec, ov in (("agent", agent_overrides),
                        ("control_plane", cp_overrides),
                        ("runner", runner_overrides),
                        ("kubernetes", k8s_overrides)):
            cfg[sec].update(ov or {})
        self.agent = agentproc.Agent(self.tmp, cfg)
        test.addCleanup(self.agent.kill)
        self.agent.start()

    def _cleanup_tmp(self):
        if os.environ.get("KEEP_HOSTILE"):
            print("hostile test files kept in %s" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def peer(self, name, token):
        """Another Runner simulator (stopped at cleanup)."""
        p = ws_sim.WsPeer(role="runner", token=token, name=name)
        self.test.addCleanup(p.stop)
        return p.start()

    def assign(self, peer, token, runner_id, timeout=T_HB):
        mark = self.cp.mark()
        msg = self.cp.assign_runner(peer.url, token, runner_id)
        reply = self.cp.wait_for(reply_to(msg["id"]), timeout, after=mark)
        self.test.assertIs(data_of(reply).get("success"), True,
                           "runner_assigned: %s" % ws_sim.summarize(reply))
        return reply

    def up(self, runner_id="runner-A"):
        """Wait for register, assign the runner, wait until it is open."""
        self.cp.wait_for("register", T_CONNECT)
        self.assign(self.runner, RUNNER_TOKEN, runner_id)
        self.runner.wait_connected(T_CONNECT)
        self.cp.wait_for(heartbeat_with(cp=True, runner=True), T_HB)

    def wait_api_quiet(self, quiet=1.5, timeout=60):
        """Wait until the Kubernetes simulator saw no request for `quiet`
        seconds; returns the number of requests seen."""
        deadline = time.monotonic() + timeout
        n, since = len(self.k8s.requests), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            m = len(self.k8s.requests)
            if m != n:
                n, since = m, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return n
        self.test.fail("the Kubernetes API simulator still busy after "
                       "%d s" % timeout)


class Hostile(unittest.TestCase):

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

    def fail_with_log(self, msg, lines=60):
        tail = self.rig.agent.log_tail(lines) if self.rig else "(no agent)"
        self.fail("%s\n--- agent log tail ---\n%s" % (msg, tail))

    # ------------------------------------------------ 01: replies owed

    def _owed_replies(self, switch):
        """300 scales on one object (one worker, in order) owed to
        runner-A against a slow API; `switch(rig, b)` moves the agent to
        runner-B. Afterwards B must have none of A's replies and A only
        its own."""
        rig = self.make_rig(workers=2)
        rig.k8s.create(deployment("w"))
        rig.k8s.create(deployment("b-sync"))
        rig.up("runner-A")
        b = rig.peer("RunnerB", RUNNER_B_TOKEN)
        a_conn = rig.runner.last_connection
        msgs = [make_msg("scale", {"name": "w", "replicas": i % 3 + 1},
                         id="a-%03d" % i) for i in range(300)]
        ids = [m["id"] for m in msgs]
        idset = set(ids)
        rig.k8s.set_fault("slow:0.03")
        self.assertEqual(faultkit.send_many(rig.runner, msgs, a_conn), 300)
        rig.k8s.wait_for(lambda: faultkit.scale_puts(rig.k8s)
                         [("default", "w")] >= 3, 10)
        t0 = time.monotonic()
        switch(rig, b)
        b.wait_connected(30)
        t_b = time.monotonic() - t0
        left = 300 - faultkit.scale_puts(rig.k8s)[("default", "w")]
        # The rest of A's scales at full speed (their replies are the ones
        # that could leak), then a reply on B's link after all of them.
        rig.k8s.set_fault(None)
        rig.wait_api_quiet()
        r = b.call("scale", {"name": "b-sync", "replicas": 2}, T_OP,
                   id="b-sync-1")
        self.assertIs(data_of(r).get("success"), True, ws_sim.summarize(r))
        time.sleep(0.5)
        puts = faultkit.scale_puts(rig.k8s)[("default", "w")]
        on_b = [m for m in b.received
                if set(reply_ids(m)) & idset]
        replies_a = [m for m in rig.runner.received
                     if m.get("type") in ("response", "proxy_response")]
        foreign_a = [m for m in replies_a
                     if m.get("request_id") not in idset or
                     data_of(m).get("request_id") != m.get("request_id")]
        got_a = collections.Counter(m.get("request_id") for m in replies_a)
        dropped = len(re.findall(r'msg="replies for a previous peer '
                                 r'dropped"', rig.agent.log()))
        print("   %d of A's 300 scales executed (%d of them after B was "
              "open), A got %d replies, B got %d of A's; B open %.1f s "
              "after the switch; %d 'replies for a previous peer dropped' "
              "log lines; A closed with %s"
              % (puts, left, len(replies_a), len(on_b), t_b, dropped,
                 a_conn.close_code))
        self.assertEqual([ws_sim.summarize(m) for m in on_b[:5]], [],
                         "replies owed to runner-A went to runner-B "
                         "(%d in all)" % len(on_b))
        self.assertEqual([ws_sim.summarize(m) for m in foreign_a[:5]], [],
                         "runner-A got replies that are not its own")
        self.assertEqual([i for i, n in got_a.items() if n > 1], [],
                         "runner-A got a reply twice")
        for m in replies_a:
            self.assertIs(data_of(m).get("success"), True,
                          ws_sim.summarize(m))
        self.assertGreater(len(replies_a), 0,
                           "runner-A got no reply before the switch")
        self.assertEqual(puts, 300, "A's scales were not all executed")
        self.assertGreater(left, 0, "set-up: nothing was still owed to "
                           "runner-A when B was open: the test proved "
                           "nothing")
        self.assertFalse(a_conn.open, "runner-A's link still open")
        self.assertTrue(b.connected)
        self.assertEqual(rig.runner.connection_count, 1,
                         "the agent went back to runner-A")
        return rig, b

    def test_01_replaced_runner_replies_not_sent_to_new(self):
        def switch(rig, b):
            rig.assign(b, RUNNER_B_TOKEN, "runner-B")
        self._owed_replies(switch)

    def test_01b_unassigned_runner_replies_not_sent_to_next(self):
        def switch(rig, b):
            mark = rig.cp.mark()
            m = rig.cp.unassign_runner("runner-A")
            r = rig.cp.wait_for(reply_to(m["id"]), T_HB, after=mark)
            self.assertIs(data_of(r).get("success"), True,
                          ws_sim.summarize(r))
            # the link to A closes (after up to 10 s of draining) while
            # A's scales are still running; only then comes B
            rig.runner.wait_disconnected(20)
            self.assertLess(faultkit.scale_puts(rig.k8s)[("default", "w")],
                            290, "set-up: A's scales ended before B came")
            rig.assign(b, RUNNER_B_TOKEN, "runner-B")
        self._owed_replies(switch)

    # ------------------------------------------------ 02: SIGTERM backlog

    def test_02_sigterm_backlog_respects_shutdown_timeout(self):
        rig = self.make_rig(workers=2,
                            agent_overrides={"shutdown_timeout": "3s"})
        rig.k8s.create(deployment("w"))
        rig.up()
        conn = rig.runner.last_connection
        msgs = [make_msg("scale", {"name": "w", "replicas": i % 3 + 1},
                         id="q-%03d" % i) for i in range(600)]
        ids = [m["id"] for m in msgs]
        rig.k8s.set_fault("slow:0.05")
        self.assertEqual(faultkit.send_many(rig.runner, msgs, conn), 600)
        time.sleep(1.0)
        t0 = time.monotonic()
        rig.agent.send_signal(signal.SIGTERM)
        rc = rig.agent.wait(12)
        took = time.monotonic() - t0
        if rc is None:
            rig.agent.kill()
            self.fail_with_log("the agent did not exit within 12 s of "
                               "SIGTERM (shutdown_timeout 3s)")
        try:
            rig.runner.wait_disconnected(5)
        except AssertionError:
            pass
        replies = faultkit.replies_by_id(rig.runner, ids)
        ok, shutting, other, twice = [], [], [], []
        for i in ids:
            if len(replies[i]) > 1:
                twice.append(i)
            for raw in replies[i]:
                m = json.loads(raw)
                d = data_of(m)
                if d.get("success") is True:
                    ok.append(m)
                elif d.get("reason") == "ShuttingDown":
                    shutting.append(m)
                else:
                    other.append(m)
        unanswered = sum(1 for i in ids if not replies[i])
        puts = faultkit.scale_puts(rig.k8s)[("default", "w")]
        print("   SIGTERM with 600 scales queued, shutdown_timeout 3s: exit "
              "%s after %.2f s; %d succeeded, %d ShuttingDown, %d other, "
              "%d never read (unanswered); PUT .../w/scale seen by the API: "
              "%d" % (rc, took, len(ok), len(shutting), len(other),
                      unanswered, puts))
        self.assertEqual(rc, 0, "exit code after SIGTERM")
        self.assertLess(took, 12)
        self.assertGreaterEqual(took, 2.5, "the agent did not wait for "
                                "shutdown_timeout with work in flight")
        self.assertEqual([ws_sim.summarize(m) for m in other[:5]], [],
                         "replies neither successful nor ShuttingDown")
        self.assertEqual(twice, [], "ids answered twice")
        self.assertGreater(len(shutting), 0,
                           "no request was answered with ShuttingDown")
        self.assertGreater(len(ok), 0, "nothing ran before the timeout")
        aborted = []
        want = "agent is stopping: scale not executed, send it again"
        for m in shutting:
            rid = m.get("request_id")
            self.assertIn(rid, ids)
            self.assertEqual(m.get("type"), "response")
            if "was aborted after shutdown_timeout" in m.get("error", ""):
                # in flight at the deadline: the call was cut short
                aborted.append(m)
                continue
            self.assertEqual(m.get("error"), want)
            self.assertEqual(data_of(m), {"success": False,
                                          "request_id": rid,
                                          "error": want,
                                          "reason": "ShuttingDown"})
        self.assertLessEqual(len(aborted), 2, "more aborted than workers")
        # an aborted call may or may not have reached the API first
        self.assertGreaterEqual(puts, len(ok),
                                "a success reply without its PUT")
        self.assertLessEqual(puts, len(ok) + len(aborted),
                             "a request answered 'not executed' was "
                             "executed")

    def test_02b_sigterm_aborts_a_call_to_a_hung_api(self):
        """One scale in flight against an API that answers in 30 s:
        SIGTERM ends it at shutdown_timeout (2 s), not request_timeout."""
        rig = self.make_rig(workers=1,
                            agent_overrides={"shutdown_timeout": "2s"})
        rig.k8s.create(deployment("h"))
        rig.up()
        rig.k8s.set_fault("slow:30")
        rid = rig.runner.request("scale", {"name": "h", "replicas": 2},
                                 id="hung-1")
        time.sleep(0.5)
        t0 = time.monotonic()
        rig.agent.send_signal(signal.SIGTERM)
        rc = rig.agent.wait(15)
        took = time.monotonic() - t0
        if rc is None:
            rig.agent.kill()
            self.fail_with_log("no exit within 15 s of SIGTERM")
        rig.k8s.set_fault(None)
        print("   SIGTERM with a call to a hung API in flight: exit %s "
              "after %.2f s (shutdown_timeout 2s, request_timeout %s)"
              % (rc, took, "10s"))
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0, "waited for the API, not the deadline")
        r = rig.runner.wait_for(reply_to(rid), 5)
        d = data_of(r)
        self.assertIs(d.get("success"), False)
        self.assertEqual(d.get("reason"), "ShuttingDown")
        self.assertIn("was aborted after shutdown_timeout", r["error"])

    # ------------------------------------------------ 03: ping flood

    def test_03_ping_flood_from_peer_not_reading(self):
        rig = self.make_rig(runner_overrides={"ping_interval": "1s",
                                              "ping_timeout": "3s"})
        rig.up()
        pid = rig.agent.pid
        time.sleep(1.0)
        base = max(faultkit.rss_kib(pid) for _ in range(5)
                   if time.sleep(0.1) is None)
        n0 = rig.runner.connection_count
        conn = rig.runner.last_connection
        sampler = faultkit.RssSampler(pid, 0.05).start()
        self.addCleanup(sampler.stop)
        chunk = ping_frames(10000)
        log_before = len(rig.agent.log())

        async def flood():
            tr = conn.ws.transport
            tr.pause_reading()       # read nothing: no pong, no message
            sent = 0
            for _ in range(40):
                if tr.is_closing():
                    break
                tr.write(chunk)
                sent += 10000
                await asyncio.sleep(0.05)
            return sent

        t0 = time.monotonic()
        sent = rig.runner._call(flood(), 60)
        t_flood = time.monotonic() - t0
        rx = re.compile(r'msg="disconnected" endpoint=runner reason='
                        r'"peer stopped reading: over (\d+) bytes '
                        r'unsent for 3000ms"')
        m, new, t_drop, t_back = None, None, None, None
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not m:
                m = rx.search(rig.agent.log()[log_before:])
                time.sleep(0.05)
            t_drop = time.monotonic() - t0
            if m:
                new = rig.runner.wait_connected(T_CONNECT, count=n0 + 1)
                t_back = time.monotonic() - t0
        finally:
            sampler.stop()
            rig.runner._loop.call_soon_threadsafe(conn.ws.transport.abort)
        peak = sampler.max_kib
        print("   %d pings sent in %.1f s by a Runner reading nothing: VmRSS "
              "baseline %d KiB, peak %d KiB (+%d KiB); 'peer stopped "
              "reading' %s, reconnected %s"
              % (sent, t_flood, base, peak, peak - base,
                 "after %.1f s (over %s bytes unsent)" % (t_drop, m.group(1))
                 if m else "never (waited %.1f s)" % t_drop,
                 "after %.1f s" % t_back if t_back else "-"))
        self.assertEqual(sent, 400000)
        self.assertLess(peak - base, 32 * 1024,
                        "VmRSS grew by %d KiB under the ping flood"
                        % (peak - base))
        if not m:
            self.fail_with_log("no 'peer stopped reading' disconnect "
                               "within 20 s of the ping flood")
        self.assertLess(t_drop, 10, "the link was dropped long after "
                        "ping_timeout (3s)")
        self.assertTrue(new.open)
        mark = rig.cp.mark()
        rig.cp.wait_for(heartbeat_with(cp=True, runner=True), T_HB,
                        after=mark)
        r = rig.runner.call("get_resources", {"resource_type": "namespaces"},
                            T_OP, id="after-flood")
        self.assertIs(data_of(r).get("success"), True, ws_sim.summarize(r))
        self.assertTrue(rig.agent.alive)

    # ------------------------------------------------ 04: long id

    def test_04_malformed_message_long_id_echoed_whole(self):
        rig = self.make_rig()
        rig.up()
        rid = "".join("ID%04d-" % i for i in range(286))[:2000]
        self.assertEqual(len(rid), 2000)
        mark = rig.runner.mark()
        rig.runner.send_raw(json.dumps({"id": rid, "data": {}}))
        reply = rig.runner.wait_for(lambda m: m.get("type") == "response",
                                    T_HB, after=mark)
        want = 'malformed message: missing "type"'
        self.assertEqual(len(reply.get("request_id") or ""), 2000,
                         "top-level request_id cut")
        self.assertEqual(reply.get("request_id"), rid)
        self.assertEqual(reply.get("error"), want)
        self.assertEqual(data_of(reply), {"success": False,
                                          "request_id": rid,
                                          "error": want})
        # and data of the wrong kind
        rid2 = "D" * 1999 + "x"
        mark = rig.runner.mark()
        rig.runner.send_raw(json.dumps({"id": rid2, "type": "scale",
                                        "data": 42}))
        reply = rig.runner.wait_for(lambda m: m.get("type") == "response",
                                    T_HB, after=mark)
        want = "data must be an object or a string"
        self.assertEqual(reply.get("request_id"), rid2)
        self.assertEqual(reply.get("error"), want)
        self.assertEqual(data_of(reply), {"success": False,
                                          "request_id": rid2,
                                          "error": want})
        self.assertEqual(rig.runner.connection_count, 1)

    # ------------------------------------------------ 05: log injection

    def test_05_log_injection_through_type(self):
        rig = self.make_rig(log_level="debug")
        rig.up()
        forged = ('\nts=2099-01-01T00:00:00.000Z level=error thread=main '
                  'msg="INJECTED"')
        typ = "x" + forged
        reply = rig.runner.call(typ, {}, T_HB, id="inj-1")
        self.assertEqual(reply.get("error"),
                         "unsupported message type: " + typ)
        # the same through the id, and a carriage return
        reply = rig.runner.call("y", {}, T_HB, id="inj-2" + forged +
                                "\r\rts=2099-01-01T00:00:00.001Z x=1")
        self.assertEqual(reply.get("error"), "unsupported message type: y")
        time.sleep(0.3)
        log = rig.agent.log()
        lines = re.split(r"[\r\n]", log)
        forged_lines = [ln for ln in lines if ln.startswith("ts=2099")]
        seen = [ln for ln in lines if "INJECTED" in ln]
        print("   %d log lines mention INJECTED, %d start with ts=2099"
              % (len(seen), len(forged_lines)))
        self.assertEqual(forged_lines, [], "a peer forged a log line")
        self.assertTrue(seen, "set-up: the type was never logged")
        for ln in seen:
            self.assertTrue(ln.startswith("ts=20") and
                            not ln.startswith("ts=2099"), ln)

    # ------------------------------------------------ 06: runner_status

    def test_06_runner_status_connect_failure(self):
        rig = self.make_rig()
        rig.cp.wait_for("register", T_CONNECT)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()                  # nothing listens there
        mark = rig.cp.mark()
        msg = rig.cp.assign_runner("ws://127.0.0.1:%d" % dead, "t0k",
                                   "runner-dead")
        reply = rig.cp.wait_for(reply_to(msg["id"]), T_HB, after=mark)
        self.assertIs(data_of(reply).get("success"), True)
        st = rig.cp.wait_for("runner_status", T_HB, after=mark)
        d = data_of(st)
        print("   connect failure: runner_status %s" % json.dumps(d))
        self.assertEqual(d.get("runner_id"), "runner-dead")
        self.assertIs(d.get("connected"), False)
        self.assertEqual(d.get("error"), "connect to 127.0.0.1 port %d: "
                         "Connection refused" % dead)
        self.assertIsInstance(d.get("attempts"), int)
        self.assertEqual(d["attempts"], 1)

    def test_06b_runner_status_replaced_runner_names_old(self):
        rig = self.make_rig()
        rig.cp.wait_for("register", T_CONNECT)
        mark = rig.cp.mark()
        rig.assign(rig.runner, RUNNER_TOKEN, "runner-A")
        rig.runner.wait_connected(T_CONNECT)
        up_a = rig.cp.wait_for(lambda m: m.get("type") == "runner_status" and
                               data_of(m).get("connected") is True, T_HB,
                               after=mark)
        self.assertEqual(data_of(up_a).get("runner_id"), "runner-A")
        b = rig.peer("RunnerB", RUNNER_B_TOKEN)
        mark = rig.cp.mark()
        rig.assign(b, RUNNER_B_TOKEN, "runner-B")
        b.wait_connected(T_CONNECT)
        rig.cp.wait_for(lambda m: m.get("type") == "runner_status" and
                        data_of(m).get("connected") is True, T_HB,
                        after=mark)
        time.sleep(0.3)
        sts = [data_of(m) for m in rig.cp.received[mark:]
               if m.get("type") == "runner_status"]
        print("   replacement: %s" % json.dumps(
            [(x.get("runner_id"), x.get("connected"), x.get("error"))
             for x in sts]))
        self.assertEqual([(x.get("runner_id"), x.get("connected"))
                          for x in sts],
                         [("runner-A", False), ("runner-B", True)])
        self.assertEqual(sts[0].get("error"), "endpoint changed")
        self.assertNotIn("error", sts[1])

    # ------------------------------------------------ 07: unassign resets

    def test_06c_repeated_assignment_keeps_the_link(self):
        """The CP re-sends the same runner_assigned: the link stays up and
        replies owed on it are delivered."""
        rig = self.make_rig(workers=1)
        rig.k8s.create(deployment("r"))
        rig.up()
        n0 = rig.runner.connection_count
        rig.k8s.set_fault("slow:0.05")
        ids = [rig.runner.request("scale", {"name": "r", "replicas": i % 3},
                                  id="rep-%d" % i) for i in range(40)]
        r = rig.assign(rig.runner, RUNNER_TOKEN, "runner-A")
        self.assertEqual(data_of(r).get("message"),
                         "runner already assigned")
        for rid in ids:
            rig.runner.wait_for(reply_to(rid), 20)
        rig.k8s.set_fault(None)
        self.assertEqual(rig.runner.connection_count, n0,
                         "a repeated assignment reconnected the runner")

    def test_07_unassigned_heartbeat_attempts_reset(self):
        rig = self.make_rig()
        rig.cp.wait_for("register", T_CONNECT)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        mark = rig.cp.mark()
        rig.cp.assign_runner("ws://127.0.0.1:%d" % dead, "t0k", "runner-dead")
        hb = rig.cp.wait_for(
            lambda m: m.get("type") == "heartbeat" and
            (data_of(m).get("runner") or {}).get("attempts", 0) >= 2 and
            (data_of(m).get("runner") or {}).get("last_error"),
            T_HB + 5, after=mark)
        before = data_of(hb)["runner"]
        mark = rig.cp.mark()
        m = rig.cp.unassign_runner("runner-dead")
        r = rig.cp.wait_for(reply_to(m["id"]), T_HB, after=mark)
        self.assertIs(data_of(r).get("success"), True, ws_sim.summarize(r))
        # the first heartbeat sent after the reply
        idx = next(i for i, x in enumerate(rig.cp.received)
                   if x is r or (x.get("request_id") == m["id"]))
        hb = rig.cp.wait_for("heartbeat", T_HB, after=idx + 1)
        after = data_of(hb)["runner"]
        print("   runner before unassign: %s\n   after: %s"
              % (json.dumps(before), json.dumps(after)))
        self.assertIsNone(after.get("id"))
        self.assertIs(after.get("connected"), False)
        self.assertEqual(after.get("state"), "idle")
        self.assertIn("attempts", after)
        self.assertEqual(after["attempts"], 0)
        self.assertIn("last_error", after)
        self.assertIsNone(after["last_error"])
        self.assertIs(data_of(hb)["connections"]["runner"], False)

    # ------------------------------------------------ 08: config check

    def _check(self, tmp, name, body):
        path = os.path.join(tmp, name + ".ini")
        with open(path, "w") as f:
            f.write(body)
        r = subprocess.run([agentproc.AGENT_BIN, "-t", "-c", path],
                           capture_output=True, text=True, timeout=20)
        return path, r.returncode, (r.stdout + r.stderr)

    def test_08_config_check_refuses(self):
        tmp = tempfile.mkdtemp(prefix="pipeops-hostile-ini-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.makedirs(os.path.join(tmp, "state"))
        garbage = os.path.join(tmp, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("garbage\n-----BEGIN CERTIFICATE-----\nnot base64 !!\n"
                    "-----END CERTIFICATE-----\n")
        cadir = os.path.join(tmp, "cadir")
        os.makedirs(cadir)
        head = ("[agent]\n"                                    # 1
                "cluster_name = c1\n"                          # 2
                "state_dir = %s\n"                             # 3
                "pid_file = %s\n"                              # 4
                "log_target = stderr\n"                        # 5
                "[control_plane]\n"                            # 6
                "endpoint = wss://localhost:1\n"               # 7
                "token = x\n"                                  # 8
                ) % (os.path.join(tmp, "state"), os.path.join(tmp, "pid"))
        # the base file is fine
        path, rc, out = self._check(tmp, "ok", head + "ping_interval = 3s\n"
                                    "ping_timeout = 4s\n")
        self.assertEqual(rc, 0, out)
        cases = [
            ("ping_after", "ping_interval = 30s\nping_timeout = 10s\n", 10,
             r"\[control_plane\] ping_timeout \(10s\) must be longer than "
             r"ping_interval \(30s\)$"),
            ("ping_before", "ping_timeout = 10s\nping_interval = 30s\n", 10,
             r"\[control_plane\] ping_timeout \(10s\) must be longer than "
             r"ping_interval \(30s\)$"),
            ("ping_equal_runner",
             "[runner]\nping_interval = 5s\nping_timeout = 5s\n", 11,
             r"\[runner\] ping_timeout \(5s\) must be longer than "
             r"ping_interval \(5s\)$"),
            ("ca_garbage", "ca_file = %s\n" % garbage, 9,
             r'\[control_plane\] ca_file: "%s": not a usable certificate '
             r'file \(.+\)$' % re.escape(garbage)),
            ("ca_dir", "ca_file = %s\n" % cadir, 9,
             r'\[control_plane\] ca_file: "%s": \S.*$' % re.escape(cadir)),
            ("runner_ca_dir", "[runner]\nreconnect_max = 2s\n"
             "ca_file = %s\n" % cadir, 11,
             r'\[runner\] ca_file: "%s": \S.*$' % re.escape(cadir)),
            ("k8s_ca_garbage", "[kubernetes]\napi_server = "
             "https://localhost:6443\nca_file = %s\n" % garbage, 11,
             r'\[kubernetes\] ca_file: "%s": not a usable certificate '
             r'file \(.+\)$' % re.escape(garbage)),
        ]
        for name, tail, line, rx in cases:
            with self.subTest(name):
                path, rc, out = self._check(tmp, name, head + tail)
                errs = [ln for ln in out.splitlines() if ": error: " in ln]
                print("   %s: exit %d: %s" % (name, rc, " | ".join(errs)))
                self.assertEqual(rc, 1, "%s accepted: %s" % (name, out))
                self.assertEqual(len(errs), 1, out)
                self.assertRegex(errs[0], r"^%s:%d: error: %s"
                                 % (re.escape(path), line, rx))

    # ------------------------------------------------ 09: proxy_deny /watch/

    def test_09_proxy_deny_covers_legacy_watch_path(self):
        deny = "/apis/apps/v1/namespaces/default/deployments"
        rig = self.make_rig(k8s_overrides={"proxy_deny": deny})
        rig.k8s.create(deployment("web"))
        rig.up()
        time.sleep(0.5)
        reqs = list(rig.k8s.requests)
        counts = dict(rig.k8s.counts)
        cases = [
            ("w-1", "/apis/apps/v1/watch/namespaces/default/deployments",
             True),
            ("w-2", "/apis/apps/v1/watch/namespaces/default/deployments/web",
             True),
            ("w-3", "/apis/apps/v1/watch/namespaces/default/deployments",
             False),   # a /watch/ path is a stream even without the flag
            ("w-4", deny, False),
        ]
        for rid, path, stream in cases:
            with self.subTest(rid):
                mark = rig.runner.mark()
                data = {"method": "GET", "path": path}
                if stream:
                    data["stream"] = True
                reply = rig.runner.call("proxy_request", data, T_OP, id=rid)
                msgs = [m for m in rig.runner.received[mark:]
                        if rid in reply_ids(m)]
                d = data_of(reply)
                print("   %s %s: %s" % (rid, path, json.dumps(d)[:200]))
                self.assertEqual(len(msgs), 1, "chunks came: %s"
                                 % [ws_sim.summarize(x) for x in msgs])
                self.assertEqual(reply.get("type"), "proxy_response")
                self.assertEqual(d.get("status_code"), 403)
                err = 'proxy path "%s" refused: denied by [kubernetes] ' \
                      'proxy_deny' % path
                self.assertEqual(reply.get("error"), err)
                self.assertEqual(d.get("error"), err)
                self.assertEqual(d.get("request_id"), rid)
                if d.get("stream"):
                    self.assertIs(d.get("done"), True)
                    self.assertEqual(d.get("stream_id"), rid)
                self.assertFalse(d.get("body"))
        time.sleep(1.0)
        self.assertEqual(list(rig.k8s.requests)[len(reqs):], [],
                         "API calls were made for denied paths")
        self.assertEqual(dict(rig.k8s.counts), counts)
        # a path outside the deny prefix still works
        r = rig.runner.call("proxy_request", {
            "path": "/apis/apps/v1/namespaces/kube-system/deployments"},
            T_OP, id="allowed-1")
        self.assertEqual(data_of(r).get("status_code"), 200,
                         ws_sim.summarize(r))


if __name__ == "__main__":
    harness.main()
