"""Self-tests of tests/sim/ws_sim.py with a python3-websockets client."""
import asyncio
import base64
import json
import os
import ssl
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import ws_sim  # noqa: E402

import websockets  # noqa: E402


class Client:
    """A synchronous websockets client in its own loop thread."""

    def __init__(self, url, token=None, ssl_ctx=None, extra=None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       daemon=True)
        self.thread.start()
        headers = dict(extra or {})
        if token is not None:
            headers["Authorization"] = "Bearer %s" % token
        async def conn():
            return await websockets.connect(
                url, extra_headers=headers, ssl=ssl_ctx, compression=None,
                open_timeout=5)
        try:
            self.ws = self._run(conn())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def send(self, obj):
        self._run(self.ws.send(obj if isinstance(obj, str) else json.dumps(obj)))

    def recv(self, timeout=5):
        raw = self._run(asyncio.wait_for(self.ws.recv(), timeout), timeout + 1)
        return json.loads(raw) if isinstance(raw, str) else raw

    def recv_raw(self, timeout=5):
        return self._run(asyncio.wait_for(self.ws.recv(), timeout), timeout + 1)

    def closed(self, timeout=5):
        try:
            self._run(asyncio.wait_for(self.ws.wait_closed(), timeout),
                      timeout + 1)
            return True
        except Exception:
            return False

    def close(self):
        try:
            self._run(self.ws.close(), 5)
        except Exception:
            pass
        self._stop_loop()

    def _stop_loop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def connect_error(url, token, ssl_ctx=None):
    """The exception raised by a handshake that should fail."""
    loop = asyncio.new_event_loop()
    try:
        async def go():
            h = {"Authorization": "Bearer %s" % token} if token else {}
            ws = await websockets.connect(url, extra_headers=h, ssl=ssl_ctx,
                                          open_timeout=5)
            await ws.close()
        loop.run_until_complete(go())
    except Exception as e:  # noqa: BLE001
        return e
    finally:
        loop.close()
    return None


