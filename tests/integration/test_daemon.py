"""The operator side: `make install`, the init script driving the real
daemon, `-t/-V/-h` and usage errors, SIGHUP reload and SIGUSR1 log reopen.

Every agent runs in a temporary directory (INI, pid file, state, log) and
talks to a ws:// port on loopback where nothing listens: it keeps retrying,
which is all these tests need. Every process started is killed in a
`finally` (and at exit). Run: /usr/bin/python3 tests/integration/test_daemon.py
"""
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
import harness  # noqa: E402

BUILT_BIN = os.environ.get("PIPEOPS_AGENT_BIN") or \
    os.path.join(TOP, "agent", "pipeops-agent")
INIT_SCRIPT = os.path.join(TOP, "etc", "init.d", "pipeops-agent")
DEFAULTS_SRC = os.path.join(TOP, "etc", "default", "pipeops-agent")
SAMPLE_INI = os.path.join(TOP, "etc", "pipeops-agent.ini")
MAN_PAGE = os.path.join(TOP, "docs", "pipeops-agent.8")

_pids = set()   # daemons started by a test, killed at exit whatever happens


def _kill_leftovers():
    for pid in list(_pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


atexit.register(_kill_leftovers)


def _snapshot_binary():
    """Run a private copy of the built agent. A daemon running from
    agent/pipeops-agent makes the next `make` fail (cp: Text file busy), and
    a rebuild during the run would swap the file under start-stop-daemon's
    --exec check; a copy avoids both."""
    if not os.access(BUILT_BIN, os.X_OK):
        return BUILT_BIN
    d = tempfile.mkdtemp(prefix="pipeops-bin-")
    atexit.register(shutil.rmtree, d, True)
    dst = os.path.join(d, "pipeops-agent")
    shutil.copy2(BUILT_BIN, dst)
    return dst


AGENT_BIN = _snapshot_binary()


def have_agent():
    return os.access(AGENT_BIN, os.X_OK)


def makefile_version():
    with open(os.path.join(TOP, "Makefile")) as f:
        m = re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M)
    return m.group(1) if m else None


