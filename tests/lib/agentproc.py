"""Run the real agent binary from tests: write its INI file, start it in the
foreground with its log (stderr) captured to a file, stop it, read the log.

    cfg = agentproc.base_config(workdir, cluster_name="e2e",
                                cp_url=cp.url, cp_token="t", ca_file=ca)
    agent = agentproc.Agent(workdir, cfg)
    agent.start()
    ...
    rc = agent.stop()          # SIGTERM, waits; SIGKILL after the timeout
    agent.log()                # the whole log text

Every Agent started is killed at interpreter exit too (atexit), so a failing
test never leaves a process behind. Configuration format: CONFIG.md.
"""
import atexit
import ctypes
import os
import re
import signal
import subprocess
import time

import harness

TOP = harness.TOP
# PIPEOPS_AGENT_BIN runs the tests against another build (e.g. an asan one).
AGENT_BIN = os.environ.get("PIPEOPS_AGENT_BIN") or \
    os.path.join(TOP, "agent", "pipeops-agent")

_live = set()


def _kill_all():
    for a in list(_live):
        a.kill()


atexit.register(_kill_all)


def _die_with_parent():
    """preexec_fn: SIGKILL the agent when the test process dies, even by
    SIGKILL or timeout(1) (atexit does not run then). PR_SET_PDEATHSIG
    follows the thread that forked: start agents from the main thread."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def have_agent():
    return os.access(AGENT_BIN, os.X_OK)


def write_secret(path, text):
    """Write a token file with mode 0600 (no trailing newline)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def render_ini(sections):
    """sections: {section: {key: value}} (ordered) -> INI text. Values are
    written as they are; bools become true/false, lists comma-joined."""
    out = ["; written by tests/lib/agentproc.py"]
    for sec, keys in sections.items():
        out.append("")
        out.append("[%s]" % sec)
        for k, v in keys.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, (list, tuple)):
                v = ", ".join(str(x) for x in v)
            elif isinstance(v, dict):
                v = ", ".join("%s=%s" % kv for kv in v.items())
            out.append("%s = %s" % (k, v))
    return "\n".join(out) + "\n"


def base_config(workdir, cluster_name, cp_url, cp_token, ca_file=None,
                k8s_url=None, k8s_token=None, k8s_ca_file=None,
                agent_id="agent-e2e", name="e2e-agent", heartbeat="1s",
                log_level="debug", workers=2, labels=None, health=True):
    """The sections dict for a test agent. Tokens go to 0600 files in
    workdir; state_dir and pid_file live in workdir."""
    state = os.path.join(workdir, "state")
    os.makedirs(state, exist_ok=True)
    cp_tok = write_secret(os.path.join(workdir, "cp.token"), cp_token)
    agent = {
        "id": agent_id,
        "name": name,
        "cluster_name": cluster_name,
        "labels": labels,
        "workers": workers,
        "state_dir": state,
        "pid_file": os.path.join(workdir, "agent.pid"),
        "log_level": log_level,
        "log_target": "stderr",
        "shutdown_timeout": "5s",
    }
    cp = {
        "endpoint": cp_url,
        "token_file": cp_tok,
        "ca_file": ca_file,
        "heartbeat_interval": heartbeat,
        "reconnect_initial": "200ms",
        "reconnect_max": "2s",
        "connect_timeout": "5s",
        "register_timeout": "5s",
    }
    runner = {
        "ca_file": ca_file,
        "reconnect_initial": "200ms",
        "reconnect_max": "2s",
        "connect_timeout": "5s",
    }
    sections = {"agent": agent, "control_plane": cp, "runner": runner}
    if k8s_url:
        k8s = {"api_server": k8s_url, "ca_file": k8s_ca_file or ca_file,
               "request_timeout": "10s"}
        if k8s_token:
            k8s["token_file"] = write_secret(
                os.path.join(workdir, "k8s.token"), k8s_token)
        sections["kubernetes"] = k8s
    if health:
        sections["health"] = {
            "listen": "127.0.0.1:%d" % harness.free_port()}
    return sections


class Agent:
    """One agent process (`agent/pipeops-agent -c FILE -f`)."""

    def __init__(self, workdir, sections=None, binary=AGENT_BIN,
                 config_path=None, extra_args=(), env=None):
        self.workdir = workdir
        self.binary = binary
        self.config_path = config_path or os.path.join(workdir, "agent.ini")
        self.log_path = os.path.join(workdir, "agent.log")
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.returncode = None
        if sections is not None:
            self.write_config(sections)

    def write_config(self, sections):
        text = sections if isinstance(sections, str) else render_ini(sections)
        with open(self.config_path, "w") as f:
            f.write(text)
        return self.config_path

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("agent binary %s not built (run make)"
                               % self.binary)
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.binary, "-c", self.config_path, "-f"] + self.extra_args,
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=self.env, start_new_session=True,
                preexec_fn=_die_with_parent)
        finally:
            logf.close()
        _live.add(self)
        self.returncode = None
        return self

    def send_signal(self, sig):
        if self.alive:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Wait for exit; returns the exit code or None on timeout."""
        if self.proc is None:
            return self.returncode
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        _live.discard(self)
        return self.returncode

    def stop(self, timeout=15, sig=signal.SIGTERM):
        """Graceful stop: `sig`, wait up to `timeout`, then SIGKILL.
        Returns the exit code (negative: killed by that signal; the code
        after a forced SIGKILL is reported as None in .forced)."""
        self.forced = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            if self.wait(timeout) is None:
                self.forced = True
                self.kill()
                return None
        return self.wait(5)

    def kill(self):
        """SIGKILL the agent (and anything left in its session)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                try:
                    self.proc.kill()
                except OSError:
                    pass
        try:
            self.returncode = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        _live.discard(self)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=10):
        """Wait until the log matches regex `pattern`; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("agent log has no /%s/ after %.1fs; "
                                     "tail:\n%s" % (pattern, timeout,
                                                    self.log_tail()))
            if not self.alive:
                raise AssertionError("agent exited (%s) before logging /%s/;"
                                     " tail:\n%s" % (self.proc.poll(),
                                                     pattern, self.log_tail()))
            time.sleep(0.05)

    def check_config(self):
        """Run `-t` on the config; returns (exit code, output)."""
        r = subprocess.run([self.binary, "-t", "-c", self.config_path],
                           capture_output=True, text=True, timeout=20)
        return r.returncode, r.stdout + r.stderr

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
