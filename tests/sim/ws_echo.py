#!/usr/bin/python3
"""ws_echo.py: a small WebSocket echo server for the transport tests.

Usage: ws_echo.py [--certs DIR] LISTENER...
  A LISTENER is NAME=KIND[:CERT], KIND one of
    ws        plain echo
    wss       TLS echo with DIR/CERT.pem and DIR/CERT.key (default server)
    status    plain, answers every upgrade with HTTP CERT (e.g. status:401)
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