def alive(pid):
    """True while @pid runs (a zombie waiting for init counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what))
        time.sleep(0.05)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def read_pid(path):
    text = read_text(path).strip()
    return int(text) if text.isdigit() else None


def kill_pid_file(path):
    """SIGKILL whatever the pid file names, if it is one of our agents."""
    pid = read_pid(path)
    if pid and alive(pid):
        try:
            exe = os.path.realpath("/proc/%d/exe" % pid)
        except OSError:
            exe = ""
        if exe == os.path.realpath(AGENT_BIN):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not alive(pid), 5, "pid %d to die" % pid)


class Sandbox:
    """A temporary prefix: INI, defaults file, pid file, state dir, log."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pipeops-daemon-")
        self.ini = os.path.join(self.dir, "agent.ini")
        self.pid_file = os.path.join(self.dir, "agent.pid")
        self.state = os.path.join(self.dir, "state")
        self.log = os.path.join(self.dir, "agent.log")
        self.defaults = os.path.join(self.dir, "default-pipeops-agent")
        self.token = os.path.join(self.dir, "cp.token")
        self.cp_port = harness.free_port()
        os.makedirs(self.state)
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"test-token")
        os.close(fd)
        self.write_ini()
        self.write_defaults()

    def ini_text(self, extra_agent="", log_level="info"):
        return (
            "; written by tests/integration/test_daemon.py\n"
            "[agent]\n"
            "id = agent-daemon-test\n"
            "cluster_name = daemon-test\n"
            "workers = 2\n"
            "state_dir = %(state)s\n"
            "pid_file = %(pid)s\n"
            "log_level = %(level)s\n"
            "log_target = file:%(log)s\n"
            "shutdown_timeout = 5s\n"
            "%(extra)s"
            "\n"
            "[control_plane]\n"
            "endpoint = ws://127.0.0.1:%(port)d/agent\n"
            "token_file = %(token)s\n"
            "reconnect_initial = 200ms\n"
            "reconnect_max = 2s\n"
            "connect_timeout = 2s\n"
            "\n"
            "[kubernetes]\n"
            "api_server = http://127.0.0.1:%(port)d\n"
            "request_timeout = 2s\n"
            "connect_timeout = 1s\n"
            "\n"
            "[health]\n"
            "listen = \"\"\n"
        ) % {"state": self.state, "pid": self.pid_file, "log": self.log,
             "port": self.cp_port, "token": self.token, "level": log_level,
             "extra": extra_agent}

    def write_ini(self, text=None, **kw):
        with open(self.ini, "w") as f:
            f.write(text if text is not None else self.ini_text(**kw))

    def write_defaults(self, pid_file=None, daemon=None):
        with open(self.defaults, "w") as f:
            f.write("# test defaults\n"
                    "DAEMON=%s\nCONFIG=%s\nPIDFILE=%s\nSTART_WAIT=10\n"
                    "STOP_RETRY=TERM/10/KILL/5\n"
                    % (daemon or AGENT_BIN, self.ini,
                       pid_file or self.pid_file))

    def init(self, action, lsb=True, timeout=40):
        """Run the init script; returns (exit code, stdout + stderr)."""
        env = dict(os.environ, PIPEOPS_DEFAULTS=self.defaults)
        if not lsb:
            env["PIPEOPS_INIT_FUNCTIONS"] = os.path.join(self.dir, "none")
        r = subprocess.run(["/bin/sh", INIT_SCRIPT, action], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    def log_text(self):
        return read_text(self.log)

    def count(self, pattern):
        return len(re.findall(pattern, self.log_text()))

    def wait_log(self, pattern, timeout=10, at_least=1):
        try:
            return wait_for(lambda: self.count(pattern) >= at_least,
                            timeout, "/%s/ x%d in the log"
                            % (pattern, at_least))
        except AssertionError as e:
            tail = "\n".join(self.log_text().splitlines()[-20:])
            raise AssertionError("%s; log tail:\n%s" % (e, tail))

    def cleanup(self):
        try:
            kill_pid_file(self.pid_file)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@unittest.skipUnless(have_agent(), "agent binary not built (run make)")
class InstallTest(unittest.TestCase):
    """`make install` with DESTDIR and PREFIX."""

    def make_install(self, destdir, prefix):
        # -o: install the binary as built; never rebuild it from a tree
        # that other work may be changing while the tests run.
        r = subprocess.run(
            ["make", "-C", TOP, "-o", "agent/pipeops-agent", "install",
             "DESTDIR=" + destdir, "PREFIX=" + prefix],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout + r.stderr

    def mode(self, path):
        return os.stat(path).st_mode & 0o7777

    def test_install_layout_and_no_overwrite(self):
        dest = tempfile.mkdtemp(prefix="pipeops-install-")
        try:
            self.make_install(dest, "/usr")
            d = lambda p: os.path.join(dest, p.lstrip("/"))  # noqa: E731
            expect = {
                "/usr/sbin/pipeops-agent": 0o755,
                "/etc/init.d/pipeops-agent": 0o755,
                "/etc/default/pipeops-agent": 0o644,
                "/usr/share/man/man8/pipeops-agent.8": 0o644,
                "/etc/pipeops/agent.ini": 0o640,
                "/usr/share/doc/pipeops-agent/agent.ini.sample": 0o644,
            }
            for path, mode in expect.items():
                self.assertTrue(os.path.isfile(d(path)), path)
                self.assertEqual(self.mode(d(path)), mode,
                                 "%s mode %o" % (path, self.mode(d(path))))
            self.assertEqual(self.mode(d("/etc/pipeops")), 0o750)
            with open(SAMPLE_INI) as f:
                sample = f.read()
            self.assertEqual(read_text(d("/etc/pipeops/agent.ini")), sample)
            self.assertEqual(read_text(
                d("/usr/share/doc/pipeops-agent/agent.ini.sample")), sample)
            self.assertEqual(read_text(d("/usr/share/man/man8/"
                                         "pipeops-agent.8")),
                             read_text(MAN_PAGE))
            init = read_text(d("/etc/init.d/pipeops-agent"))
            self.assertIn("\nDAEMON=/usr/sbin/pipeops-agent\n", init)
            self.assertIn("### BEGIN INIT INFO", init)
            r = subprocess.run(["/bin/sh", "-n",
                                d("/etc/init.d/pipeops-agent")])
            self.assertEqual(r.returncode, 0)
            r = subprocess.run([d("/usr/sbin/pipeops-agent"), "-V"],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 0)
            self.assertTrue(r.stdout.startswith("pipeops-agent "))

            # A second install keeps the operator's files.
            with open(d("/etc/pipeops/agent.ini"), "a") as f:
                f.write("; edited by the operator\n")
            with open(d("/etc/default/pipeops-agent"), "a") as f:
                f.write("START_WAIT=3\n")
            os.unlink(d("/usr/share/doc/pipeops-agent/agent.ini.sample"))
            out = self.make_install(dest, "/usr")
            self.assertIn("keeping existing", out)
            self.assertTrue(read_text(d("/etc/pipeops/agent.ini"))
                            .endswith("; edited by the operator\n"))
            self.assertTrue(read_text(d("/etc/default/pipeops-agent"))
                            .endswith("START_WAIT=3\n"))
            self.assertEqual(read_text(
                d("/usr/share/doc/pipeops-agent/agent.ini.sample")), sample)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def test_install_prefix_reaches_init_script(self):
        dest = tempfile.mkdtemp(prefix="pipeops-install-")
        try:
            self.make_install(dest, "/opt/pipeops")
            self.assertTrue(os.access(os.path.join(
                dest, "opt/pipeops/sbin/pipeops-agent"), os.X_OK))
            self.assertTrue(os.path.isfile(os.path.join(
                dest, "opt/pipeops/share/man/man8/pipeops-agent.8")))
            init = read_text(os.path.join(dest, "etc/init.d/pipeops-agent"))
            self.assertIn("\nDAEMON=/opt/pipeops/sbin/pipeops-agent\n", init)
            dflt = read_text(os.path.join(dest, "etc/default/pipeops-agent"))
            self.assertIn("\n#DAEMON=/opt/pipeops/sbin/pipeops-agent\n", dflt)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def test_man_page_renders_without_warnings(self):
        if not shutil.which("groff"):
            self.skipTest("groff not installed")
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN_PAGE],
                           capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, LC_ALL="C.UTF-8"))
        self.assertEqual((r.returncode, r.stderr), (0, ""))


