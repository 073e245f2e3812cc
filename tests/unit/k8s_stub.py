#!/usr/bin/env python3
"""Stopgap Kubernetes API stand-in for test_k8s_ops while tests/sim/k8s_sim.py
is not in the tree (run test_k8s_ops with K8S_SIM=tests/unit/k8s_stub.py).
Same CLI: --port P --certdir D --token T; prints the same ready line.
Covers only what test_k8s_ops needs: /version, lists with limit/continue,
server-side apply of Deployments and Services, /scale, DELETE, 401/404.
"""
import argparse
import base64
import http.server
import json
import ssl
import threading
import time
import uuid
from urllib.parse import urlsplit, parse_qs

LOCK = threading.Lock()
STATE = {"rv": 100, "objs": {}, "ip": 10}
NAMESPACES = {"default", "kube-system"}
TOKEN = None


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def status(code, reason, message, details=None):
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {},
          "status": "Failure", "message": message, "reason": reason,
          "code": code}
    if details:
        st["details"] = details
    return code, st


def not_found(res, name, group=""):
    qual = res + ("." + group if group else "")
    d = {"name": name, "kind": res}
    if group:
        d["group"] = group
    return status(404, "NotFound", '%s "%s" not found' % (qual, name), d)


NODE = {"metadata": {"name": "node-1", "uid": "n-1", "resourceVersion": "5",
                     "creationTimestamp": "2025-05-01T10:00:00Z",
                     "labels": {"kubernetes.io/os": "linux"}},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi"},
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "nodeInfo": {"kubeletVersion": "v1.32.4",
                                "operatingSystem": "linux",
                                "architecture": "amd64"}}}


def page(items, q, kind):
    limit = int(q.get("limit", ["0"])[0] or 0)
    start = 0
    if "continue" in q:
        start = int(base64.urlsafe_b64decode(q["continue"][0] + "==").decode())
    meta = {"resourceVersion": str(STATE["rv"])}
    if limit and start + limit < len(items):
        meta["continue"] = base64.urlsafe_b64encode(
            str(start + limit).encode()).decode().rstrip("=")
        items = items[start:start + limit]
    else:
        items = items[start:]
    return 200, {"kind": kind, "apiVersion": "v1", "metadata": meta,
                 "items": items}


def handle(method, path, q, body):
    parts = [p for p in path.split("/") if p]
    if path == "/version":
        return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.4"}
    if path == "/api/v1/nodes":
        return page([NODE], q, "NodeList")
    if path == "/api/v1/namespaces":
        items = [{"metadata": {"name": n}, "status": {"phase": "Active"}}
                 for n in sorted(NAMESPACES)]
        fs = q.get("fieldSelector", [""])[0]
        if fs.startswith("metadata.name="):
            items = [i for i in items
                     if i["metadata"]["name"] == fs.split("=", 1)[1]]
        return page(items, q, "NamespaceList")
    group = "apps" if parts[:1] == ["apis"] else ""
    rest = parts[3:] if group else parts[2:]
    ns = None
    if rest[:1] == ["namespaces"]:
        ns, rest = rest[1], rest[2:]
    res = rest[0]
    if res not in ("deployments", "services", "pods"):
        return 404, "404 page not found\n"
    objs = STATE["objs"]
    if len(rest) == 1 and method == "GET":
        items = [o for (r, n, _), o in sorted(objs.items())
                 if r == res and (ns is None or n == ns)]
        return page(items, q, "List")
    name = rest[1]
    key = (res, ns, name)
    cur = objs.get(key)
    if len(rest) == 3 and rest[2] == "scale":
        if not cur:
            return not_found(res, name, group)
        if method == "PUT":
            rv = body.get("metadata", {}).get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                return status(409, "Conflict", "Operation cannot be "
                              "fulfilled on deployments.apps \"%s\": the "
                              "object has been modified" % name)
            cur["spec"]["replicas"] = body.get("spec", {}).get("replicas", 0)
            cur["metadata"]["generation"] += 1
            STATE["rv"] += 1
            cur["metadata"]["resourceVersion"] = str(STATE["rv"])
        spec = {}
        if cur["spec"].get("replicas"):
            spec["replicas"] = cur["spec"]["replicas"]
        return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {"name": name, "namespace": ns,
                                  "uid": cur["metadata"]["uid"],
                                  "resourceVersion":
                                  cur["metadata"]["resourceVersion"]},
                     "spec": spec, "status": {"replicas": 0}}
    if method == "GET":
        return (200, cur) if cur else not_found(res, name, group)
    if method == "DELETE":
        if not cur:
            return not_found(res, name, group)
        del objs[key]
        if res == "deployments":
            return 200, {"kind": "Status", "apiVersion": "v1",
                         "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": "apps",
                                     "kind": res,
                                     "uid": cur["metadata"]["uid"]}}
        return 200, cur
    if method == "PATCH":
        if ns not in NAMESPACES:
            return not_found("namespaces", ns)
        meta = dict(body.get("metadata", {}))
        spec = body.get("spec", {})
        if not cur:
            STATE["rv"] += 1
            meta.update(uid=str(uuid.uuid4()), generation=1,
                        resourceVersion=str(STATE["rv"]),
                        creationTimestamp=now())
            if res == "services":
                STATE["ip"] += 1
                spec = dict(spec, clusterIP="10.96.0.%d" % STATE["ip"])
            objs[key] = {"kind": body.get("kind"),
                         "apiVersion": body.get("apiVersion"),
                         "metadata": meta, "spec": spec, "status": {}}
            return 201, objs[key]
        m = cur["metadata"]
        if res == "services":
            spec = dict(spec, clusterIP=cur["spec"]["clusterIP"])
        if spec != cur["spec"] or meta.get("annotations") != m.get(
                "annotations") or meta.get("labels") != m.get("labels"):
            if spec != cur["spec"] or meta.get("annotations") != m.get(
                    "annotations"):
                m["generation"] += 1
            STATE["rv"] += 1
            m["resourceVersion"] = str(STATE["rv"])
            m["labels"] = meta.get("labels")
            m["annotations"] = meta.get("annotations")
            cur["spec"] = spec
        return 200, cur
    return status(405, "MethodNotAllowed", "not supported")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do(self):
        u = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if u.path != "/version" and self.headers.get(
                "Authorization") != "Bearer " + TOKEN:
            code, out = status(401, "Unauthorized", "Unauthorized")
        else:
            with LOCK:
                code, out = handle(self.command, u.path, parse_qs(u.query),
                                   json.loads(raw) if raw else {})
        data = (out if isinstance(out, str) else json.dumps(out) + "\n")
        data = data.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = do


def main():
    global TOKEN
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--certdir", required=True)
    ap.add_argument("--token", required=True)
    a = ap.parse_args()
    TOKEN = a.token
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.certdir + "/server.pem", a.certdir + "/server.key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("listening on https://127.0.0.1:%d" % a.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
