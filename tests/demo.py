#!/usr/bin/python3
"""make demo: the dual-connection flow, end to end, on this machine.

Generates a throw-away PKI, starts the Control Plane and Runner simulators
(tests/sim/ws_sim.py, wss) and the Kubernetes API simulator
(tests/sim/k8s_sim.py, https), starts agent/pipeops-agent with a generated
configuration, then plays register -> runner assignment -> deploy -> scale ->
query, printing every message in both directions. Prints "demo OK" and exits
0, or names the step that failed and exits 1. Leaves no process behind.
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(HERE, "sim"))
import agentproc  # noqa: E402
import ws_sim  # noqa: E402
from ws_sim import data_of, heartbeat_with, reply_to  # noqa: E402

CLUSTER = "demo"
DEADLINE = 55                       # seconds for the whole demo
_print_lock = threading.Lock()
_hb_state = {}


def out(line=""):
    with _print_lock:
        try:
            print(line, flush=True)
        except BrokenPipeError:     # `make demo | head`: keep cleaning up
            pass


def clock(t=None):
    t = time.time() if t is None else t
    return time.strftime("%H:%M:%S", time.localtime(t)) + \
        ".%03d" % int((t % 1) * 1000)


def short(v, n=48):
    s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
    return s if len(s) <= n else s[:n - 3] + "..."


def describe(msg):
    """The interesting fields of a message, as key=value text."""
    if not isinstance(msg, dict):
        return "(raw) %s" % short(msg if isinstance(msg, str) else repr(msg))
    t = msg.get("type")
    d = data_of(msg)
    d = d if isinstance(d, dict) else {}
    kv = []

    def add(k, v):
        if v is not None and v != "":
            kv.append("%s=%s" % (k, short(v) if not isinstance(v, str)
                                 else short(v)))

    if t == "register":
        add("id", d.get("id"))
        add("name", d.get("name"))
        add("cluster", d.get("cluster_name"))
        add("version", d.get("version"))
    elif t == "heartbeat":
        c = d.get("connections") or {}
        add("control_plane", c.get("control_plane"))
        add("runner", c.get("runner"))
    elif t == "runner_assigned":
        add("runner_id", d.get("runner_id"))
        add("endpoint", d.get("runner_endpoint"))
        kv.append("token=***")
    elif t == "runner_status":
        add("runner_id", d.get("runner_id"))
        add("connected", d.get("connected"))
        add("error", d.get("error"))
    elif t == "deploy":
        add("name", d.get("name"))
        add("image", d.get("image"))
        add("replicas", d.get("replicas"))
    elif t == "scale":
        add("name", d.get("name"))
        add("replicas", d.get("replicas"))
    elif t == "response":
        add("request_id", msg.get("request_id") or d.get("request_id"))
        add("success", d.get("success"))
        add("error", msg.get("error"))
        add("agent_id", d.get("agent_id"))
        dep = d.get("deployment")
        if isinstance(dep, dict):
            add("deployment", "%s/%s" % (dep.get("namespace"),
                                         dep.get("name")))
            add("uid", dep.get("uid"))
        add("replicas", d.get("replicas"))
        if isinstance(d.get("deployments"), list):
            add("deployments", [x.get("name") for x in d["deployments"]])
        if isinstance(d.get("services"), list):
            add("services", [x.get("name") for x in d["services"]])
        for k in ("nodes", "pods"):
            if isinstance(d.get(k), list):
                add(k, len(d[k]))
        if not any(k.startswith(("deployment", "replicas", "agent_id"))
                   for k in kv):
            add("message", d.get("message"))
    elif t == "status":
        m = d.get("metrics") or {}
        add("nodes", m.get("node_count"))
        add("pods", m.get("pod_count"))
    else:
        if d:
            add("data", d)
        add("error", msg.get("error"))
    if t not in ("register", "heartbeat", "response"):
        add("id", msg.get("id"))
    return " ".join(kv)


def transcript(peer, event, payload):
    name = peer.name
    if event in ("recv", "send"):
        if isinstance(payload, dict) and payload.get("type") == "heartbeat":
            c = (data_of(payload) or {}).get("connections")
            key = json.dumps(c, sort_keys=True)
            if _hb_state.get(name) == key:
                _hb_state[name + "#"] = _hb_state.get(name + "#", 0) + 1
                return          # print heartbeats only when they change
            _hb_state[name] = key
        arrow = ("agent -> %-7s" % name) if event == "recv" else \
            ("%-7s -> agent" % name)
        mtype = payload.get("type") if isinstance(payload, dict) else "(raw)"
        out("%s  %s %-16s %s" % (clock(), arrow, mtype, describe(payload)))
    elif event == "connect":
        event_line(name, "connected", "path=%s user-agent=%s" % (
            payload.path, payload.header("User-Agent")))
    elif event == "disconnect":
        event_line(name, "disconnected", "code=%s" % payload.close_code)
    elif event == "reject":
        event_line(name, "refused", "status=%s path=%s" % (
            payload["status"], payload["path"]))


def event_line(who, what, detail=""):
    out("%s  %-16s %-16s %s" % (clock(), "[%s]" % who, what, detail))


class StepFailed(Exception):
    pass


class Demo:
    def __init__(self):
        self.step_name = "setup"
        self.tmp = tempfile.mkdtemp(prefix="pipeops-demo-")
        self.cp = self.runner = self.k8s = self.agent = None
        self.t0 = time.monotonic()

    def step(self, name):
        self.step_name = name
        left = DEADLINE - (time.monotonic() - self.t0)
        if left <= 0:
            raise StepFailed("out of time (%d s)" % DEADLINE)
        out()
        out("== %s" % name)

    def left(self, want):
        return max(1.0, min(want, DEADLINE - (time.monotonic() - self.t0)))

    def wait_for(self, peer, predicate, want, after=0):
        """peer.wait_for in short slices, failing at once when the agent
        exits."""
        deadline = time.monotonic() + self.left(want)
        while True:
            if not self.agent.alive:
                raise StepFailed("the agent exited with code %s"
                                 % self.agent.proc.poll())
            slice_ = min(0.5, deadline - time.monotonic())
            try:
                return peer.wait_for(predicate, max(slice_, 0.01), after)
            except ws_sim.SimTimeout:
                if time.monotonic() >= deadline:
                    raise

    def expect(self, cond, text):
        if not cond:
            raise StepFailed(text)

    def ok_reply(self, reply, what):
        d = data_of(reply) or {}
        self.expect(reply.get("type") == "response" and
                    d.get("success") is True and not reply.get("error"),
                    "%s failed: %s" % (what, ws_sim.summarize(reply, 400)))
        return d

    def run(self):
        self.step("setup")
        if not agentproc.have_agent():
            raise StepFailed("%s is not built (make builds it)"
                             % agentproc.AGENT_BIN)
        try:
            import k8s_sim
        except ImportError as e:
            raise StepFailed("tests/sim/k8s_sim.py: %s" % e)
        certdir = os.path.join(self.tmp, "pki")
        subprocess.run([os.path.join(HERE, "lib", "certs.sh"), certdir],
                       check=True, timeout=60)
        ca = os.path.join(certdir, "ca.pem")
        cp_token = "cp-" + secrets.token_hex(12)
        runner_token = "runner-" + secrets.token_hex(12)
        k8s_token = "k8s-" + secrets.token_hex(12)

        self.cp = ws_sim.WsPeer(role="cp", certdir=certdir, token=cp_token,
                                name="CP", transcript=transcript).start()
        self.runner = ws_sim.WsPeer(role="runner", certdir=certdir,
                                    token=runner_token, name="Runner",
                                    transcript=transcript).start()
        self.k8s = k8s_sim.K8sSim(port=0, certdir=certdir, token=k8s_token)
        self.k8s.start()
        cfg = agentproc.base_config(
            self.tmp, cluster_name=CLUSTER, cp_url=self.cp.url,
            cp_token=cp_token, ca_file=ca,
            k8s_url="https://localhost:%d" % self.k8s.port,
            k8s_token=k8s_token, agent_id="agent-demo", name="demo-agent",
            heartbeat="2s", log_level="info", labels={"env": "demo"})
        self.agent = agentproc.Agent(self.tmp, cfg)
        out("Control Plane  %s  (token file, CA %s)" % (self.cp.url, ca))
        out("Runner         %s" % self.runner.url)
        out("Kubernetes     https://localhost:%d" % self.k8s.port)
        out("agent config   %s" % self.agent.config_path)
        out("agent log      %s" % self.agent.log_path)
        out("agent config (tokens are in 0600 files):")
        for line in agentproc.render_ini(cfg).splitlines():
            if line and not line.startswith(";"):
                out("    " + line)
        self.agent.start()

        self.step("register with the Control Plane")
        reg = self.wait_for(self.cp, "register", 15)
        d = data_of(reg) or {}
        self.expect(d.get("cluster_name") == CLUSTER,
                    "register has cluster_name=%r" % d.get("cluster_name"))
        self.wait_for(self.cp, heartbeat_with(cp=True), 8)

        self.step("runner assignment")
        mark = self.cp.mark()
        msg = self.cp.assign_runner(self.runner.url, runner_token,
                                    "runner-demo", id="assign-1")
        self.ok_reply(self.wait_for(self.cp, reply_to(msg["id"]), 10,
                                    after=mark), "runner_assigned")
        self.runner.wait_connected(self.left(15))
        self.wait_for(self.cp, heartbeat_with(cp=True, runner=True), 10,
                      after=mark)

        self.step("deploy web (nginx, 2 replicas, port 80) from the Runner")
        reply = self.runner.call("deploy", {
            "name": "web", "image": "nginx:1.27", "replicas": 2,
            "ports": [{"name": "http", "container_port": 80,
                       "protocol": "TCP"}],
            "labels": {"tier": "front"}}, self.left(20), id="deploy-1")
        d = self.ok_reply(reply, "deploy")
        dep = self.k8s.get("deployments", "default", "web")
        self.expect(dep is not None, "no Deployment default/web in the "
                    "Kubernetes simulator")
        self.expect(self.k8s.get("services", "default", "web") is not None,
                    "no Service default/web in the Kubernetes simulator")
        event_line("Kubernetes", "deployment", "default/web replicas=%s uid=%s"
                   % (dep["spec"].get("replicas"), dep["metadata"].get("uid")))

        self.step("scale web to 3")
        reply = self.runner.call("scale", {"name": "web", "replicas": 3},
                                 self.left(20), id="scale-1")
        d = self.ok_reply(reply, "scale")
        dep = self.k8s.get("deployments", "default", "web")
        self.expect(dep["spec"].get("replicas") == 3,
                    "deployment has replicas=%s, want 3"
                    % dep["spec"].get("replicas"))
        event_line("Kubernetes", "deployment", "default/web replicas=%s"
                   % dep["spec"]["replicas"])

        self.step("query the cluster")
        reply = self.runner.call("get_resources", {}, self.left(20),
                                 id="query-1")
        d = self.ok_reply(reply, "get_resources")
        names = [x.get("name") for x in d.get("deployments") or []]
        self.expect("web" in names, "get_resources lists deployments %s"
                    % names)

        self.step("stop the agent (SIGTERM)")
        rc = self.agent.stop(timeout=self.left(10))
        self.expect(rc == 0, "agent exit code %s after SIGTERM" % rc)
        for peer in (self.runner, self.cp):
            try:
                peer.wait_disconnected(2)
            except AssertionError:
                pass
        log = self.agent.log()
        for tok in (cp_token, runner_token, k8s_token):
            self.expect(tok not in log, "a token appears in the agent log")
        hidden = sum(v for k, v in _hb_state.items() if k.endswith("#"))
        out("agent exited 0; no token in its log" +
            ("; %d unchanged heartbeat(s) not shown" % hidden
             if hidden else ""))

    def cleanup(self):
        if self.agent is not None:
            self.agent.kill()
        for peer in (self.runner, self.cp, self.k8s):
            if peer is not None:
                try:
                    peer.stop()
                except Exception as e:  # noqa: BLE001
                    out("(cleanup: %r)" % e)


def main():
    demo = Demo()

    def on_alarm(signum, frame):
        raise StepFailed("demo took longer than %d s" % (DEADLINE + 5))
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(DEADLINE + 5)
    ok = False
    try:
        demo.run()
        ok = True
    except (StepFailed, AssertionError, Exception) as e:  # noqa: BLE001
        out()
        out("demo FAILED at step '%s': %s" % (demo.step_name, e))
        if demo.agent is not None:
            out("--- agent log tail (%s) ---" % demo.agent.log_path)
            out(demo.agent.log_tail(30))
    finally:
        signal.alarm(0)
        demo.cleanup()
    if ok:
        shutil.rmtree(demo.tmp, ignore_errors=True)
        out()
        out("demo OK (%.1f s)" % (time.monotonic() - demo.t0))
        return 0
    out("files kept in %s" % demo.tmp)
    return 1


if __name__ == "__main__":
    sys.exit(main())