@unittest.skipUnless(have_agent(), "agent binary not built (run make)")
class InitScriptTest(unittest.TestCase):
    """etc/init.d/pipeops-agent driving the real daemon in a temp prefix."""

    def setUp(self):
        self.sb = Sandbox()

    def tearDown(self):
        self.sb.cleanup()

    def running_pid(self):
        pid = read_pid(self.sb.pid_file)
        self.assertIsNotNone(pid, "no pid in %s" % self.sb.pid_file)
        self.assertTrue(alive(pid), "pid %d from the pid file is gone" % pid)
        _pids.add(pid)
        return pid

    def test_lifecycle(self):
        sb = self.sb
        rc, out = sb.init("start")
        self.assertEqual(rc, 0, out)
        pid = self.running_pid()
        self.assertEqual(os.path.realpath("/proc/%d/exe" % pid),
                         os.path.realpath(AGENT_BIN))
        sb.wait_log(r'msg="started"')

        # status: running, through status_of_proc and without LSB.
        rc, out = sb.init("status")
        self.assertEqual(rc, 0, out)
        self.assertIn("running", out)
        rc, out = sb.init("status", lsb=False)
        self.assertEqual(rc, 0, out)
        self.assertIn("is running (pid %d)" % pid, out)

        # A second start through the script is a no-op.
        rc, out = sb.init("start")
        self.assertEqual(rc, 0, out)
        self.assertIn("already running", out)
        self.assertEqual(read_pid(sb.pid_file), pid)

        # The daemon itself, started again with the same pid file, refuses
        # and says why; the running one is untouched.
        r = subprocess.run([AGENT_BIN, "-c", sb.ini], capture_output=True,
                           text=True, timeout=20)
        sb.wait_log(r'msg="another instance holds the pid file" path=%s'
                    % re.escape(sb.pid_file))
        self.assertIn(r.returncode, (0, 3))   # 0: see test_second_instance
        self.assertTrue(alive(pid))
        self.assertEqual(read_pid(sb.pid_file), pid)

        # reload: checked, then SIGHUP; same process, new configuration.
        sb.write_ini(log_level="debug")
        rc, out = sb.init("reload")
        self.assertEqual(rc, 0, out)
        sb.wait_log(r'msg="configuration reloaded" path=%s'
                    % re.escape(sb.ini))
        self.assertEqual(read_pid(sb.pid_file), pid)
        self.assertTrue(alive(pid))
        rc, out = sb.init("force-reload")
        self.assertEqual(rc, 0, out)
        sb.wait_log(r'msg="configuration reloaded"', at_least=2)

        # reload with a broken file: refused by the script with the agent's
        # diagnostics; no SIGHUP is sent and the agent keeps running.
        requested = sb.count(r'msg="reload requested"')
        sb.write_ini(sb.ini_text().replace("workers = 2", "workers = 0"))
        rc, out = sb.init("reload")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"%s:5: error: .*workers" % re.escape(sb.ini))
        self.assertIn("reload refused", out)
        time.sleep(0.3)
        self.assertEqual(sb.count(r'msg="reload requested"'), requested)
        self.assertTrue(alive(pid))
        self.assertEqual(read_pid(sb.pid_file), pid)

        # restart with the broken file is refused too: nothing is stopped.
        rc, out = sb.init("restart")
        self.assertEqual(rc, 1, out)
        self.assertIn("not restarting", out)
        self.assertTrue(alive(pid))

        # restart with a good file: a new process.
        sb.write_ini()
        rc, out = sb.init("restart")
        self.assertEqual(rc, 0, out)
        new_pid = self.running_pid()
        self.assertNotEqual(new_pid, pid)
        self.assertFalse(alive(pid))
        pid = new_pid

        # stop: waits for the exit; the pid file is gone.
        rc, out = sb.init("stop")
        self.assertEqual(rc, 0, out)
        self.assertFalse(alive(pid), "agent still runs after stop")
        self.assertFalse(os.path.exists(sb.pid_file), "pid file left")
        self.assertRegex(sb.log_text(), r'msg="stopped" exit=0')
        for lsb in (True, False):
            rc, out = sb.init("status", lsb=lsb)
            self.assertEqual(rc, 3, out)
            self.assertIn("not running", out)
        rc, out = sb.init("stop")
        self.assertEqual(rc, 0, out)
        rc, out = sb.init("reload")
        self.assertEqual(rc, 7, out)

    def test_second_instance_exits_3(self):
        """CONFIG.md: exit 3 when the pid file is held by another agent."""
        sb = self.sb
        rc, out = sb.init("start")
        self.assertEqual(rc, 0, out)
        self.running_pid()
        r = subprocess.run([AGENT_BIN, "-c", sb.ini], capture_output=True,
                           text=True, timeout=20)
        sb.wait_log(r'msg="another instance holds the pid file"')
        self.assertEqual(
            r.returncode, 3,
            "a second daemon refused by the pid file lock exits %d to its "
            "caller: the refusal happens in the grandchild after "
            "daemonize(), whose first parent already exited 0 "
            "(agent/main.c)" % r.returncode)

    def test_stop_removes_stale_pid_file_after_kill(self):
        sb = self.sb
        rc, out = sb.init("start")
        self.assertEqual(rc, 0, out)
        pid = self.running_pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 5, "the killed agent to go")
        rc, out = sb.init("status", lsb=False)
        self.assertEqual(rc, 1, out)   # dead, pid file left
        rc, out = sb.init("stop")
        self.assertEqual(rc, 0, out)
        self.assertFalse(os.path.exists(sb.pid_file))
        rc, out = sb.init("status")
        self.assertEqual(rc, 3, out)

    def test_start_refuses_pid_file_mismatch_and_missing_config(self):
        sb = self.sb
        sb.write_defaults(pid_file=os.path.join(sb.dir, "other.pid"))
        rc, out = sb.init("start")
        self.assertEqual(rc, 1, out)
        self.assertIn("differs from [agent] pid_file=%s" % sb.pid_file, out)
        self.assertFalse(os.path.exists(sb.pid_file))
        self.assertEqual(sb.count(r'msg="started"'), 0)
        sb.write_defaults()
        os.unlink(sb.ini)
        rc, out = sb.init("start")
        self.assertEqual(rc, 6, out)
        self.assertIn("cannot read %s" % sb.ini, out)

    def test_start_reports_configuration_errors(self):
        sb = self.sb
        sb.write_ini(sb.ini_text().replace("cluster_name = daemon-test\n",
                                           ""))
        rc, out = sb.init("start")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"%s:2: error: \[agent\] cluster_name is "
                              r"required" % re.escape(sb.ini))
        self.assertFalse(os.path.exists(sb.pid_file))
        rc, out = sb.init("check")
        self.assertEqual(rc, 1, out)

    def test_usage(self):
        rc, out = self.sb.init("frobnicate")
        self.assertEqual(rc, 3, out)
        self.assertIn("Usage:", out)


