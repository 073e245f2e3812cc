#!/usr/bin/python3
"""ws_echo.py: a small WebSocket echo server for the transport tests.

Usage: ws_echo.py [--certs DIR] LISTENER...
  A LISTENER is NAME=KIND[:CERT], KIND one of
    ws        plain echo
    wss       TLS echo with DIR/CERT.pem and DIR/CERT.key (default server)
    status    plain, answers every upgrade with HTTP CERT (e.g. status:401)
    proxy     HTTP CONNECT proxy to 127.0.0.1 ports only; with proxy:U:P
              it wants "Proxy-Authorization: Basic base64(U:P)" (else 407)
Every listener binds 127.0.0.1 on a free port and prints "READY NAME PORT".
("localhost" resolves to ::1 as well: clients fall through to 127.0.0.1.)
Echo behaviour: a text message is sent back unchanged, except
  "__headers__"      -> JSON object of the request headers (names lowered)
  "__close__ C R"    -> close with code C and reason R
  "__binary__"       -> a binary message, then the text "after-binary"
  "__ping__"         -> the server pings and answers "pinged"
The server exits when stdin reaches EOF (the test closed the pipe) or after
--lifetime seconds, whichever is first.
"""
import argparse
import asyncio
import base64
import http
import json
import os
import ssl
import sys

import websockets


async def echo(ws, path=None):
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                await ws.send(msg)
                continue
            if msg == "__headers__":
                hdrs = {k.lower(): v for k, v in ws.request_headers.raw_items()}
                hdrs[":path"] = ws.path
                await ws.send(json.dumps(hdrs))
            elif msg.startswith("__close__"):
                parts = msg.split(" ", 2)
                code = int(parts[1]) if len(parts) > 1 else 1000
                reason = parts[2] if len(parts) > 2 else ""
                await ws.close(code, reason)
                return
            elif msg == "__binary__":
                await ws.send(b"\x00\x01\x02")
                await ws.send("after-binary")
            elif msg == "__ping__":
                waiter = await ws.ping(b"abc")
                await waiter
                await ws.send("pinged")
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


def status_responder(code):
    async def process_request(path, headers):
        body = b"refused\n"
        hdrs = [("Content-Type", "text/plain")]
        if code in (429, 503):
            hdrs.append(("Retry-After", "7"))
        if 300 <= code < 400:
            hdrs.append(("Location", "wss://elsewhere.example/ws"))
        return http.HTTPStatus(code), hdrs, body
    return process_request


def connect_proxy(auth):
    want = None
    if auth:
        want = "Basic " + base64.b64encode(auth.encode()).decode()

    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if want and hdrs.get("proxy-authorization") != want:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Content-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host not in ("localhost", "127.0.0.1"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            writer.close()
            return
        r2, w2 = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))

    return handle


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--certs", default="")
    ap.add_argument("--lifetime", type=float, default=120.0)
    ap.add_argument("listeners", nargs="+")
    args = ap.parse_args()

    servers = []
    for spec in args.listeners:
        name, _, kind = spec.partition("=")
        kind, _, extra = kind.partition(":")
        kw = dict(max_size=None, ping_interval=None)
        if kind == "wss":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert = extra or "server"
            ctx.load_cert_chain(os.path.join(args.certs, cert + ".pem"),
                                os.path.join(args.certs, cert + ".key"))
            kw["ssl"] = ctx
        elif kind == "status":
            kw["process_request"] = status_responder(int(extra))
        elif kind == "proxy":
            srv = await asyncio.start_server(connect_proxy(extra),
                                             "127.0.0.1", 0)
            servers.append(srv)
            print("READY %s %d" % (name, srv.sockets[0].getsockname()[1]),
                  flush=True)
            continue
        elif kind != "ws":
            sys.exit("unknown listener kind %r" % kind)
        srv = await websockets.serve(echo, "127.0.0.1", 0, **kw)
        port = srv.sockets[0].getsockname()[1]
        servers.append(srv)
        print("READY %s %d" % (name, port), flush=True)

    loop = asyncio.get_running_loop()
    stdin_eof = loop.run_in_executor(None, sys.stdin.buffer.read)
    try:
        await asyncio.wait_for(stdin_eof, args.lifetime)
    except asyncio.TimeoutError:
        pass
    for srv in servers:
        srv.close()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
