"""A small HTTP CONNECT proxy for transport tests (loopback targets only).

    p = ConnectProxy(auth=("agent", "s3cret"))   # auth=None: no check
    p.start()                                    # p.port, p.url
    ...
    p.requests        # [Request(target, authorized, status)] in order
    p.tunnels         # tunnels opened (200 answered)
    p.refuse = 403    # answer every CONNECT with this status instead
    p.stop()

Behaviour: reads the request head (up to 8 KiB), answers 405 to anything
but CONNECT, 407 with Proxy-Authenticate when the Basic credentials are
missing or wrong, 403 to targets outside loopback, 502 when the target
refuses, else "200 Connection established" and pumps bytes both ways until
either side closes. Bytes the client sent after the head are forwarded.
Threads: one accept thread, two pump threads per tunnel; stop() closes
everything. Also runnable: connect_proxy.py [--auth USER:PASS] prints
"READY PORT" and serves until stdin closes.
"""
import base64
import socket
import sys
import threading

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Request:
    def __init__(self, method, target, authorized, status):
        self.method = method
        self.target = target
        self.authorized = authorized
        self.status = status

    def __repr__(self):
        return "<%s %s -> %d>" % (self.method, self.target, self.status)


class ConnectProxy:
    def __init__(self, auth=None, host="127.0.0.1"):
        self.auth = auth
        self.host = host
        self.refuse = None
        self._lock = threading.Lock()
        self._socks = []
        self._stopped = threading.Event()
        self.requests = []
        self.tunnels = 0
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._srv = socket.socket(fam, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((host, 0))
        self._srv.listen(64)
        self.port = self._srv.getsockname()[1]

    @property
    def url(self):
        """http://[user:pass@]host:port"""
        cred = "%s:%s@" % self.auth if self.auth else ""
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s%s:%d" % (cred, h, self.port)

    def start(self):
        threading.Thread(target=self._accept_loop, daemon=True,
                         name="connect-proxy").start()
        return self

    def stop(self):
        self._stopped.set()
        try:
            self._srv.close()
        except OSError:
            pass
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, s):
        with self._lock:
            self._socks.append(s)

    def _accept_loop(self):
        while not self._stopped.is_set():
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            self._track(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _record(self, method, target, authorized, status):
        with self._lock:
            self.requests.append(Request(method, target, authorized, status))
            if status == 200:
                self.tunnels += 1

    def _serve(self, c):
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = c.recv(4096)
                if not chunk:
                    c.close()
                    return
                head += chunk
        except OSError:
            c.close()
            return
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        method = parts[0] if parts else ""
        target = parts[1] if len(parts) > 1 else ""
        hdrs = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                hdrs[k.strip().lower()] = v.strip()
        authorized = True
        if self.auth:
            want = "Basic " + base64.b64encode(
                ("%s:%s" % self.auth).encode()).decode()
            authorized = hdrs.get("proxy-authorization") == want

        def answer(status, text, extra=b""):
            self._record(method, target, authorized, status)
            try:
                c.sendall(b"HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\n\r\n"
                          % (status, text.encode(), extra))
            except OSError:
                pass
            c.close()

        if method != "CONNECT":
            return answer(405, "Method Not Allowed")
        if not authorized:
            return answer(407, "Proxy Authentication Required",
                          b'Proxy-Authenticate: Basic realm="test"\r\n')
        if self.refuse:
            return answer(int(self.refuse), "Refused By Test")
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if host not in LOOPBACK or not port.isdigit():
            return answer(403, "Forbidden")
        try:
            u = socket.create_connection((host, int(port)), timeout=5)
            u.settimeout(None)
        except OSError:
            return answer(502, "Bad Gateway")
        self._track(u)
        self._record(method, target, authorized, 200)
        try:
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                u.sendall(rest)
        except OSError:
            c.close()
            u.close()
            return
        threading.Thread(target=self._pump, args=(u, c), daemon=True).start()
        self._pump(c, u)

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    auth = None
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--auth":
        user, _, pw = args[1].partition(":")
        auth = (user, pw)
    p = ConnectProxy(auth=auth).start()
    print("READY %d" % p.port, flush=True)
    try:
        sys.stdin.read()
    finally:
        p.stop()


if __name__ == "__main__":
    main()