GOOD = """[agent]
cluster_name = t
state_dir = /tmp
pid_file = /tmp/unused.pid

[control_plane]
endpoint = wss://cp.example.com/agent
token = abc
"""

# (name, INI text, exit code, regexes over stderr with FILE for the path)
CHECK_TABLE = [
    ("minimal", GOOD, 0, []),
    ("unknown key is a warning", GOOD.replace("token = abc",
                                              "token = abc\ncolour = red"),
     0, [r"^FILE:9: warning: \[control_plane\] \"?colour\"?: unknown key"]),
    ("unknown section is a warning", GOOD + "[extra]\na = 1\n", 0,
     [r"^FILE:9: warning: \[extra\]"]),
    ("workers out of range", GOOD.replace("cluster_name = t",
                                          "cluster_name = t\nworkers = 0"),
     1, [r"^FILE:3: error: \[agent\] workers: \"0\" is out of range"]),
    ("bad duration", GOOD + "ping_interval = abc\n", 1,
     [r"^FILE:9: error: \[control_plane\] ping_interval: \"abc\" is not "
      r"a duration"]),
    ("bad boolean", GOOD + "insecure_skip_verify = maybe\n", 1,
     [r"^FILE:9: error: \[control_plane\] insecure_skip_verify: .*not a "
      r"boolean"]),
    ("bad size", GOOD + "max_message_bytes = 12Q\n", 1,
     [r"^FILE:9: error: \[control_plane\] max_message_bytes"]),
    ("bad log level", GOOD.replace("cluster_name = t",
                                   "cluster_name = t\nlog_level = loud"),
     1, [r"^FILE:3: error: \[agent\] log_level"]),
    ("bad endpoint scheme", GOOD.replace("wss://cp.example.com/agent",
                                         "ftp://cp.example.com"),
     1, [r"^FILE:7: error: \[control_plane\] endpoint"]),
    ("syntax error", GOOD + "this is not a key\n", 1,
     [r"^FILE:9: error: syntax error"]),
    ("missing cluster_name", GOOD.replace("cluster_name = t\n", ""), 1,
     [r"^FILE:1: error: \[agent\] cluster_name is required"]),
    ("missing token", GOOD.replace("token = abc\n", ""), 1,
     [r"^FILE:6: error: \[control_plane\] token_file or token is "
      r"required"]),
    ("unreadable token file", GOOD.replace(
        "token = abc", "token_file = /nonexistent/pipeops-token"), 1,
     [r"^FILE:8: error: \[control_plane\] token_file: cannot read"]),
    ("several errors, each with its line",
     GOOD.replace("cluster_name = t", "cluster_name = t\nworkers = 99")
     + "ping_interval = 1.5s\n", 1,
     [r"^FILE:3: error: .*workers", r"^FILE:10: error: .*ping_interval"]),
]


