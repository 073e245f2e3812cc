"""A loopback TCP relay that tests control, for fault injection.

    r = Relay(target_port, target_host="127.0.0.1", listen_host="127.0.0.1")
    r.start()                 # r.port: where the agent should connect
    r.mode("pass")            # forward both ways (default)
    r.mode("blackhole")       # keep every socket open, forward nothing
                              # (a half-open link: no FIN, no RST)
    r.mode("delay:0.5")       # forward each chunk after 0.5 s
    r.mode("refuse")          # new connections are reset at once
    r.cut()                   # reset every open connection (RST)
    r.stop()

Connections and bytes are counted (r.accepted, r.bytes_up, r.bytes_down);
r.refused counts connections reset at once (mode refuse, or the target not
reachable), so r.accepted + r.refused is every connection attempt.
Each accepted connection gets two pump threads; everything stops with
stop(). Only loopback addresses are used.
"""
import socket
import struct
import threading
import time


class Relay:
    def __init__(self, target_port, target_host="127.0.0.1",
                 listen_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self._mode = "pass"
        self._lock = threading.Lock()
        self._conns = []           # (client_sock, upstream_sock)
        self._stopped = threading.Event()
        self._cut = set()          # id() of sockets cut() reset
        self.accepted = 0
        self.refused = 0
        self.bytes_up = 0
        self.bytes_down = 0
        fam = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
        self._srv = socket.socket(fam, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((listen_host, 0))
        self._srv.listen(128)
        self.port = self._srv.getsockname()[1]

    # ---------------------------------------------------------- control
    def mode(self, mode):
        with self._lock:
            self._mode = mode

    def cut(self):
        """Reset every open connection (RST to both sides, at once: the
        pump threads blocked in recv() are woken with shutdown(SHUT_RD),
        which sends nothing, so the close with SO_LINGER 0 really resets
        the connection instead of waiting for the next byte)."""
        with self._lock:
            conns, self._conns = self._conns, []
            for pair in conns:
                self._cut.update(id(s) for s in pair)
        for pair in conns:
            for s in pair:
                _reset(s)
        return len(conns)

    def open_connections(self):
        with self._lock:
            return len(self._conns)

    def start(self):
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self):
        self._stopped.set()
        try:
            self._srv.close()
        except OSError:
            pass
        self.cut()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---------------------------------------------------------- internals
    def _accept_loop(self):
        while not self._stopped.is_set():
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "refuse":
                _reset(c)
                with self._lock:
                    self.refused += 1
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
                u.settimeout(None)
            except OSError:
                _reset(c)
                with self._lock:
                    self.refused += 1
                continue
            for s in (c, u):   # forward each chunk at once (no Nagle)
                try:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            with self._lock:
                self._conns.append((c, u))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(c, u, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False),
                             daemon=True).start()

    def _pump(self, src, dst, up):
        while not self._stopped.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            _quickack(src)
            while True:
                with self._lock:
                    mode = self._mode
                if mode != "blackhole":
                    break
                time.sleep(0.05)   # hold the data; the link looks alive
                if self._stopped.is_set():
                    return
            if mode.startswith("delay:"):
                time.sleep(float(mode.split(":", 1)[1]))
            try:
                dst.sendall(data)
            except OSError:
                break
            with self._lock:
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        with self._lock:
            was_cut = id(src) in self._cut
            self._cut.discard(id(src))
            self._conns = [p for p in self._conns
                           if src not in p and dst not in p]
        if was_cut:
            return                 # cut() resets both; no FIN first
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        src.close()                # the other pump finds dst closed, ends


def _quickack(sock):
    """ACK at once: a peer that writes a response in two sends without
    TCP_NODELAY (http.server: headers, then body) would otherwise wait for
    the delayed ACK (40 ms) on every keep-alive request."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except (OSError, AttributeError):
        pass


def _reset(sock):
    """Close with RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)   # wakes a blocked recv(), sends nothing
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