class MessageHelpers(unittest.TestCase):
    def test_timestamp_is_rfc3339_nanoseconds(self):
        ts = ws_sim.rfc3339_now()
        self.assertRegex(ts, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")

    def test_make_msg_envelope(self):
        m = ws_sim.make_msg("deploy", {"name": "web"})
        self.assertEqual(m["type"], "deploy")
        self.assertTrue(m["id"])
        self.assertEqual(m["data"], {"name": "web"})
        self.assertIn("timestamp", m)
        self.assertNotEqual(m["id"], ws_sim.make_msg("deploy")["id"])

    def test_data_encodings_round_trip(self):
        d = {"name": "web", "replicas": 2}
        s = ws_sim.make_msg("deploy", d, encoding="string")
        self.assertIsInstance(s["data"], str)
        self.assertEqual(json.loads(s["data"]), d)
        b = ws_sim.make_msg("deploy", d, encoding="base64")
        self.assertEqual(json.loads(base64.b64decode(b["data"])), d)
        self.assertEqual(ws_sim.data_of(s), d)
        self.assertEqual(ws_sim.data_of(b), d)

    def test_make_reply(self):
        r = ws_sim.make_reply({"id": "x1", "type": "deploy"}, True, replicas=3)
        self.assertEqual(r["type"], "response")
        self.assertEqual(r["request_id"], "x1")
        self.assertEqual(r["data"]["request_id"], "x1")
        self.assertTrue(r["data"]["success"])
        self.assertEqual(r["data"]["replicas"], 3)
        e = ws_sim.make_reply("x2", False, error="boom")
        self.assertEqual(e["error"], "boom")
        self.assertFalse(e["data"]["success"])


class PlainCp(unittest.TestCase):
    def setUp(self):
        self.events = []
        self.peer = ws_sim.WsPeer(
            role="cp", token="cp-secret",
            transcript=lambda p, ev, payload: self.events.append((ev, payload)))
        self.peer.start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.peer.stop()

    def client(self, path="/api/v1/agent/ws", token="cp-secret", **kw):
        c = Client(self.peer.url + path, token, **kw)
        self.clients.append(c)
        return c

    def test_url_and_port(self):
        self.assertTrue(self.peer.url.startswith("ws://127.0.0.1:"))
        self.assertGreater(self.peer.port, 0)

    def test_register_is_acked_and_recorded(self):
        c = self.client(extra={"User-Agent": "pipeops-agent/0.1.0"})
        reg = ws_sim.make_msg("register", {"id": "agent-1", "name": "n",
                                           "cluster_name": "c"})
        c.send(reg)
        ack = c.recv()
        self.assertEqual(ack["type"], "response")
        self.assertEqual(ack["request_id"], reg["id"])
        self.assertEqual(ack["data"]["request_id"], reg["id"])
        self.assertTrue(ack["data"]["success"])
        self.assertEqual(ack["data"]["agent_id"], "agent-1")
        sent = self.peer.wait_sent(ws_sim.reply_to(reg["id"]), 2)
        self.assertEqual(sent["id"], ack["id"])
        with self.assertRaises(ws_sim.SimTimeout):
            self.peer.wait_sent("runner_assigned", 0.2)
        got = self.peer.wait_for("register", 2)
        self.assertEqual(got["id"], reg["id"])
        self.assertGreater(got.t, 0)
        conn = self.peer.last_connection
        self.assertEqual(conn.path, "/api/v1/agent/ws")
        self.assertEqual(conn.header("authorization"), "Bearer cp-secret")
        self.assertEqual(conn.header("User-Agent"), "pipeops-agent/0.1.0")
        self.assertTrue(self.peer.connected)
        self.assertEqual(self.peer.connection_count, 1)

    def test_auto_ack_off(self):
        self.peer.auto_ack = False
        c = self.client()
        c.send(ws_sim.make_msg("register", {"id": "a"}))
        self.peer.wait_for("register", 2)
        with self.assertRaises(Exception):
            c.recv(timeout=0.5)

    def test_wrong_or_missing_token_is_401(self):
        for tok in ("nope", None):
            err = connect_error(self.peer.url + "/api/v1/agent/ws", tok)
            self.assertIsInstance(err, websockets.InvalidStatusCode, tok)
            self.assertEqual(err.status_code, 401)
        hs = self.peer.handshakes
        self.assertEqual([h.status for h in hs], [401, 401])
        self.assertEqual(self.peer.connection_count, 0)
        self.assertIn("reject", [e[0] for e in self.events])

    def test_refuse_status(self):
        self.peer.refuse_status = 503
        err = connect_error(self.peer.url, "cp-secret")
        self.assertEqual(err.status_code, 503)

    def test_path_and_query_recorded(self):
        self.client(path="/custom/ws?x=1")
        self.assertEqual(self.peer.wait_connected(2).path, "/custom/ws?x=1")

    def test_assign_runner(self):
        c = self.client()
        self.peer.wait_connected(2)
        m = self.peer.assign_runner("wss://localhost:1234", "rt", "runner-9")
        got = c.recv()
        self.assertEqual(got["id"], m["id"])
        self.assertEqual(got["type"], "runner_assigned")
        self.assertEqual(got["data"]["runner_endpoint"], "wss://localhost:1234")
        self.assertEqual(got["data"]["runner_token"], "rt")
        self.assertEqual(got["data"]["runner_id"], "runner-9")
        self.assertIn("assigned_at", got["data"])

    def test_send_raw_and_undecodable(self):
        c = self.client()
        self.peer.wait_connected(2)
        self.peer.send_raw("this is { not json")
        self.assertEqual(c.recv_raw(), "this is { not json")
        c.send("garbage from client")
        deadline = time.time() + 2
        while not self.peer.undecodable and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.peer.undecodable[0][2], "garbage from client")

    def test_send_to_all_connections(self):
        a, b = self.client(), self.client()
        self.peer.wait_connected(2, count=2)
        self.peer.send(ws_sim.make_msg("get_status"))
        self.assertEqual(a.recv()["type"], "get_status")
        self.assertEqual(b.recv()["type"], "get_status")

    def test_send_without_connection_raises(self):
        with self.assertRaises(AssertionError):
            self.peer.send(ws_sim.make_msg("x"))

    def test_wait_for_timeout_lists_arrivals(self):
        c = self.client()
        c.send(ws_sim.make_msg("heartbeat", {"connections": {
            "control_plane": True, "runner": False}}))
        self.peer.wait_for(ws_sim.heartbeat_with(cp=True, runner=False), 2)
        t0 = time.monotonic()
        with self.assertRaises(ws_sim.SimTimeout) as cm:
            self.peer.wait_for(ws_sim.heartbeat_with(runner=True), 0.3)
        self.assertLess(time.monotonic() - t0, 2)
        text = str(cm.exception)
        self.assertIn("heartbeat", text)
        self.assertIn("runner=True", text)
        self.assertIn("1 message(s)", text)

    def test_mark_skips_older_messages(self):
        c = self.client()
        c.send(ws_sim.make_msg("status"))
        self.peer.wait_for("status", 2)
        mark = self.peer.mark()
        with self.assertRaises(ws_sim.SimTimeout):
            self.peer.wait_for("status", 0.2, after=mark)
        c.send(ws_sim.make_msg("status"))
        self.peer.wait_for("status", 2, after=mark)

    def test_kill_connections(self):
        c = self.client()
        self.peer.wait_connected(2)
        self.peer.kill_connections()
        self.assertTrue(c.closed())
        self.peer.wait_disconnected(2)
        self.assertFalse(self.peer.connected)
        self.assertEqual(self.peer.connection_count, 1)
        self.client()
        self.peer.wait_connected(2, count=2)

    def test_close_connections_code(self):
        c = self.client()
        self.peer.wait_connected(2)
        self.peer.close_connections(4000, "bye")
        self.assertTrue(c.closed())
        self.assertEqual(c.ws.close_code, 4000)

    def test_transcript_both_directions(self):
        c = self.client()
        c.send(ws_sim.make_msg("register", {"id": "a"}))
        c.recv()
        time.sleep(0.1)
        kinds = [e[0] for e in self.events]
        self.assertEqual(kinds[:3], ["connect", "recv", "send"])
        self.assertEqual(self.events[1][1]["type"], "register")
        self.assertEqual(self.events[2][1]["type"], "response")

    def test_stop_closes_connections(self):
        c = self.client()
        self.peer.wait_connected(2)
        self.peer.stop()
        self.assertTrue(c.closed())
        self.assertFalse(self.peer.connected)
        err = connect_error(self.peer.url, "cp-secret")
        self.assertIsInstance(err, OSError)
        self.peer.stop()  # twice is fine