@unittest.skipUnless(have_agent(), "agent binary not built (run make)")
class CommandLineTest(unittest.TestCase):
    """-t over good and bad files, -V, -h, usage errors."""

    def run_agent(self, *args):
        return subprocess.run([AGENT_BIN] + list(args), capture_output=True,
                              text=True, timeout=20,
                              stdin=subprocess.DEVNULL)

    def test_check_config_table(self):
        tmp = tempfile.mkdtemp(prefix="pipeops-check-")
        try:
            for i, (name, text, code, patterns) in enumerate(CHECK_TABLE):
                with self.subTest(name):
                    path = os.path.join(tmp, "case%d.ini" % i)
                    with open(path, "w") as f:
                        f.write(text)
                    r = self.run_agent("-t", "-c", path)
                    self.assertEqual(r.returncode, code,
                                     r.stdout + r.stderr)
                    if code == 0:
                        self.assertEqual(r.stdout, "configuration OK\n")
                        self.assertNotIn("error:", r.stderr)
                    else:
                        self.assertNotIn("configuration OK", r.stdout)
                        self.assertRegex(r.stderr, r"(?m)^%s:\d+: error: "
                                         % re.escape(path))
                    for p in patterns:
                        self.assertRegex(r.stderr, "(?m)" + p.replace(
                            "FILE", re.escape(path)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_check_config_missing_file(self):
        path = "/nonexistent/pipeops/agent.ini"
        for opt in ("-t", "--check-config"):
            r = self.run_agent(opt, "-c", path)
            self.assertEqual(r.returncode, 1)
            self.assertRegex(r.stderr, r"^%s: error: cannot open %s: No such "
                             r"file" % (re.escape(path), re.escape(path)))

    def test_version(self):
        for opt in ("-V", "--version"):
            r = self.run_agent(opt)
            self.assertEqual(r.returncode, 0)
            self.assertEqual(r.stdout, "pipeops-agent %s\n"
                             % makefile_version())

    def test_help(self):
        for opt in ("-h", "--help"):
            r = self.run_agent(opt)
            self.assertEqual(r.returncode, 0)
            self.assertTrue(r.stdout.startswith("usage: pipeops-agent"))
            for o in ("-c", "-f", "-t", "-V", "-h"):
                self.assertIn(o, r.stdout)

    def test_usage_errors_exit_2(self):
        for args in (["-x"], ["--bogus"], ["-c"], ["-t", "extra-arg"]):
            with self.subTest(args=args):
                r = self.run_agent(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("usage:", r.stderr)
                self.assertEqual(r.stdout, "")


@unittest.skipUnless(have_agent(), "agent binary not built (run make)")
class LogReopenTest(unittest.TestCase):
    """SIGUSR1 reopens log_target = file:PATH (log rotation)."""

    def test_sigusr1_reopens_the_log_file(self):
        sb = Sandbox()
        proc = None
        try:
            proc = subprocess.Popen([AGENT_BIN, "-f", "-c", sb.ini],
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            _pids.add(proc.pid)
            sb.wait_log(r'msg="started"')
            rotated = sb.log + ".1"
            os.rename(sb.log, rotated)
            # Before SIGUSR1 the agent still writes to the renamed file.
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: 'msg="configuration reloaded"' in
                     read_text(rotated), 5, "the reload in the old file")
            self.assertFalse(os.path.exists(sb.log))
            proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(sb.log), 5,
                     "SIGUSR1 to create %s again" % sb.log)
            self.assertEqual(os.stat(sb.log).st_mode & 0o007, 0,
                             "log file readable by others")
            old = read_text(rotated)
            proc.send_signal(signal.SIGHUP)
            sb.wait_log(r'msg="configuration reloaded"')
            sb.wait_log(r'msg="reload requested"')
            self.assertEqual(read_text(rotated).count("configuration "
                                                      "reloaded"),
                             old.count("configuration reloaded"),
                             "new lines still go to the rotated file")
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(15), 0)
            self.assertRegex(sb.log_text(), r'msg="stopped" exit=0')
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
            sb.cleanup()


if __name__ == "__main__":
    harness.main()