class RunnerCall(unittest.TestCase):
    def test_call_waits_for_final_reply(self):
        with ws_sim.WsPeer(role="runner", token="rt") as peer:
            c = Client(peer.url + "/api/v1/runner/ws", "rt")
            try:
                peer.wait_connected(2)
                result = {}

                def agent():
                    req = c.recv()
                    result["req"] = req
                    c.send({"id": "a1", "type": "proxy_response",
                            "request_id": req["id"],
                            "data": {"chunk": True, "stream": True}})
                    c.send({"id": "a2", "type": "response",
                            "request_id": req["id"],
                            "data": {"success": True,
                                     "request_id": req["id"]}})
                t = threading.Thread(target=agent)
                t.start()
                reply = peer.call("get_resources", {}, timeout=5)
                t.join(5)
                self.assertEqual(reply["id"], "a2")
                self.assertEqual(result["req"]["type"], "get_resources")
                # no auto-ack for a runner
                c.send(ws_sim.make_msg("register", {}))
                peer.wait_for("register", 2)
                with self.assertRaises(Exception):
                    c.recv(timeout=0.3)
            finally:
                c.close()

    def test_request_encodings_on_wire(self):
        with ws_sim.WsPeer(role="runner", token=None) as peer:
            c = Client(peer.url, None)
            try:
                peer.wait_connected(2)
                peer.request("deploy", {"name": "w"}, encoding="base64")
                got = c.recv()
                self.assertIsInstance(got["data"], str)
                self.assertEqual(ws_sim.data_of(got), {"name": "w"})
                self.assertEqual(len(peer.sent), 1)
            finally:
                c.close()


class TlsPeer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        rc = os.system("%s %s" % (os.path.join(HERE, "..", "lib", "certs.sh"),
                                  cls.tmp.name))
        if rc != 0:
            raise unittest.SkipTest("certs.sh failed")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def ctx(self):
        c = ssl.create_default_context(cafile=os.path.join(self.tmp.name,
                                                           "ca.pem"))
        return c

    def test_wss_localhost_both_families(self):
        with ws_sim.WsPeer(role="runner", certdir=self.tmp.name,
                           token="rt") as peer:
            self.assertEqual(peer.url, "wss://localhost:%d" % peer.port)
            hosts = ["localhost", "127.0.0.1"]
            if len(peer._socks) > 1:
                hosts.append("[::1]")
            for i, h in enumerate(hosts):
                url = "wss://%s:%d/api/v1/runner/ws" % (h, peer.port)
                c = Client(url, "rt", ssl_ctx=self.ctx())
                try:
                    peer.wait_connected(2, count=i + 1)
                    c.send(ws_sim.make_msg("heartbeat"))
                    peer.wait_for("heartbeat", 2, after=i)
                finally:
                    c.close()

    def test_wss_rejects_untrusting_client(self):
        with ws_sim.WsPeer(role="cp", certdir=self.tmp.name,
                           token="t") as peer:
            err = connect_error(peer.url, "t",
                                ssl_ctx=ssl.create_default_context())
            self.assertIsInstance(err, ssl.SSLError)


if __name__ == "__main__":
    harness.main()
