#!/usr/bin/python3
"""k8s_sim: a Kubernetes API server simulator (Python 3 standard library only).

It answers like kube-apiserver 1.32 for the parts pipeops-agent and the real
kubectl use: deployments (with /scale and /status), services, pods (with /log,
follow streaming), namespaces and nodes. The wire behaviour follows
/work/shared/reference/k8s-api-fidelity.md (section numbers below refer to it).

DESIGN
  Transport   ThreadingHTTPServer, one thread per connection, HTTP/1.1 with
              keep-alive (every non-streaming response has Content-Length;
              request bodies are always read before answering, so an error
              never desynchronises a reused connection). TLS is done in the
              connection thread (finish_request), not in accept(), so one
              stalled handshake does not block the others. No ALPN (so no h2).
  State       one RLock (self._lock) guards everything: the objects
              (self._objs[resource][(ns, name)] = dict, stored in full
              external form with kind/apiVersion), one global resourceVersion
              counter (self._rv, sent as a string, bumped once per write), a
              bounded event log for watches and the field owners used by
              server-side apply. A Condition on the same lock wakes watch and
              log-follow streams.
  Writes      every client write runs: decode -> namespace lifecycle ->
              defaults -> validation -> store (RV bump, watch event) ->
              response built -> controllers (self._reconcile()). So a
              response shows the pre-controller object (status {} on create),
              and a GET right after shows the settled state. A write that
              changes nothing keeps the RV and emits no event (section 3.3).
  Controllers (controllers=True, synchronous, inside the write):
              deployment controller (pods "<dep>-<hash>-<xxxxx>" owned by a
              notional ReplicaSet "<dep>-<hash>", rolling replace on template
              change, status counts/conditions, revision annotation), scheduler
              and kubelet (pods bound round-robin to Ready worker nodes and set
              Running, with generated log lines), garbage collector
              (background/foreground/orphan). Timed actions run on a timer
              thread: graceful pod deletion (pod_delete_delay seconds) and
              namespace finalization (ns_delete_delay seconds).
  Streams     watch (chunked, one JSON event per line, flushed per event) and
              logs?follow=true (chunked text) hold no lock while writing.
  Seed        namespaces default, kube-system, kube-public, kube-node-lease;
              nodes node-1 (control-plane) .. node-<nodes>, all Ready; the
              "kubernetes" Service in default (10.96.0.1:443), as on a real
              cluster.

  Behaviour worth knowing in tests:
              - pods are Running as soon as the write that created them
                returns (no ContainerCreating phase); controller-deleted pods
                vanish at once, user-deleted scheduled pods are Terminating
                for pod_delete_delay seconds;
              - each started container has log_lines lines
                "<pod> <container> line <i>";
              - Table output (Accept ...;as=Table) for kubectl's columns;
              - JSON is compact unless ?pretty=true or the User-Agent starts
                with curl, Wget or Mozilla/5.0 (as the real server does).
  Not modelled: protobuf and CBOR bodies (415; kubectl's generator
              commands like `kubectl create namespace` therefore fail, as the
              reference predicts), ReplicaSet/Event/other resources,
              managedFields in responses (ownership is tracked internally for
              server-side apply conflicts, one owner per field, no shared
              ownership), strict unknown-field checks beyond the top level,
              metadata, deployment/service/pod spec and container keys,
              consistent snapshots for `continue` (later pages show the
              current state), watch-list (sendInitialEvents).

TEST HOOKS (in-process use)
    sim = K8sSim(port=0, certdir=D, token="t0k", host="127.0.0.1")
    sim.start()                 # serves in background threads; returns sim
    sim.port, sim.url           # bound port; "https://127.0.0.1:PORT"
    sim.stop()                  # closes listener, connections and streams
    with K8sSim(...) as sim:    # start/stop as a context manager

  Constructor: port=0, certdir=None (None = plain HTTP), token="test-token"
  (None = accept any or no token), host="127.0.0.1" ("::1" works),
  nodes=3, controllers=True, history=1000 (watch events kept),
  bookmark_interval=5.0, pod_delete_delay=0.2, ns_delete_delay=0.2,
  log_lines=10 (lines a started container has logged), log_tick=0.0 (>0:
  every running container logs a line each log_tick seconds),
  user="system:serviceaccount:default:agent" (name used in 403 messages).

  State access (all return deep copies):
    sim.get("deployments", "default", "web") -> dict or None
        (resource plural or singular; ns ignored for cluster-scoped kinds)
    sim.list("pods", ns=None, labels=None) -> [dict]   (ns None = all)
    sim.create(obj) -> dict    create through the same path as POST
    sim.remove(resource, ns, name)   delete at once (DELETED event)
    sim.resource_version -> str      current global RV
    sim.logs(ns, pod, container) -> [str];  sim.append_log(ns, pod, c, text)
    sim.set_node_ready(name, ready)  Ready condition True / Unknown
    sim.compact()               forget watch history: older RVs get 410
    sim.deny(verb, resource, namespace=None) / sim.allow_all()
        403 Forbidden for matching requests (resource like "deployments" or
        "deployments/scale"; verb get/list/watch/create/update/patch/delete/
        deletecollection or "*")
    sim.token = "new"           rotate the accepted bearer token
    sim.wait_for(pred, timeout=5)   poll pred() until true (else AssertionError)
    sim.streams                 number of open watch/follow streams

  Counters (collections.Counter, only requests that passed the fault switch
  and authentication, i.e. that the simulator executed):
    sim.counts[("PATCH", "deployments/scale")]   by HTTP method and
                                                  "resource[/subresource]"
    sim.counts[("patch", "deployments/scale")]   by Kubernetes verb (get,
        list, watch, create, update, patch, delete, deletecollection)
    sim.counts[("GET", "/version")]               non-resource paths by path
    sim.reset_counts()
    sim.requests  deque of (method, path?query, status) for every request,
                  401s and injected faults included (status 0 = dropped).

  Faults:
    sim.set_fault(None)          normal service
    sim.set_fault("down")        connections are closed without an answer
                                 (new ones before the TLS handshake)
    sim.set_fault("refuse")      the listener is closed (connection refused)
                                 and open connections are cut; set_fault(None)
                                 listens again on the same port
    sim.set_fault("slow:2.5")    every request waits 2.5 s first
    sim.set_fault("500")         500 InternalError Status (health: text)
    sim.set_fault("503"|"429"|"504"|"409")   ServiceUnavailable,
                                 TooManyRequests (retryAfterSeconds 1),
                                 Timeout, Conflict (object's exact message)
    optional set_fault(spec, match="deployments/scale", times=2): only
    requests whose path contains `match`, and only the next `times` of them
    (then the fault clears itself).

COMMAND LINE
    /usr/bin/python3 tests/sim/k8s_sim.py --port P --certdir D --token T
        [--host H] [--nodes N] [--log-tick S] [--no-controllers]
    prints "listening on https://127.0.0.1:P" (flushed) when ready and serves
    until SIGTERM/SIGINT. K8S_SIM_DEBUG=1 logs each request to stderr.
"""

import argparse
import base64
import collections
import copy
import hashlib
import heapq
import http.server
import itertools
import json
import os
import random
import re
import select
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

DEBUG = bool(os.environ.get("K8S_SIM_DEBUG"))

VERSION_INFO = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.4",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
    "gitTreeState": "clean", "buildDate": "2025-04-22T16:02:27Z",
    "goVersion": "go1.23.6", "compiler": "gc", "platform": "linux/amd64",
}

PATCH_TYPES = (
    "application/json-patch+json", "application/merge-patch+json",
    "application/strategic-merge-patch+json", "application/apply-patch+yaml",
)
APPLY_TYPE = "application/apply-patch+yaml"

OPTIMISTIC_LOCK_MSG = ("the object has been modified; please apply your "
                       "changes to the latest version and try again")

# --------------------------------------------------------------- utilities


def now_ts(t=None):
    """RFC 3339 UTC at second precision, as metav1.Time marshals."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t or time.time()))


def nano_ts(t):
    """RFC3339Nano as Go prints it (trailing zeros trimmed)."""
    frac = ("%.9f" % (t % 1))[2:].rstrip("0")
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return base + ("." + frac if frac else "") + "Z"


def parse_ts(s):
    """Seconds since the epoch for an RFC 3339 timestamp, or None."""
    if not s:
        return None
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$", s)
    if not m:
        return None
    import calendar
    t = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    return t + (float(m.group(7)) if m.group(7) else 0.0)


def encode_json(obj, pretty=False):
    """Go encoding/json output: compact (or indented), '\\n' at the end,
    <, > and & escaped as \\u003c, \\u003e, \\u0026."""
    if pretty:
        s = json.dumps(obj, indent=2, ensure_ascii=False)
    else:
        s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e")
         .replace("&", "\\u0026").replace("\u2028", "\\u2028")
         .replace("\u2029", "\\u2029"))
    return (s + "\n").encode("utf-8")


def go_quote(s):
    """Go's %q for the strings we print (names, values)."""
    return json.dumps(s, ensure_ascii=False)


class GoRepr(str):
    """A value already formatted the way Go's %#v / %v would print it."""


def go_value(v):
    if isinstance(v, GoRepr):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return go_quote(v)
    return str(v)


def go_map(m):
    """%#v of a map[string]string."""
    if m is None:
        return "map[string]string(nil)"
    return "map[string]string{%s}" % ", ".join(
        "%s:%s" % (go_quote(k), go_quote(v)) for k, v in sorted(m.items()))


def human_duration(sec):
    """apimachinery duration.HumanDuration (kubectl's AGE column)."""
    s = int(sec)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    minutes = s // 60
    if minutes < 10:
        return "%dm" % minutes if s % 60 == 0 else "%dm%ds" % (minutes, s % 60)
    if minutes < 180:
        return "%dm" % minutes
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return "%dh" % hours if m == 0 else "%dh%dm" % (hours, m)
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        h = hours % 24
        return "%dd" % (hours // 24) if h == 0 else "%dd%dh" % (hours // 24, h)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        y = hours // 24 // 365
        return "%dy" % y if dy == 0 else "%dy%dd" % (y, dy)
    return "%dy" % (hours // 24 // 365)


def dig(obj, *path, default=None):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return default
        obj = obj[p]
    return obj


def full_image(img):
    """docker.io/library/nginx:latest style reference, as the kubelet shows."""
    first = img.split("/")[0]
    if "/" not in img:
        img = "docker.io/library/" + img
    elif "." not in first and ":" not in first and first != "localhost":
        img = "docker.io/" + img
    if "@" not in img and ":" not in img.rsplit("/", 1)[-1]:
        img += ":latest"
    return img


SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def rand_suffix(n=5):
    return "".join(random.choice(SAFE_ALPHABET) for _ in range(n))


def template_hash(template):
    h = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).digest()
    v = int.from_bytes(h[:8], "big")
    out = ""
    for _ in range(10):
        out += SAFE_ALPHABET[v % len(SAFE_ALPHABET)]
        v //= len(SAFE_ALPHABET)
    return out


# ------------------------------------------------------------- Status


def make_details(name=None, group=None, kind=None, uid=None, causes=None,
                 retry=None):
    d = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if kind:
        d["kind"] = kind
    if uid:
        d["uid"] = uid
    if causes:
        d["causes"] = causes
    if retry:
        d["retryAfterSeconds"] = retry
    return d


def status_obj(status, message=None, reason=None, details=None, code=None):
    """A metav1.Status with Go's key order and omitempty rules (2.1)."""
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {},
         "status": status}
    if message:
        s["message"] = message
    if reason:
        s["reason"] = reason
    if details:
        s["details"] = details
    if code:
        s["code"] = code
    return s


class ApiError(Exception):
    """An error answered as a Failure Status with HTTP status == code."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or []

    def status(self):
        return status_obj("Failure", self.message, self.reason, self.details,
                          self.code)


class FieldError:
    """field.Error: ErrorBody() and its StatusCause (section 7)."""
    REASONS = {"Required": "FieldValueRequired", "Invalid": "FieldValueInvalid",
               "NotSupported": "FieldValueNotSupported",
               "Forbidden": "FieldValueForbidden",
               "Duplicate": "FieldValueDuplicate",
               "TooLong": "FieldValueTooLong"}

    def __init__(self, typ, field, value=None, detail="", supported=None):
        self.typ, self.field, self.value = typ, field, value
        self.detail, self.supported = detail, supported

    def body(self):
        if self.typ == "Required":
            s = "Required value"
            return s + (": " + self.detail if self.detail else "")
        if self.typ == "Invalid":
            s = "Invalid value: " + go_value(self.value)
            return s + (": " + self.detail if self.detail else "")
        if self.typ == "NotSupported":
            s = "Unsupported value: " + go_value(self.value)
            if self.supported:
                s += ": supported values: " + ", ".join(
                    go_quote(x) for x in self.supported)
            return s
        if self.typ == "Forbidden":
            return "Forbidden" + (": " + self.detail if self.detail else "")
        if self.typ == "Duplicate":
            return "Duplicate value: " + go_value(self.value)
        return "%s: %s" % (self.typ, self.detail)

    def error(self):
        return "%s: %s" % (self.field, self.body())

    def cause(self):
        return {"reason": self.REASONS.get(self.typ, "FieldValueInvalid"),
                "message": self.body(), "field": self.field}


def err_invalid(kind_group, kind, group, name, errs):
    msgs = [e.error() for e in errs]
    agg = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    return ApiError(422, "Invalid", "%s %s is invalid: %s" % (
        kind_group, go_quote(name or ""), agg),
        make_details(name, group, kind, causes=[e.cause() for e in errs]))


def err_bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def err_options_invalid(kind, errs):
    """Invalid on an options struct, e.g. PatchOptions.meta.k8s.io ""."""
    return err_invalid(kind + ".meta.k8s.io", kind, "meta.k8s.io", "", errs)


# --------------------------------------------------------------- kinds


class Kind:
    """One resource type: names, scope, discovery data and behaviour flags."""

    def __init__(self, resource, kind, group, namespaced, singular,
                 short=(), categories=(), subresources=(), name_rule="subdomain",
                 returns_object=False, field_labels=("metadata.name",
                                                     "metadata.namespace"),
                 verbs=None):
        self.resource, self.kind, self.group = resource, kind, group
        self.version = "v1"
        self.api_version = group + "/v1" if group else "v1"
        self.namespaced, self.singular = namespaced, singular
        self.short, self.categories = list(short), list(categories)
        self.subresources = list(subresources)
        self.name_rule = name_rule
        self.returns_object = returns_object
        self.field_labels = list(field_labels)
        self.verbs = verbs or ["create", "delete", "deletecollection", "get",
                               "list", "patch", "update", "watch"]
        self.qualified = resource + "." + group if group else resource
        self.kind_group = kind + "." + group if group else kind

    def details(self, name=None, uid=None, causes=None):
        return make_details(name, self.group, self.resource, uid, causes)

    def not_found(self, name):
        return ApiError(404, "NotFound", "%s %s not found" % (
            self.qualified, go_quote(name)), self.details(name))

    def already_exists(self, name):
        return ApiError(409, "AlreadyExists", "%s %s already exists" % (
            self.qualified, go_quote(name)), self.details(name))

    def conflict(self, name, why=OPTIMISTIC_LOCK_MSG, qualified=None):
        return ApiError(409, "Conflict", "Operation cannot be fulfilled on %s %s: %s"
                        % (qualified or self.qualified, go_quote(name), why),
                        self.details(name))

    def invalid(self, name, errs):
        return err_invalid(self.kind_group, self.kind, self.group, name, errs)


KINDS = collections.OrderedDict((k.resource, k) for k in [
    Kind("namespaces", "Namespace", "", False, "namespace", ["ns"],
         subresources=["status"], name_rule="label", returns_object=True,
         field_labels=["metadata.name", "status.phase"],
         verbs=["create", "delete", "get", "list", "patch", "update",
                "watch"]),
    Kind("nodes", "Node", "", False, "node", ["no"], subresources=["status"],
         field_labels=["metadata.name", "spec.unschedulable"]),
    Kind("pods", "Pod", "", True, "pod", ["po"], ["all"],
         subresources=["log", "status"], returns_object=True,
         field_labels=["metadata.name", "metadata.namespace", "spec.nodeName",
                       "spec.restartPolicy", "spec.schedulerName",
                       "spec.serviceAccountName", "spec.hostNetwork",
                       "status.phase", "status.podIP", "status.podIPs",
                       "status.nominatedNodeName"]),
    Kind("services", "Service", "", True, "service", ["svc"], ["all"],
         subresources=["status"], name_rule="dns1035", returns_object=True,
         field_labels=["metadata.name", "metadata.namespace",
                       "spec.clusterIP", "spec.type"]),
    Kind("deployments", "Deployment", "apps", True, "deployment", ["deploy"],
         ["all"], subresources=["scale", "status"]),
])
KIND_ALIASES = {}
for _kd in KINDS.values():
    for _a in [_kd.resource, _kd.singular, _kd.kind.lower()] + _kd.short:
        KIND_ALIASES[_a] = _kd
GROUP_VERSIONS = {"v1": [k for k in KINDS.values() if not k.group],
                  "apps/v1": [k for k in KINDS.values() if k.group == "apps"]}
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public")


def kind_of(resource):
    kd = KIND_ALIASES.get(resource) or KIND_ALIASES.get(resource.lower())
    if kd is None:
        raise KeyError("unknown resource %r" % resource)
    return kd


# ----------------------------------------------------------- validation

DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + r"(\." + DNS1123_LABEL + ")*"
DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"


def _regex_error(msg, fmt, examples):
    # validation.RegexError: examples joined with " or ", each quoted, with
    # the comma of the previous one before " or" (hence the double space).
    if len(examples) == 1:
        ex = "'%s'" % examples[0]
    else:
        ex = "'%s', " % examples[0] + " or ".join(
            "'%s'" % e for e in examples[1:])
        ex = ex.replace("', '", "',  or '", 1) if len(examples) == 2 else ex
    return msg + " (e.g. " + ex + ", regex used for validation is '" + fmt + "')"


def check_subdomain(v):
    errs = []
    if len(v) > 253:
        errs.append("must be no more than 253 characters")
    if not re.fullmatch(DNS1123_SUBDOMAIN, v):
        errs.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with "
            "an alphanumeric character", DNS1123_SUBDOMAIN, ["example.com"]))
    return errs


def check_label(v):
    errs = []
    if len(v) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(DNS1123_LABEL, v):
        if re.fullmatch(DNS1123_SUBDOMAIN, v):
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(
                "a lowercase RFC 1123 label must consist of lower case "
                "alphanumeric characters or '-', and must start and end with "
                "an alphanumeric character", DNS1123_LABEL,
                ["my-name", "123-abc"]))
    return errs


def check_dns1035(v):
    errs = []
    if len(v) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(DNS1035_LABEL, v):
        errs.append(_regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric "
            "characters or '-', start with an alphabetic character, and end "
            "with an alphanumeric character", DNS1035_LABEL,
            ["my-name", "abc-123"]))
    return errs


NAME_RULES = {"subdomain": check_subdomain, "label": check_label,
              "dns1035": check_dns1035}

LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"


def validate_meta(kd, meta, errs):
    name = meta.get("name") or ""
    if not name:
        if not meta.get("generateName"):
            errs.append(FieldError("Required", "metadata.name",
                                   detail="name or generateName is required"))
    else:
        for msg in NAME_RULES[kd.name_rule](name):
            errs.append(FieldError("Invalid", "metadata.name", name, msg))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return
    for k, v in labels.items():
        key = k.split("/", 1)[-1]
        if not re.fullmatch(QUALIFIED_NAME, key) or len(key) > 63:
            errs.append(FieldError(
                "Invalid", "metadata.labels", k,
                "name part must consist of alphanumeric characters, '-', '_' "
                "or '.', and must start and end with an alphanumeric "
                "character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
                "regex used for validation is '" + QUALIFIED_NAME + "')"))
        if not isinstance(v, str) or len(v) > 63 or not re.fullmatch(
                LABEL_VALUE, v):
            errs.append(FieldError(
                "Invalid", "metadata.labels", v if isinstance(v, str) else str(v),
                "a valid label must be an empty string or consist of "
                "alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character (e.g. 'MyValue',  or "
                "'my_value',  or '12345', regex used for validation is '"
                + LABEL_VALUE + "')"))


def validate_containers(spec, base, errs, require=True):
    cs = spec.get("containers")
    if not cs:
        if require:
            errs.append(FieldError("Required", base + ".containers"))
        return
    seen = set()
    for i, c in enumerate(cs):
        f = "%s.containers[%d]" % (base, i)
        if not isinstance(c, dict):
            errs.append(FieldError("Invalid", f, GoRepr(str(c))))
            continue
        n = c.get("name") or ""
        if not n:
            errs.append(FieldError("Required", f + ".name"))
        else:
            for msg in check_label(n):
                errs.append(FieldError("Invalid", f + ".name", n, msg))
            if n in seen:
                errs.append(FieldError("Duplicate", f + ".name", n))
            seen.add(n)
        if not c.get("image"):
            errs.append(FieldError("Required", f + ".image"))
        for j, p in enumerate(c.get("ports") or []):
            cp = p.get("containerPort") if isinstance(p, dict) else None
            if not isinstance(cp, int) or not 1 <= cp <= 65535:
                errs.append(FieldError(
                    "Invalid", "%s.ports[%d].containerPort" % (f, j), cp,
                    "must be between 1 and 65535, inclusive"))


def selector_from(sel):
    """LabelSelector -> list of (key, op, values) requirements."""
    reqs = []
    for k, v in sorted((sel.get("matchLabels") or {}).items()):
        reqs.append((k, "=", [v]))
    for e in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists",
              "DoesNotExist": "!"}.get(e.get("operator"), "in")
        reqs.append((e.get("key"), op, list(e.get("values") or [])))
    reqs.sort(key=lambda r: r[0] or "")
    return reqs


def selector_string(reqs):
    parts = []
    for k, op, vals in reqs:
        if op == "=":
            parts.append("%s=%s" % (k, vals[0]))
        elif op == "!=":
            parts.append("%s!=%s" % (k, vals[0]))
        elif op in ("in", "notin"):
            parts.append("%s %s (%s)" % (k, op, ",".join(sorted(vals))))
        elif op == "exists":
            parts.append(k)
        elif op == "!":
            parts.append("!" + k)
        else:
            parts.append("%s%s%s" % (k, op, vals[0]))
    return ",".join(parts)


def labels_match(reqs, labels):
    labels = labels or {}
    for k, op, vals in reqs:
        has = k in labels
        v = labels.get(k)
        if op == "=" and not (has and v == vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and not (has and v in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
        if op in (">", "<"):
            try:
                n = int(v)
            except (TypeError, ValueError):
                return False
            if (op == ">" and not n > int(vals[0])) or (
                    op == "<" and not n < int(vals[0])):
                return False
    return True


LABEL_KEY_RE = r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + QUALIFIED_NAME


def parse_label_selector(s):
    """labels.Parse: k=v, k==v, k!=v, k in (a,b), k notin (a,b), k, !k,
    k>n, k<n; ',' is AND. Raises ApiError 400 on a parse error."""
    reqs = []
    s = (s or "").strip()
    if not s:
        return reqs
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip()
        m = re.fullmatch(r"(\S+?)\s+(in|notin)\s*\((.*)\)", p)
        if m:
            k, op = m.group(1), m.group(2)
            vals = [x.strip() for x in m.group(3).split(",")]
        elif p.startswith("!"):
            k, op, vals = p[1:].strip(), "!", []
        else:
            m = re.fullmatch(r"([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)", p)
            if m:
                k, op, vals = m.group(1), m.group(2), [m.group(3)]
                if op == "==":
                    op = "="
                if op in (">", "<") and not re.fullmatch(r"-?\d+", vals[0]):
                    raise err_bad_request(
                        "unable to parse requirement: for 'Gt', 'Lt' "
                        "operators, the value must be an integer")
            elif re.fullmatch(r"\S+", p or " "):
                k, op, vals = p, "exists", []
            else:
                raise err_bad_request(
                    "unable to parse requirement: found '%s', expected: "
                    "identifier" % p)
        if not re.fullmatch(LABEL_KEY_RE, k):
            raise err_bad_request(
                "unable to parse requirement: <nil>: Invalid value: %s: name "
                "part must consist of alphanumeric characters, '-', '_' or "
                "'.', and must start and end with an alphanumeric character"
                % go_quote(k))
        for v in vals:
            if op not in (">", "<") and not re.fullmatch(LABEL_VALUE, v):
                raise err_bad_request(
                    "unable to parse requirement: values[0][%s]: Invalid "
                    "value: %s: a valid label must be an empty string or "
                    "consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character" % (
                        k, go_quote(v)))
        reqs.append((k, op, vals))
    return reqs


def parse_field_selector(kd, s):
    """fields.ParseSelector + the kind's supported labels (3.2)."""
    reqs = []
    s = (s or "").strip()
    if not s:
        return reqs
    for p in s.split(","):
        m = re.fullmatch(r"\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*", p)
        if not m:
            raise err_bad_request("invalid selector: '%s'; can't understand "
                                  "'%s'" % (s, p))
        field, op, val = m.group(1), m.group(2), m.group(3)
        if field not in kd.field_labels:
            if kd.group:
                raise err_bad_request("%s is not a known field selector: only "
                                      "%s" % (go_quote(field), ", ".join(
                                          go_quote(f) for f in kd.field_labels)))
            raise err_bad_request("field label not supported: " + field)
        reqs.append((field, "!=" if op == "!=" else "=", val))
    return reqs


def field_value(obj, field):
    v = dig(obj, *field.split("."))
    if field == "status.podIPs":
        v = ",".join(x.get("ip", "") for x in (v or []))
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def fields_match(reqs, obj):
    for field, op, val in reqs:
        v = field_value(obj, field)
        if (op == "=") != (v == val):
            return False
    return True


# -------------------------------------------------------------- patching


class PatchError(Exception):
    """A patch that could not be applied (422 Invalid, empty details)."""


_DELETE = object()

MERGE_KEYS = {
    "containers": "name", "initContainers": "name",
    "ephemeralContainers": "name", "imagePullSecrets": "name",
    "schedulingGates": "name", "volumes": "name", "hostAliases": "ip",
    "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "conditions": "type", "addresses": "type", "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey", "resourceClaims": "name",
}


def merge_key_for(path, kind):
    """patchMergeKey of the list field at path (a tuple of field names)."""
    name = path[-1] if path else ""
    if name == "ports":
        return "port" if kind == "Service" and path == ("spec", "ports") \
            else "containerPort"
    if name == "addresses" and kind != "Node":
        return None
    return MERGE_KEYS.get(name)


def merged_primitive_list(path):
    return path == ("metadata", "finalizers")


def strip_directives(v):
    if isinstance(v, dict):
        return {k: strip_directives(x) for k, x in v.items()
                if not k.startswith("$")}
    if isinstance(v, list):
        return [strip_directives(x) for x in v]
    return v


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def strategic_merge(orig, patch, kind, path=()):
    """Strategic merge patch with the merge keys of the built-in types and
    the $patch, $retainKeys, $setElementOrder, $deleteFromPrimitiveList
    directives (3.4)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return strip_directives(patch)
    if directive == "delete":
        return _DELETE
    result = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            if isinstance(result.get(f), list) and isinstance(v, list):
                result[f] = [x for x in result[f] if x not in v]
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        sub = path + (k,)
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            r = strategic_merge(result.get(k), v, kind, sub)
            if r is _DELETE:
                result.pop(k, None)
            else:
                result[k] = r
        elif isinstance(v, list):
            result[k] = strategic_merge_list(result.get(k), v, kind, sub)
        else:
            result[k] = v
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            f = k.split("/", 1)[1]
            if isinstance(result.get(f), list) and isinstance(v, list):
                result[f] = reorder(result[f], v,
                                    merge_key_for(path + (f,), kind))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        for key in list(result):
            if key not in retain:
                del result[key]
    return result


def strategic_merge_list(orig, patch, kind, path):
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [strip_directives(x) for x in patch
                if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    key = merge_key_for(path, kind)
    orig = copy.deepcopy(orig) if isinstance(orig, list) else []
    if key and all(isinstance(x, dict) for x in patch):
        for item in patch:
            kv = item.get(key)
            idx = next((i for i, o in enumerate(orig)
                        if isinstance(o, dict) and o.get(key) == kv), None)
            if item.get("$patch") == "delete":
                if idx is not None:
                    del orig[idx]
                continue
            if idx is not None:
                orig[idx] = strategic_merge(orig[idx], item, kind, path)
            else:
                orig.append(strip_directives(
                    strategic_merge({}, item, kind, path)))
        return orig
    if merged_primitive_list(path):
        for x in patch:
            if x not in orig:
                orig.append(x)
        return orig
    return strip_directives(patch)


def reorder(lst, order, key):
    def ident(x):
        return x.get(key) if key and isinstance(x, dict) else x
    keys = [ident(o) for o in order]
    out = []
    for k in keys:
        for x in lst:
            if ident(x) == k and x not in out:
                out.append(x)
                break
    return out + [x for x in lst if ident(x) not in keys]


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container_at(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError("missing path")
    return cur


def json_patch(doc, ops):
    """RFC 6902. Raises ApiError 400 when malformed, PatchError when an op
    fails to apply."""
    if not isinstance(ops, list):
        raise err_bad_request("json: cannot unmarshal object into Go value of "
                              "type jsonpatch.Patch")
    if len(ops) > 10000:
        raise ApiError(413, "RequestEntityTooLarge",
                       "Request entity too large: The allowed maximum "
                       "operations in a JSON patch is 10000, got %d" % len(ops))
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise err_bad_request("json: invalid JSON patch operation")
        kind, parts = op["op"], _pointer(op["path"])

        def get_val(o=op):
            if "value" not in o:
                raise PatchError("missing value")
            return copy.deepcopy(o["value"])
        if kind == "test":
            if _container_at(doc, parts) != op.get("value"):
                raise PatchError("testing value failed")
            continue
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            val = copy.deepcopy(_container_at(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            doc = _add(doc, parts, val)
        elif kind == "add":
            doc = _add(doc, parts, get_val())
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _container_at(doc, parts)
            doc = _remove(doc, parts)
            doc = _add(doc, parts, get_val())
        else:
            raise err_bad_request("Unexpected kind: " + str(kind))
    return doc


def _add(doc, parts, val):
    if not parts:
        return val
    parent = _container_at(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = val
    elif isinstance(parent, list):
        if last == "-":
            parent.append(val)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), val)
        else:
            raise PatchError("index out of range")
    else:
        raise PatchError("missing path")
    return doc


def _remove(doc, parts):
    if not parts:
        raise PatchError("cannot remove the root")
    parent = _container_at(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError("missing path")
    return doc


# ---- server-side apply: field ownership, simplified (3.4)

def flatten(obj, kind, path=(), out=None, spath=()):
    """Leaf fields of obj as {path tuple: value}. Lists with a merge key
    become associative (element = ("k", key, value)); others are atomic."""
    if out is None:
        out = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            flatten(v, kind, path + (k,), out, spath + (k,))
    elif isinstance(obj, list) and obj and merge_key_for(spath, kind) and all(
            isinstance(x, dict) for x in obj):
        key = merge_key_for(spath, kind)
        for item in obj:
            el = path + (("k", key, json.dumps(item.get(key))),)
            out[el + (key,)] = json.dumps(item.get(key))
            for k, v in item.items():
                if k != key:
                    flatten(v, kind, el + (k,), out, spath + (k,))
    else:
        out[path] = json.dumps(obj, sort_keys=True)
    return out


OWNED_EXCLUDE = {("kind",), ("apiVersion",), ("status",),
                 ("metadata", "name"), ("metadata", "namespace"),
                 ("metadata", "uid"), ("metadata", "resourceVersion"),
                 ("metadata", "generation"), ("metadata", "creationTimestamp"),
                 ("metadata", "managedFields"),
                 ("metadata", "deletionTimestamp"),
                 ("metadata", "deletionGracePeriodSeconds")}


def owned_leaves(obj, kind):
    return {p: v for p, v in flatten(obj, kind).items()
            if p[:1] != ("status",) and p[:2] not in OWNED_EXCLUDE
            and p[:1] not in OWNED_EXCLUDE}


def path_string(p):
    s = ""
    for seg in p:
        if isinstance(seg, tuple):
            s += "[%s=%s]" % (seg[1], seg[2])
        else:
            s += "." + seg
    return s


def remove_path(obj, p):
    """Remove a flattened path; removing an element's key removes it."""
    cur = obj
    for i, seg in enumerate(p):
        last = i == len(p) - 1
        if isinstance(seg, tuple):
            if not isinstance(cur, list):
                return
            idx = next((j for j, x in enumerate(cur) if isinstance(x, dict) and
                        json.dumps(x.get(seg[1])) == seg[2]), None)
            if idx is None:
                return
            if i + 1 == len(p) - 1 and p[-1] == seg[1]:
                del cur[idx]
                return
            cur = cur[idx]
        else:
            if not isinstance(cur, dict) or seg not in cur:
                return
            if last:
                del cur[seg]
                return
            cur = cur[seg]


def prune_empty(obj, keep=("spec", "status", "metadata")):
    """Drop maps emptied by field removal (not the top-level sections)."""
    def walk(v, depth):
        if isinstance(v, dict):
            for k in list(v):
                walk(v[k], depth + 1)
                if isinstance(v[k], dict) and not v[k] and not (
                        depth == 0 and k in keep):
                    del v[k]
        elif isinstance(v, list):
            for x in v:
                walk(x, depth + 1)
    walk(obj, 0)


# -------------------------------------------------------------- tiny YAML

def parse_yaml(text):
    """Block-style YAML subset (maps, lists, scalars, flow JSON, '|'
    literals, comments, first document only). Enough for manifests and
    apply-patch bodies. Raises ValueError."""
    lines = []
    for raw in text.split("\n"):
        if raw.strip() == "---":
            if lines:
                break
            continue
        if raw.strip() == "..." and lines:
            break
        lines.append(raw.rstrip("\r"))
    toks = []  # (indent, content, raw line)
    for ln in lines:
        s = _strip_comment(ln)
        if s.strip():
            toks.append((len(s) - len(s.lstrip(" ")), s.strip(), ln))
    if not toks:
        return None
    pos = [0]

    def scalar(s):
        s = s.strip()
        if s == "" or s in ("~", "null", "Null", "NULL"):
            return None
        if s[0] in "{[\"":
            try:
                return json.loads(s)
            except ValueError:
                if s[0] == '"':
                    raise
                return _flow(s)
        if s[0] == "'" and s.endswith("'"):
            return s[1:-1].replace("''", "'")
        if s in ("true", "True", "TRUE"):
            return True
        if s in ("false", "False", "FALSE"):
            return False
        if re.fullmatch(r"[-+]?\d+", s):
            return int(s)
        if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", s):
            return float(s)
        return s

    def block_scalar(indent, style):
        out = []
        i = pos[0]
        # consume raw lines more indented than `indent`
        while i < len(toks) and toks[i][0] > indent:
            out.append(toks[i][2])
            i += 1
        pos[0] = i
        if not out:
            return ""
        cut = min(len(x) - len(x.lstrip(" ")) for x in out if x.strip())
        body = [x[cut:] for x in out]
        if style.startswith(">"):
            s = " ".join(body)
        else:
            s = "\n".join(body)
        return s if style.endswith("-") else s + "\n"

    def parse_node(indent):
        if pos[0] >= len(toks):
            return None
        ind, content, _ = toks[pos[0]]
        if content.startswith("- ") or content == "-":
            return parse_seq(ind)
        return parse_map(ind)

    def value_after(content, ind):
        if content in ("|", "|-", ">", ">-", "|+"):
            return block_scalar(ind, content)
        if content == "":
            if pos[0] < len(toks) and (toks[pos[0]][0] > ind or (
                    toks[pos[0]][0] == ind and toks[pos[0]][1].startswith("-"))):
                return parse_node(toks[pos[0]][0])
            return None
        return scalar(content)

    def parse_map(ind):
        out = {}
        while pos[0] < len(toks) and toks[pos[0]][0] == ind:
            content = toks[pos[0]][1]
            if content.startswith("- "):
                break
            k, v = _split_key(content)
            pos[0] += 1
            out[k] = value_after(v, ind)
        return out

    def parse_seq(ind):
        out = []
        while pos[0] < len(toks) and toks[pos[0]][0] == ind and (
                toks[pos[0]][1].startswith("- ") or toks[pos[0]][1] == "-"):
            content = toks[pos[0]][1][1:].lstrip(" ")
            if content == "":
                pos[0] += 1
                out.append(parse_node(ind + 1) if pos[0] < len(toks) and
                           toks[pos[0]][0] > ind else None)
                continue
            item_ind = ind + (len(toks[pos[0]][1]) - len(content))
            if _split_key(content, strict=True) is not None and content[0] not in "{[\"'":
                # "- key: value" starts a mapping at item_ind
                toks[pos[0]] = (item_ind, content, toks[pos[0]][2])
                out.append(parse_map(item_ind))
            elif content in ("|", "|-", ">", ">-", "|+"):
                pos[0] += 1
                out.append(block_scalar(ind, content))
            else:
                pos[0] += 1
                out.append(scalar(content))
        return out

    result = parse_node(toks[0][0])
    if pos[0] < len(toks):
        raise ValueError("yaml: line %d: did not find expected key" % (pos[0] + 1))
    return result


def _strip_comment(line):
    out, q = "", None
    for i, ch in enumerate(line):
        if q:
            if ch == q:
                q = None
        elif ch in "\"'" and (i == 0 or line[i - 1] in " :[{,-"):
            q = ch
        elif ch == "#" and (i == 0 or line[i - 1] == " "):
            break
        out += ch
    return out.rstrip()


def _split_key(content, strict=False):
    m = re.match(r'^("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^:#{}\[\]]+?)\s*:(\s+(.*)|$)',
                 content)
    if not m:
        if strict:
            return None
        raise ValueError("yaml: could not find expected ':' in %r" % content)
    k = m.group(1)
    if k[0] == '"':
        k = json.loads(k)
    elif k[0] == "'":
        k = k[1:-1]
    return k, (m.group(3) or "").strip()


def _flow(s):
    """Flow collections with bare words: {a: b, c: [d, e]}."""
    j = re.sub(r'(?<=[{\[,])\s*([^\s"{}\[\],:][^{}\[\],:]*?)\s*(?=[,:}\]])',
               lambda m: json.dumps(m.group(1)), s)
    j = re.sub(r':\s*([^\s"{}\[\],][^{}\[\],]*?)\s*(?=[,}])',
               lambda m: ":" + json.dumps(m.group(1)), j)
    return json.loads(j)


# -------------------------------------------------------------- defaults

def default_container(c):
    image = c.get("image") or ""
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last and "@" not in last else ""
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "@" in last:
        c.setdefault("imagePullPolicy", "IfNotPresent")
    c.setdefault("imagePullPolicy",
                 "Always" if tag in ("", "latest") else "IfNotPresent")


def default_pod_spec(spec):
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")


def admit_pod(spec):
    """What the pod admission plugins add on create (4.2)."""
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    if spec.get("automountServiceAccountToken") is not False and not any(
            (v.get("name") or "").startswith("kube-api-access-")
            for v in spec.get("volumes") or []):
        vname = "kube-api-access-" + rand_suffix(5)
        spec.setdefault("volumes", []).append({"name": vname, "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607,
                                         "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [
                    {"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
            "defaultMode": 420}})
        for c in spec.get("containers") or []:
            c.setdefault("volumeMounts", []).append({
                "name": vname, "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tol = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key for t in tol):
            tol.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                        "tolerationSeconds": 300})


def default_deployment(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    tmpl = spec.setdefault("template", {})
    tm = tmpl.setdefault("metadata", {})
    tm.setdefault("creationTimestamp", None)
    default_pod_spec(tmpl.setdefault("spec", {}))
    st = spec.setdefault("strategy", {})
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        ru = st.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)


def default_service(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "targetPort" not in p and "port" in p:
                p["targetPort"] = p["port"]
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")


def default_node(obj):
    st = obj.setdefault("status", {})
    if "capacity" in st and "allocatable" not in st:
        st["allocatable"] = copy.deepcopy(st["capacity"])


def default_namespace(obj):
    name = dig(obj, "metadata", "name")
    if name:
        obj["metadata"].setdefault("labels", {})[
            "kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


# ---- unknown fields (fieldValidation=Strict)

KNOWN_META = {"name", "generateName", "namespace", "selfLink", "uid",
              "resourceVersion", "generation", "creationTimestamp",
              "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
              "annotations", "ownerReferences", "finalizers", "managedFields"}
KNOWN_DEPLOYMENT_SPEC = {"replicas", "selector", "template", "strategy",
                         "minReadySeconds", "revisionHistoryLimit", "paused",
                         "progressDeadlineSeconds"}
KNOWN_SERVICE_SPEC = {
    "ports", "selector", "clusterIP", "clusterIPs", "type", "externalIPs",
    "sessionAffinity", "loadBalancerIP", "loadBalancerSourceRanges",
    "externalName", "externalTrafficPolicy", "healthCheckNodePort",
    "publishNotReadyAddresses", "sessionAffinityConfig", "ipFamilies",
    "ipFamilyPolicy", "allocateLoadBalancerNodePorts", "loadBalancerClass",
    "internalTrafficPolicy", "trafficDistribution"}
KNOWN_POD_SPEC = {
    "volumes", "initContainers", "containers", "ephemeralContainers",
    "restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds",
    "dnsPolicy", "nodeSelector", "serviceAccountName", "serviceAccount",
    "automountServiceAccountToken", "nodeName", "hostNetwork", "hostPID",
    "hostIPC", "shareProcessNamespace", "securityContext", "imagePullSecrets",
    "hostname", "subdomain", "affinity", "schedulerName", "tolerations",
    "hostAliases", "priorityClassName", "priority", "dnsConfig",
    "readinessGates", "runtimeClassName", "enableServiceLinks",
    "preemptionPolicy", "overhead", "topologySpreadConstraints",
    "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates",
    "resourceClaims", "resources"}
KNOWN_CONTAINER = {
    "name", "image", "command", "args", "workingDir", "ports", "envFrom",
    "env", "resources", "resizePolicy", "restartPolicy", "volumeMounts",
    "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe",
    "lifecycle", "terminationMessagePath", "terminationMessagePolicy",
    "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty"}


def unknown_fields(kd, obj):
    out = []

    def check(d, known, prefix):
        if isinstance(d, dict):
            for k in d:
                if k not in known:
                    out.append(prefix + k)

    check(obj, {"apiVersion", "kind", "metadata", "spec", "status"}, "")
    check(obj.get("metadata"), KNOWN_META, "metadata.")
    spec = obj.get("spec")
    pod_spec, base = None, ""
    if kd.kind == "Deployment":
        check(spec, KNOWN_DEPLOYMENT_SPEC, "spec.")
        pod_spec, base = dig(obj, "spec", "template", "spec"), "spec.template.spec"
    elif kd.kind == "Service":
        check(spec, KNOWN_SERVICE_SPEC, "spec.")
    elif kd.kind == "Pod":
        pod_spec, base = spec, "spec"
    if isinstance(pod_spec, dict):
        check(pod_spec, KNOWN_POD_SPEC, base + ".")
        for i, c in enumerate(pod_spec.get("containers") or []):
            check(c, KNOWN_CONTAINER, "%s.containers[%d]." % (base, i))
    return out


# ---------------------------------------------------------- table printing

def _col(name, typ="string", desc="", priority=0, fmt=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc,
            "priority": priority}


NAME_COL = _col("Name", fmt="name", desc="Name must be unique within a "
                "namespace. Is required when creating resources, although "
                "some resources may allow a client to request the generation "
                "of an appropriate name automatically. Name is primarily "
                "intended for creation idempotence and configuration "
                "definition. Cannot be updated. More info: "
                "https://kubernetes.io/docs/concepts/overview/working-with-"
                "objects/names#names")
AGE_COL = _col("Age", desc="CreationTimestamp is a timestamp representing "
               "the server time when this object was created.")
TABLE_COLUMNS = {
    "deployments": [NAME_COL, _col("Ready", desc="Number of the pod with ready "
                                   "state"),
                    _col("Up-to-date", "integer", "Total number of non-"
                         "terminated pods targeted by this deployment that "
                         "have the desired template spec."),
                    _col("Available", "integer", "Total number of available "
                         "pods (ready for at least minReadySeconds) targeted "
                         "by this deployment."),
                    AGE_COL,
                    _col("Containers", desc="Names of each container in the "
                         "template.", priority=1),
                    _col("Images", desc="Images referenced by each container "
                         "in the template.", priority=1),
                    _col("Selector", desc="Label selector for pods. Existing "
                         "ReplicaSets whose pods are selected by this will be "
                         "the ones affected by this deployment.", priority=1)],
    "pods": [NAME_COL, _col("Ready", desc="The aggregate readiness state of "
                            "this pod for accepting traffic."),
             _col("Status", desc="The aggregate status of the containers in "
                  "this pod."),
             _col("Restarts", desc="The number of times the containers in this "
                  "pod have been restarted and when the last container in "
                  "this pod has restarted."),
             AGE_COL,
             _col("IP", desc="IP address allocated to the pod. Routable at "
                  "least within the cluster. Empty if not yet allocated.",
                  priority=1),
             _col("Node", desc="NodeName is a request to schedule this pod "
                  "onto a specific node.", priority=1),
             _col("Nominated Node", desc="nominatedNodeName is set only when "
                  "this pod preempts other pods on the node.", priority=1),
             _col("Readiness Gates", desc="If specified, all readiness gates "
                  "will be evaluated for pod readiness.", priority=1)],
    "services": [NAME_COL, _col("Type", desc="type determines how the Service "
                                "is exposed."),
                 _col("Cluster-IP", desc="clusterIP is the IP address of the "
                      "service and is usually assigned randomly."),
                 _col("External-IP", desc="externalIPs is a list of IP "
                      "addresses for which nodes in the cluster will also "
                      "accept traffic for this service."),
                 _col("Port(s)", desc="The list of ports that are exposed by "
                      "this service."),
                 AGE_COL,
                 _col("Selector", desc="Route service traffic to pods with "
                      "label keys and values matching this selector.",
                      priority=1)],
    "namespaces": [NAME_COL, _col("Status", desc="The status of the "
                                  "namespace"), AGE_COL],
    "nodes": [NAME_COL, _col("Status", desc="The status of the node"),
              _col("Roles", desc="The roles of the node"), AGE_COL,
              _col("Version", desc="Kubelet Version reported by the node."),
              _col("Internal-IP", desc="List of internal IPs in the node.",
                   priority=1),
              _col("External-IP", desc="List of external IPs in the node.",
                   priority=1),
              _col("OS-Image", desc="OS Image reported by the node from "
                   "/etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                   priority=1),
              _col("Kernel-Version", desc="Kernel Version reported by the "
                   "node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                   priority=1),
              _col("Container-Runtime", desc="Container runtime version "
                   "reported by the node through runtime remote API (e.g. "
                   "containerd://1.4.2).", priority=1)],
}


def _age(obj):
    t = parse_ts(dig(obj, "metadata", "creationTimestamp"))
    return "<unknown>" if t is None else human_duration(time.time() - t)


def table_cells(resource, o):
    """One Table row (printers.go columns) for object o."""
    name = dig(o, "metadata", "name", default="")
    spec, st = o.get("spec") or {}, o.get("status") or {}
    if resource == "deployments":
        cs = dig(spec, "template", "spec", "containers", default=[]) or []
        return [name, "%d/%d" % (st.get("readyReplicas", 0),
                                 spec.get("replicas", 0)),
                st.get("updatedReplicas", 0), st.get("availableReplicas", 0),
                _age(o), ",".join(c.get("name", "") for c in cs),
                ",".join(c.get("image", "") for c in cs),
                selector_string(selector_from(spec.get("selector") or {}))
                or "<none>"]
    if resource == "pods":
        cs = spec.get("containers") or []
        css = st.get("containerStatuses") or []
        ready = sum(1 for c in css if c.get("ready"))
        reason = st.get("reason") or st.get("phase") or "Unknown"
        for c in css:
            w = dig(c, "state", "waiting", "reason")
            if w:
                reason = w
        if dig(o, "metadata", "deletionTimestamp"):
            reason = "Terminating"
        restarts = sum(c.get("restartCount", 0) for c in css)
        return [name, "%d/%d" % (ready, len(cs)), reason, str(restarts),
                _age(o), st.get("podIP") or "<none>",
                spec.get("nodeName") or "<none>",
                st.get("nominatedNodeName") or "<none>", "<none>"]
    if resource == "services":
        typ = spec.get("type", "ClusterIP")
        ext = ",".join(spec.get("externalIPs") or [])
        if typ == "LoadBalancer":
            ing = [i.get("ip") or i.get("hostname") for i in
                   dig(st, "loadBalancer", "ingress", default=[]) or []]
            ext = ",".join(x for x in [ext] + ing if x) or "<pending>"
        elif typ == "ExternalName":
            ext = spec.get("externalName", "")
        ports = []
        for p in spec.get("ports") or []:
            s = str(p.get("port"))
            if p.get("nodePort"):
                s += ":%d" % p["nodePort"]
            ports.append(s + "/" + p.get("protocol", "TCP"))
        sel = spec.get("selector")
        return [name, typ, spec.get("clusterIP") or "<none>", ext or "<none>",
                ",".join(ports) or "<none>", _age(o),
                ",".join("%s=%s" % kv for kv in sorted(sel.items()))
                if sel else "<none>"]
    if resource == "namespaces":
        return [name, st.get("phase", "Active"), _age(o)]
    if resource == "nodes":
        ready = next((c for c in st.get("conditions") or []
                      if c.get("type") == "Ready"), None)
        status = "Unknown" if ready is None else (
            "Ready" if ready.get("status") == "True" else "NotReady")
        if spec.get("unschedulable"):
            status += ",SchedulingDisabled"
        labels = dig(o, "metadata", "labels", default={}) or {}
        roles = sorted(k.split("/", 1)[1] for k in labels
                       if k.startswith("node-role.kubernetes.io/"))
        if labels.get("kubernetes.io/role"):
            roles.append(labels["kubernetes.io/role"])
        addrs = st.get("addresses") or []

        def addr(t):
            return ",".join(a["address"] for a in addrs
                            if a.get("type") == t) or "<none>"
        info = st.get("nodeInfo") or {}
        return [name, status, ",".join(roles) or "<none>", _age(o),
                info.get("kubeletVersion", ""), addr("InternalIP"),
                addr("ExternalIP"), info.get("osImage", "<unknown>"),
                info.get("kernelVersion", "<unknown>"),
                info.get("containerRuntimeVersion", "<unknown>")]
    return [name, _age(o)]


def table_of(resource, objs, rv, include="Metadata", cont=None, remaining=None,
             headers=True):
    meta = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    rows = []
    for o in objs:
        row = {"cells": table_cells(resource, o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata",
                             "apiVersion": "meta.k8s.io/v1",
                             "metadata": copy.deepcopy(o.get("metadata", {}))}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": TABLE_COLUMNS.get(resource, [NAME_COL, AGE_COL])
            if headers else None, "rows": rows}


# -------------------------------------------------------------- discovery

def discovery_aggregated(gv_filter, version):
    """APIGroupDiscoveryList for /api (core) or /apis (named groups)."""
    items = []
    groups = [("", "v1")] if gv_filter == "core" else [("apps", "v1")]
    for group, ver in groups:
        gv = group + "/" + ver if group else ver
        resources = []
        for kd in GROUP_VERSIONS[gv]:
            r = {"resource": kd.resource,
                 "responseKind": {"group": "", "version": "", "kind": kd.kind},
                 "scope": "Namespaced" if kd.namespaced else "Cluster",
                 "singularResource": kd.singular, "verbs": kd.verbs}
            if kd.short:
                r["shortNames"] = kd.short
            if kd.categories:
                r["categories"] = kd.categories
            subs = []
            for s in kd.subresources:
                if s == "scale":
                    subs.append({"subresource": "scale", "responseKind": {
                        "group": "autoscaling", "version": "v1",
                        "kind": "Scale"}, "verbs": ["get", "patch", "update"]})
                elif s == "log":
                    subs.append({"subresource": "log", "responseKind": {
                        "group": "", "version": "", "kind": "Pod"},
                        "verbs": ["get"]})
                else:
                    subs.append({"subresource": s, "responseKind": {
                        "group": "", "version": "", "kind": kd.kind},
                        "verbs": ["get", "patch", "update"]})
            if subs:
                r["subresources"] = subs
            resources.append(r)
        meta = {"creationTimestamp": None}
        if group:
            meta = {"name": group, "creationTimestamp": None}
        items.append({"metadata": meta, "versions": [
            {"version": ver, "resources": resources, "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/" + version,
            "metadata": {}, "items": items}


def api_resource_list(gv):
    res = []
    for kd in GROUP_VERSIONS[gv]:
        r = {"name": kd.resource, "singularName": kd.singular,
             "namespaced": kd.namespaced, "kind": kd.kind, "verbs": kd.verbs}
        if kd.short:
            r["shortNames"] = kd.short
        if kd.categories:
            r["categories"] = kd.categories
        res.append(r)
        for s in kd.subresources:
            sr = {"name": kd.resource + "/" + s, "singularName": "",
                  "namespaced": kd.namespaced}
            if s == "scale":
                sr.update({"group": "autoscaling", "version": "v1",
                           "kind": "Scale", "verbs": ["get", "patch", "update"]})
            elif s == "log":
                sr.update({"kind": "Pod", "verbs": ["get"]})
            else:
                sr.update({"kind": kd.kind, "verbs": ["get", "patch", "update"]})
            res.append(sr)
    out = {"kind": "APIResourceList", "groupVersion": gv, "resources": res}
    if gv != "v1":
        out = {"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": gv, "resources": res}
    return out


def openapi_gv_doc(gv):
    """Minimal OpenAPI v3 document: PATCH operations tagged with the GVK and
    a fieldValidation parameter, which is what kubectl checks (1.5)."""
    paths = {}
    base = "/api/v1" if gv == "v1" else "/apis/" + gv
    params = [{"name": n, "in": "query", "schema": {
        "type": "boolean" if n == "force" else "string", "uniqueItems": True}}
        for n in ("fieldValidation", "fieldManager", "force", "dryRun")]
    body = {"content": {t: {"schema": {"type": "object"}}
                        for t in sorted(PATCH_TYPES)}}
    for kd in GROUP_VERSIONS[gv]:
        p = base + ("/namespaces/{namespace}/" if kd.namespaced else "/") + \
            kd.resource + "/{name}"
        paths[p] = {"patch": {
            "x-kubernetes-group-version-kind": {
                "group": kd.group, "version": "v1", "kind": kd.kind},
            "x-kubernetes-action": "patch", "parameters": params,
            "requestBody": body, "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.4"},
            "paths": paths, "components": {"schemas": {}}}


OPENAPI_DOCS = {gv: encode_json(openapi_gv_doc(gv)) for gv in GROUP_VERSIONS}
OPENAPI_HASHES = {gv: hashlib.sha512(d).hexdigest().upper()
                  for gv, d in OPENAPI_DOCS.items()}


# ------------------------------------------------------------- responses

class Response:
    def __init__(self, code, body=b"", ctype="application/json", headers=None):
        self.code, self.body, self.ctype = code, body, ctype
        self.headers = headers or []


class Stream:
    """A chunked response; run(write, gone) produces the chunks."""

    def __init__(self, ctype, run):
        self.ctype, self.run = ctype, run


DROP = object()  # close the connection without answering


# ---------------------------------------------------------------- the sim

class K8sSim:
    """The simulator; see the module docstring for the hooks."""

    def __init__(self, port=0, certdir=None, token="test-token",
                 host="127.0.0.1", nodes=3, controllers=True, history=1000,
                 bookmark_interval=5.0, pod_delete_delay=0.2,
                 ns_delete_delay=0.2, log_lines=10, log_tick=0.0,
                 user="system:serviceaccount:default:agent"):
        self.host, self._want_port, self.port = host, port, None
        self.certdir, self.token, self.user = certdir, token, user
        self.controllers = controllers
        self.history = history
        self.bookmark_interval = bookmark_interval
        self.pod_delete_delay = pod_delete_delay
        self.ns_delete_delay = ns_delete_delay
        self.log_lines, self.log_tick = log_lines, log_tick
        self.counts = collections.Counter()
        self.requests = collections.deque(maxlen=2000)
        self.streams = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._objs = {r: {} for r in KINDS}
        self._rv = 0
        self._events = collections.deque()
        self._floor = 0          # all events with rv > floor are retained
        self._owners = {}        # (resource, ns, name) -> {path: manager}
        self._pod_owner = {}     # (ns, pod) -> deployment uid
        self._dep_rev = {}       # deployment uid -> (hash, revision)
        self._logs = {}          # (ns, pod, container) -> [(t, line)]
        self._next_ip = itertools.count(11)
        self._next_pod_ip = itertools.count(5)
        self._next_node_port = itertools.count(30080)
        self._rr = itertools.count()
        self._deny = []
        self._fault = None       # (spec, match, remaining)
        self._stopping = threading.Event()
        self._timers = []
        self._timer_seq = itertools.count()
        self._conns = {}
        self._server = None
        self._threads = []
        self._ssl_ctx = None
        self._seed(nodes)

    # ---------------------------------------------------------- lifecycle
    def start(self):
        if self.certdir:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(os.path.join(self.certdir, "server.pem"),
                                os.path.join(self.certdir, "server.key"))
            self._ssl_ctx = ctx
        self._listen(self._want_port)
        self.port = self._server.server_address[1]
        tt = threading.Thread(target=self._timer_loop, name="k8s-sim-timers",
                              daemon=True)
        tt.start()
        self._threads = [tt]
        return self

    def _listen(self, port):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = _Server((self.host, port), _Handler, self, fam)
        t = threading.Thread(target=self._server.serve_forever,
                             kwargs={"poll_interval": 0.1},
                             name="k8s-sim-accept", daemon=True)
        t.start()
        self._accept_thread = t

    def _unlisten(self):
        """Close the listener and every open connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._accept_thread.join(timeout=5)
            self._server = None
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        if self._stopping.is_set() or self.port is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._unlisten()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        scheme = "https" if self.certdir else "http"
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % (scheme, host, self.port)

    # -------------------------------------------------------- test hooks
    def get(self, resource, ns, name):
        kd = kind_of(resource)
        with self._lock:
            o = self._objs[kd.resource].get((ns if kd.namespaced else "", name))
            return copy.deepcopy(o)

    def list(self, resource, ns=None, labels=None):
        kd = kind_of(resource)
        reqs = parse_label_selector(labels) if labels else []
        with self._lock:
            return [copy.deepcopy(o) for (n, _), o in
                    sorted(self._objs[kd.resource].items())
                    if (ns is None or n == ns) and
                    labels_match(reqs, dig(o, "metadata", "labels"))]

    def create(self, obj):
        kd = next((k for k in KINDS.values() if k.kind == obj.get("kind")), None)
        if kd is None:
            raise KeyError("unknown kind %r" % obj.get("kind"))
        ns = dig(obj, "metadata", "namespace") or "default"
        with self._lock:
            out = self._create(kd, ns if kd.namespaced else "",
                               copy.deepcopy(obj), "k8s-sim")
            self._reconcile()
            return copy.deepcopy(out)

    def remove(self, resource, ns, name):
        kd = kind_of(resource)
        with self._lock:
            o = self._objs[kd.resource].get((ns if kd.namespaced else "", name))
            if o:
                self._remove(kd, o)
                self._reconcile()
            return o is not None

    @property
    def resource_version(self):
        with self._lock:
            return str(self._rv)

    def logs(self, ns, pod, container):
        with self._lock:
            return [ln for _, ln in self._logs.get((ns, pod, container), [])]

    def append_log(self, ns, pod, container, text):
        with self._cond:
            lst = self._logs.setdefault((ns, pod, container), [])
            for ln in text.splitlines() or [""]:
                lst.append((time.time(), ln))
            self._cond.notify_all()

    def set_node_ready(self, name, ready):
        kd = KINDS["nodes"]
        with self._lock:
            o = self._objs["nodes"].get(("", name))
            if o is None:
                raise KeyError(name)
            new = copy.deepcopy(o)
            for c in new["status"]["conditions"]:
                if c["type"] == "Ready":
                    c.update({"status": "True", "reason": "KubeletReady",
                              "message": "kubelet is posting ready status"}
                             if ready else {
                                 "status": "Unknown",
                                 "reason": "NodeStatusUnknown",
                                 "message": "Kubelet stopped posting node "
                                            "status."})
                    c["lastTransitionTime"] = now_ts()
            self._store_update(kd, o, new)
            self._reconcile()

    def compact(self):
        with self._cond:
            self._events.clear()
            self._floor = self._rv
            self._cond.notify_all()

    def deny(self, verb, resource, namespace=None):
        with self._lock:
            self._deny.append((verb, resource, namespace))

    def allow_all(self):
        with self._lock:
            self._deny = []

    def reset_counts(self):
        with self._lock:
            self.counts.clear()

    def set_fault(self, spec, match=None, times=None):
        if spec is not None:
            spec = str(spec)
            if not (spec in ("down", "refuse") or spec.startswith("slow:") or
                    spec in ("500", "503", "429", "504", "409")):
                raise ValueError("unknown fault %r" % spec)
            if spec.startswith("slow:"):
                float(spec[5:])
        with self._lock:
            was = self._fault[0] if self._fault else None
            self._fault = None if spec is None else [spec, match, times]
        if self.port is None or self._stopping.is_set():
            return
        if spec == "refuse" and was != "refuse":
            self._unlisten()
        elif spec != "refuse" and was == "refuse":
            self._listen(self.port)

    def wait_for(self, pred, timeout=5.0, interval=0.02):
        end = time.time() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.time() > end:
                raise AssertionError("k8s_sim: condition not met in %.1fs"
                                     % timeout)
            time.sleep(interval)

    # ------------------------------------------------------------- seeding
    def _seed(self, nodes):
        with self._lock:
            for ns in ("default", "kube-system", "kube-public",
                       "kube-node-lease"):
                self._create(KINDS["namespaces"], "", {
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns}}, "kube-apiserver")
            for i in range(1, nodes + 1):
                self._create(KINDS["nodes"], "", self._node_obj(i, i == 1),
                             "kubelet")
            self._create(KINDS["services"], "default", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "labels": {
                    "component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "ports": [
                    {"name": "https", "port": 443, "protocol": "TCP",
                     "targetPort": 6443}]}}, "kube-apiserver")

    def _node_obj(self, i, control_plane):
        name = "node-%d" % i
        now = now_ts()
        labels = {"beta.kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64",
                  "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        if control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
        cap = {"cpu": "4", "ephemeral-storage": "94850516Ki",
               "hugepages-1Gi": "0", "hugepages-2Mi": "0",
               "memory": "16311428Ki", "pods": "110"}
        alloc = dict(cap, **{"ephemeral-storage": "87414591124",
                             "memory": "16209028Ki"})

        def cond(t, s, reason, msg):
            return {"type": t, "status": s, "lastHeartbeatTime": now,
                    "lastTransitionTime": now, "reason": reason,
                    "message": msg}
        mid = hashlib.md5(name.encode()).hexdigest()
        spec = {"podCIDR": "10.244.%d.0/24" % (i - 1),
                "podCIDRs": ["10.244.%d.0/24" % (i - 1)]}
        if control_plane:
            spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane",
                               "effect": "NoSchedule"}]
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach":
                        "true"}},
                "spec": spec,
                "status": {
                    "capacity": cap, "allocatable": alloc, "conditions": [
                        cond("MemoryPressure", "False",
                             "KubeletHasSufficientMemory",
                             "kubelet has sufficient memory available"),
                        cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                             "kubelet has no disk pressure"),
                        cond("PIDPressure", "False", "KubeletHasSufficientPID",
                             "kubelet has sufficient PID available"),
                        cond("Ready", "True", "KubeletReady",
                             "kubelet is posting ready status")],
                    "addresses": [{"type": "InternalIP",
                                   "address": "10.0.0.%d" % (10 + i)},
                                  {"type": "Hostname", "address": name}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {
                        "machineID": mid, "systemUUID": str(uuid.UUID(mid)),
                        "bootID": str(uuid.uuid4()),
                        "kernelVersion": "6.1.0-18-amd64",
                        "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "containerRuntimeVersion": "containerd://1.7.24",
                        "kubeletVersion": "v1.32.4", "kubeProxyVersion": "",
                        "operatingSystem": "linux", "architecture": "amd64"},
                    "images": [{"names": [
                        "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a1"
                        "81d4cff9be1ac3f505666ef0e3c98fae8199917a",
                        "registry.k8s.io/pause:3.10"], "sizeBytes": 320368}]}}

    # ------------------------------------------------------- storage core
    def _key(self, kd, obj):
        m = obj["metadata"]
        return (m.get("namespace", "") if kd.namespaced else "", m["name"])

    def _bump(self):
        self._rv += 1
        return self._rv

    def _emit(self, kd, typ, obj, prev):
        self._events.append((self._rv, kd.resource, typ,
                             copy.deepcopy(obj), prev))
        while len(self._events) > self.history:
            self._floor = self._events.popleft()[0]
        self._cond.notify_all()

    def _store_new(self, kd, obj):
        obj["metadata"]["resourceVersion"] = str(self._bump())
        obj = normalize(obj)
        self._objs[kd.resource][self._key(kd, obj)] = obj
        self._emit(kd, "ADDED", obj, None)
        return obj

    def _store_update(self, kd, old, new):
        """Store new in place of old. Returns the stored object; a write that
        changes nothing keeps the RV and emits nothing."""
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        new = normalize(new)
        if new == old:
            return old
        new["metadata"]["resourceVersion"] = str(self._bump())
        self._objs[kd.resource][self._key(kd, new)] = new
        self._emit(kd, "MODIFIED", new, old)
        return new

    def _remove(self, kd, obj):
        key = self._key(kd, obj)
        cur = self._objs[kd.resource].pop(key, None)
        if cur is None:
            return None
        gone = copy.deepcopy(cur)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        self._emit(kd, "DELETED", gone, cur)
        self._owners.pop((kd.resource,) + key, None)
        if kd.resource == "pods":
            self._pod_owner.pop(key, None)
            for k in [k for k in self._logs if k[:2] == key]:
                del self._logs[k]
        return gone

    # ------------------------------------------------------- write paths
    def _check_namespace(self, kd, ns, name):
        """NamespaceLifecycle admission (runs before validation)."""
        if not kd.namespaced:
            return
        nso = self._objs["namespaces"].get(("", ns))
        if nso is None:
            raise KINDS["namespaces"].not_found(ns)
        if dig(nso, "metadata", "deletionTimestamp"):
            raise ApiError(403, "Forbidden", "%s %s is forbidden: unable to "
                           "create new content in namespace %s because it is "
                           "being terminated" % (kd.qualified, go_quote(name),
                                                 ns),
                           kd.details(name, causes=[{
                               "reason": "NamespaceTerminating",
                               "message": "namespace %s is being terminated"
                                          % ns,
                               "field": "metadata.namespace"}]))

    def _create(self, kd, ns, obj, manager, dry_run=False):
        """Create obj (external form, already decoded and checked against
        the URL). Returns the stored object (or the would-be one)."""
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise err_bad_request("metadata must be an object")
        if kd.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        self._check_namespace(kd, ns, meta.get("name") or "")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + rand_suffix(5)
        for k in ("uid", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "selfLink", "resourceVersion",
                  "generation", "managedFields"):
            meta.pop(k, None)
        obj["kind"], obj["apiVersion"] = kd.kind, kd.api_version
        self._defaults(kd, obj, None)
        errs = []
        validate_meta(kd, meta, errs)
        self._validate(kd, obj, None, errs)
        if errs:
            raise kd.invalid(meta.get("name"), errs)
        if self._key(kd, obj) in self._objs[kd.resource]:
            raise kd.already_exists(meta["name"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_ts()
        if kd.resource == "deployments":
            meta["generation"] = 1
        self._allocate(kd, obj)
        if dry_run:
            return normalize(obj)
        out = self._store_new(kd, obj)
        self._owners[(kd.resource,) + self._key(kd, out)] = {
            p: (manager, "Update") for p in owned_leaves(out, kd.kind)}
        return out

    def _update(self, kd, old, new, manager, dry_run=False, sub=None,
                owners=None):
        """PUT/PATCH of the main resource (sub None) or of /status."""
        name = old["metadata"]["name"]
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            raise err_bad_request("metadata must be an object")
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise kd.conflict(name)
        new["kind"], new["apiVersion"] = kd.kind, kd.api_version
        if sub == "status":
            st = new.get("status")
            new = copy.deepcopy(old)
            if st is not None:
                new["status"] = st
        else:
            errs = []
            om = old["metadata"]
            for f in ("name", "namespace"):
                if (meta.get(f) or "") != (om.get(f) or "") and (
                        f != "namespace" or kd.namespaced):
                    errs.append(FieldError("Invalid", "metadata." + f,
                                           meta.get(f) or "",
                                           "field is immutable"))
            if meta.get("uid") and meta["uid"] != om["uid"]:
                errs.append(FieldError("Invalid", "metadata.uid", meta["uid"],
                                       "field is immutable"))
            if errs:
                raise kd.invalid(name, errs)
            for k in ("uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation"):
                if k in om:
                    meta[k] = om[k]
                else:
                    meta.pop(k, None)
            if not kd.namespaced:
                meta.pop("namespace", None)
            meta.pop("managedFields", None)
            meta.pop("selfLink", None)
            new["status"] = copy.deepcopy(old.get("status", {}))
            self._defaults(kd, new, old)
            errs = []
            validate_meta(kd, meta, errs)
            self._validate(kd, new, old, errs)
            if errs:
                raise kd.invalid(name, errs)
            if kd.resource == "deployments":
                if new.get("spec") != old.get("spec") or dig(
                        new, "metadata", "annotations") != dig(
                        old, "metadata", "annotations"):
                    meta["generation"] = om.get("generation", 1) + 1
        if dry_run:
            out = normalize(copy.deepcopy(new))
            out["metadata"]["resourceVersion"] = old["metadata"][
                "resourceVersion"]
            return out
        out = self._store_update(kd, old, new)
        if out is not old and sub is None:
            key = (kd.resource,) + self._key(kd, out)
            if owners is not None:
                self._owners[key] = owners
            else:
                self._track_update(key, old, out, kd.kind, manager)
        return out

    def _track_update(self, key, old, new, kind, manager):
        before = owned_leaves(old, kind)
        after = owned_leaves(new, kind)
        owners = self._owners.setdefault(key, {})
        for p in list(owners):
            if p not in after:
                del owners[p]
        for p, v in after.items():
            if before.get(p) != v or p not in owners:
                owners[p] = (manager, "Update")

    def _defaults(self, kd, obj, old):
        if kd.resource == "deployments":
            default_deployment(obj)
        elif kd.resource == "pods":
            spec = obj.setdefault("spec", {})
            default_pod_spec(spec)
            if old is None:
                admit_pod(spec)
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif kd.resource == "services":
            default_service(obj)
            if old is not None:
                # the service REST keeps allocated values a PUT left out
                os_, ns_ = old.get("spec", {}), obj["spec"]
                for k in ("clusterIP", "clusterIPs", "ipFamilies",
                          "ipFamilyPolicy"):
                    if not ns_.get(k) and k in os_:
                        ns_[k] = copy.deepcopy(os_[k])
                for p in ns_.get("ports") or []:
                    if ns_.get("type") in ("NodePort", "LoadBalancer") and \
                            not p.get("nodePort"):
                        for q in os_.get("ports") or []:
                            if q.get("port") == p.get("port") and \
                                    q.get("nodePort"):
                                p["nodePort"] = q["nodePort"]
        elif kd.resource == "namespaces":
            default_namespace(obj)
            if old is None:
                obj["status"] = {"phase": "Active"}
        elif kd.resource == "nodes":
            default_node(obj)
        if old is None and kd.resource in ("deployments",):
            obj["status"] = {}
        if kd.resource == "services" and old is None:
            obj["status"] = {"loadBalancer": {}}

    def _allocate(self, kd, obj):
        if kd.resource != "services":
            return
        spec = obj["spec"]
        if spec.get("type") != "ExternalName":
            if not spec.get("clusterIP"):
                used = {dig(s, "spec", "clusterIP") for s in
                        self._objs["services"].values()}
                while True:
                    n = next(self._next_ip)
                    ip = "10.96.%d.%d" % (n // 250, n % 250 + 1)
                    if ip not in used:
                        break
                spec["clusterIP"] = ip
            if spec["clusterIP"] != "None":
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
            else:
                spec.setdefault("clusterIPs", ["None"])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    p["nodePort"] = next(self._next_node_port)

    def _validate(self, kd, obj, old, errs):
        spec = obj.get("spec") or {}
        if kd.resource == "deployments":
            sel = spec.get("selector")
            if not sel:
                errs.append(FieldError("Required", "spec.selector"))
            tlabels = dig(spec, "template", "metadata", "labels")
            if sel and not labels_match(selector_from(sel), tlabels):
                errs.append(FieldError(
                    "Invalid", "spec.template.metadata.labels",
                    GoRepr(go_map(tlabels)),
                    "`selector` does not match template `labels`"))
            r = spec.get("replicas")
            if isinstance(r, int) and r < 0:
                errs.append(FieldError("Invalid", "spec.replicas", r,
                                       "must be greater than or equal to 0"))
            ps = dig(spec, "template", "spec") or {}
            validate_containers(ps, "spec.template.spec", errs)
            rp = ps.get("restartPolicy")
            if rp and rp != "Always":
                errs.append(FieldError("NotSupported",
                                       "spec.template.spec.restartPolicy", rp,
                                       supported=["Always"]))
            if old is not None and sel and old["spec"].get("selector") != sel:
                errs.append(FieldError("Invalid", "spec.selector", GoRepr(
                    "v1.LabelSelector{MatchLabels:%s, MatchExpressions:"
                    "[]v1.LabelSelectorRequirement(nil)}" % go_map(
                        sel.get("matchLabels"))), "field is immutable"))
        elif kd.resource == "pods":
            validate_containers(spec, "spec", errs)
            if old is not None:
                a, b = copy.deepcopy(spec), copy.deepcopy(old.get("spec", {}))
                for s in (a, b):
                    for c in s.get("containers") or []:
                        c.pop("image", None)
                    s.pop("activeDeadlineSeconds", None)
                    s.pop("tolerations", None)
                if b.get("nodeName") and not a.get("nodeName"):
                    a["nodeName"] = b["nodeName"]
                if a != b:
                    errs.append(FieldError(
                        "Forbidden", "spec", detail="pod updates may not "
                        "change fields other than `spec.containers[*].image`,"
                        "`spec.initContainers[*].image`,"
                        "`spec.activeDeadlineSeconds`,`spec.tolerations` "
                        "(only additions to existing tolerations),"
                        "`spec.terminationGracePeriodSeconds` (allow it to be "
                        "set to 1 if it was previously negative)"))
        elif kd.resource == "services":
            typ = spec.get("type", "ClusterIP")
            types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
            if typ not in types:
                errs.append(FieldError("NotSupported", "spec.type", typ,
                                       supported=types))
            ports = spec.get("ports") or []
            if typ != "ExternalName" and not ports and \
                    spec.get("clusterIP") != "None":
                errs.append(FieldError("Required", "spec.ports"))
            for i, p in enumerate(ports):
                port = p.get("port") if isinstance(p, dict) else None
                if not isinstance(port, int) or not 1 <= port <= 65535:
                    errs.append(FieldError(
                        "Invalid", "spec.ports[%d].port" % i, port,
                        "must be between 1 and 65535, inclusive"))
                if len(ports) > 1 and not p.get("name"):
                    errs.append(FieldError("Required",
                                           "spec.ports[%d].name" % i))
            if old is not None:
                oip = dig(old, "spec", "clusterIP")
                if oip and spec.get("clusterIP") != oip:
                    errs.append(FieldError(
                        "Invalid", "spec.clusterIPs[0]", GoRepr(
                            "[]string{%s}" % go_quote(spec.get("clusterIP", ""))),
                        "may not change once set"))

    # ------------------------------------------------------- controllers
    def _reconcile(self):
        """Run the controllers until nothing changes (lock held)."""
        if not self.controllers:
            return
        for _ in range(20):
            changed = self._gc()
            changed |= self._deployment_controller()
            changed |= self._kubelet()
            if not changed:
                return

    def _gc(self):
        changed = False
        live = {d["metadata"]["uid"]: d for d in self._objs["deployments"].values()}
        for key, uid in list(self._pod_owner.items()):
            dep = live.get(uid)
            if dep is None and key in self._objs["pods"]:
                self._remove(KINDS["pods"], self._objs["pods"][key])
                changed = True
        for dep in list(live.values()):
            fins = dig(dep, "metadata", "finalizers") or []
            if not dig(dep, "metadata", "deletionTimestamp"):
                continue
            uid = dep["metadata"]["uid"]
            pods = [k for k, u in self._pod_owner.items() if u == uid]
            if "orphan" in fins:
                for k in pods:
                    p = self._objs["pods"].get(k)
                    del self._pod_owner[k]
                    if p:
                        np_ = copy.deepcopy(p)
                        np_["metadata"].pop("ownerReferences", None)
                        self._store_update(KINDS["pods"], p, np_)
            else:
                for k in pods:
                    if k in self._objs["pods"]:
                        self._remove(KINDS["pods"], self._objs["pods"][k])
            rest = [f for f in fins if f not in ("orphan", "foregroundDeletion")]
            if rest:
                if rest != fins:
                    nd = copy.deepcopy(dep)
                    nd["metadata"]["finalizers"] = rest
                    self._store_update(KINDS["deployments"], dep, nd)
                    changed = True
                continue
            self._remove(KINDS["deployments"], dep)
            changed = True
        return changed

    def _deployment_controller(self):
        changed = False
        pods_kd = KINDS["pods"]
        for dep in list(self._objs["deployments"].values()):
            if dig(dep, "metadata", "deletionTimestamp"):
                continue
            dname = dep["metadata"]["name"]
            uid = dep["metadata"]["uid"]
            spec = dep["spec"]
            tmpl = spec.get("template") or {}
            h = template_hash(tmpl)
            mine = [self._objs["pods"][k] for k, u in self._pod_owner.items()
                    if u == uid and k in self._objs["pods"]]
            live = [p for p in mine
                    if not dig(p, "metadata", "deletionTimestamp")]
            current = [p for p in live if dig(
                p, "metadata", "labels", "pod-template-hash") == h]
            for p in live:
                if p not in current:
                    self._remove(pods_kd, p)
                    changed = True
            want = spec.get("replicas", 1)
            if not spec.get("paused"):
                while len(current) < want:
                    current.append(self._new_pod(dep, h))
                    changed = True
                if len(current) > want:
                    current.sort(key=lambda p: (
                        p["metadata"]["creationTimestamp"],
                        p["metadata"]["name"]))
                    for p in current[want:]:
                        self._remove(pods_kd, p)
                    current = current[:want]
                    changed = True
            prev = self._dep_rev.get(uid)
            if prev is None:
                rev = 1
            elif prev[0] != h:
                rev = prev[1] + 1
            else:
                rev = prev[1]
            self._dep_rev[uid] = (h, rev)
            ready = sum(1 for p in current if dig(p, "status", "phase") ==
                        "Running")
            new = copy.deepcopy(dep)
            new["metadata"].setdefault("annotations", {})[
                "deployment.kubernetes.io/revision"] = str(rev)
            now = now_ts()
            old_conds = {c["type"]: c for c in dig(
                dep, "status", "conditions", default=[]) or []}

            def cond(typ, status, reason, msg):
                c = {"type": typ, "status": status, "lastUpdateTime": now,
                     "lastTransitionTime": now, "reason": reason,
                     "message": msg}
                o = old_conds.get(typ)
                if o and o["status"] == status:
                    c["lastTransitionTime"] = o["lastTransitionTime"]
                    if o["reason"] == reason and o["message"] == msg:
                        c["lastUpdateTime"] = o["lastUpdateTime"]
                return c
            st = {"observedGeneration": dep["metadata"].get("generation", 1)}
            for k, v in (("replicas", len(current)),
                         ("updatedReplicas", len(current)),
                         ("readyReplicas", ready),
                         ("availableReplicas", ready),
                         ("unavailableReplicas", len(current) - ready)):
                if v:
                    st[k] = v
            rs = "%s-%s" % (dname, h)
            avail = ready >= want - max(0, want // 4)
            st["conditions"] = [
                cond("Available", "True" if avail else "False",
                     "MinimumReplicasAvailable" if avail else
                     "MinimumReplicasUnavailable",
                     "Deployment has minimum availability." if avail else
                     "Deployment does not have minimum availability."),
                cond("Progressing", "True",
                     "NewReplicaSetAvailable" if ready == want else
                     "ReplicaSetUpdated",
                     ("ReplicaSet %s has successfully progressed." if
                      ready == want else "ReplicaSet %s is progressing.")
                     % go_quote(rs))]
            new["status"] = st
            if self._store_update(KINDS["deployments"], dep, new) is not dep:
                changed = True
        return changed

    def _new_pod(self, dep, h):
        ns, dname = dep["metadata"]["namespace"], dep["metadata"]["name"]
        tmpl = copy.deepcopy(dep["spec"].get("template") or {})
        tm = tmpl.get("metadata") or {}
        labels = dict(tm.get("labels") or {})
        labels["pod-template-hash"] = h
        rs = "%s-%s" % (dname, h)
        rs_uid = str(uuid.uuid5(uuid.UUID(dep["metadata"]["uid"]), h))
        while True:
            name = "%s-%s" % (rs, rand_suffix(5))
            if (ns, name) not in self._objs["pods"]:
                break
        meta = {"name": name, "generateName": rs + "-", "namespace": ns,
                "labels": labels}
        if tm.get("annotations"):
            meta["annotations"] = dict(tm["annotations"])
        meta["ownerReferences"] = [{"apiVersion": "apps/v1",
                                    "kind": "ReplicaSet", "name": rs,
                                    "uid": rs_uid, "controller": True,
                                    "blockOwnerDeletion": True}]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
               "spec": tmpl.get("spec") or {}}
        out = self._create(KINDS["pods"], ns, pod, "kube-controller-manager")
        self._pod_owner[(ns, name)] = dep["metadata"]["uid"]
        return out

    def _ready_workers(self):
        out = []
        for n in sorted(self._objs["nodes"].values(),
                        key=lambda n: n["metadata"]["name"]):
            if dig(n, "spec", "unschedulable") or any(
                    t.get("effect") == "NoSchedule"
                    for t in dig(n, "spec", "taints", default=[]) or []):
                continue
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in dig(n, "status", "conditions", default=[]) or []):
                out.append(n)
        return out

    def _kubelet(self):
        """Scheduler + kubelet: bind pending pods and make them Running."""
        changed = False
        nodes = None
        for p in list(self._objs["pods"].values()):
            if dig(p, "metadata", "deletionTimestamp"):
                continue
            if dig(p, "status", "phase") != "Pending":
                continue
            if nodes is None:
                nodes = self._ready_workers()
            node_name = dig(p, "spec", "nodeName")
            node = self._objs["nodes"].get(("", node_name)) if node_name else (
                nodes[next(self._rr) % len(nodes)] if nodes else None)
            if node is None:
                continue
            np_ = copy.deepcopy(p)
            np_["spec"]["nodeName"] = node["metadata"]["name"]
            now = now_ts()
            host_ip = next((a["address"] for a in dig(
                node, "status", "addresses", default=[])
                if a["type"] == "InternalIP"), "10.0.0.11")
            n = next(self._next_pod_ip)
            pod_ip = "10.244.%d.%d" % (n // 250 + 1, n % 250 + 2)
            statuses = []
            for c in np_["spec"].get("containers") or []:
                full = full_image(c.get("image", ""))
                statuses.append({
                    "name": c.get("name"), "state": {"running": {
                        "startedAt": now}}, "lastState": {}, "ready": True,
                    "restartCount": 0, "image": full,
                    "imageID": full.rsplit(":", 1)[0] + "@sha256:" +
                    hashlib.sha256(full.encode()).hexdigest(),
                    "containerID": "containerd://" + hashlib.sha256(
                        (p["metadata"]["uid"] + c.get("name", "")).encode()
                    ).hexdigest(), "started": True})
                key = (p["metadata"]["namespace"], p["metadata"]["name"],
                       c.get("name"))
                if key not in self._logs:
                    t = time.time()
                    self._logs[key] = [
                        (t, "%s %s line %d" % (key[1], key[2], i + 1))
                        for i in range(self.log_lines)]
            np_["status"] = {
                "phase": "Running",
                "conditions": [
                    {"type": t, "status": "True", "lastProbeTime": None,
                     "lastTransitionTime": now}
                    for t in ("PodReadyToStartContainers", "Initialized",
                              "Ready", "ContainersReady", "PodScheduled")],
                "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                "startTime": now, "containerStatuses": statuses,
                "qosClass": "BestEffort"}
            self._store_update(KINDS["pods"], p, np_)
            changed = True
        return changed

    # ----------------------------------------------------------- timers
    def _schedule(self, delay, fn):
        with self._cond:
            heapq.heappush(self._timers, (time.time() + delay,
                                          next(self._timer_seq), fn))
            self._cond.notify_all()

    def _timer_loop(self):
        last_tick = time.time()
        while not self._stopping.is_set():
            with self._cond:
                now = time.time()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers)[2])
                for fn in due:
                    try:
                        fn()
                        self._reconcile()
                    except Exception:  # keep the timer thread alive
                        traceback.print_exc()
                if self.log_tick > 0 and now - last_tick >= self.log_tick:
                    last_tick = now
                    for p in self._objs["pods"].values():
                        if dig(p, "status", "phase") != "Running":
                            continue
                        for c in p["spec"].get("containers") or []:
                            key = (p["metadata"]["namespace"],
                                   p["metadata"]["name"], c.get("name"))
                            lst = self._logs.setdefault(key, [])
                            lst.append((now, "%s %s line %d" % (
                                key[1], key[2], len(lst) + 1)))
                            del lst[:-10000]
                    self._cond.notify_all()
                wait = 0.2
                if self._timers:
                    wait = min(wait, max(0.0, self._timers[0][0] - now))
                self._cond.wait(wait)

    def _finish_pod_delete(self, ns, name, uid):
        p = self._objs["pods"].get((ns, name))
        if p and p["metadata"]["uid"] == uid:
            self._remove(KINDS["pods"], p)

    def _finish_namespace_delete(self, name, uid):
        nso = self._objs["namespaces"].get(("", name))
        if not nso or nso["metadata"]["uid"] != uid:
            return
        for kd in KINDS.values():
            if kd.namespaced:
                for (n, _), o in list(self._objs[kd.resource].items()):
                    if n == name:
                        self._remove(kd, o)
        self._remove(KINDS["namespaces"], nso)

    # ------------------------------------------------------ request entry
    def _fault_for(self, path):
        with self._lock:
            f = self._fault
            if f is None or f[0] == "refuse" or (f[1] and f[1] not in path):
                return None
            if f[2] is not None:
                f[2] -= 1
                if f[2] <= 0:
                    self._fault = None
            return f[0]

    def _accept_fault(self):
        """'down' without a path filter: drop new connections at once."""
        with self._lock:
            f = self._fault
            return f is not None and f[0] == "down" and not f[1] and f[2] is None

    def handle(self, method, target, headers, body):
        """Serve one request. headers: a mapping with .get (case-insensitive
        for http.client messages). Returns Response, Stream or DROP."""
        parts = urllib.parse.urlsplit(target)
        path = parts.path or "/"
        q = {}
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            q.setdefault(k, v)
        fault = self._fault_for(path + ("?" + parts.query if parts.query else ""))
        if fault == "down":
            return DROP
        if fault and fault.startswith("slow:"):
            if self._stopping.wait(float(fault[5:])):
                return DROP
            fault = None
        try:
            auth = headers.get("Authorization")
            public = path in ("/version", "/healthz", "/livez", "/readyz") or \
                re.match(r"^/(healthz|livez|readyz)/", path)
            if self.token is not None:
                parts = (auth or "").strip().split(None, 1)
                good = len(parts) == 2 and parts[0].lower() == "bearer" and \
                    parts[1].strip() == self.token
                if (auth is not None and not good) or (auth is None and
                                                       not public):
                    return self._error(ApiError(401, "Unauthorized",
                                                "Unauthorized"), q, headers)
            if fault:
                return self._fault_response(fault, path, headers, q)
            return self._route(method, path, q, headers, body)
        except ApiError as e:
            return self._error(e, q, headers)
        except Exception as e:  # a simulator bug: answer like the apiserver
            traceback.print_exc()
            return self._error(ApiError(
                500, "InternalError", "Internal error occurred: %s" % e,
                make_details(causes=[{"message": str(e)}])), q, headers)

    def _pretty(self, q, headers):
        ua = headers.get("User-Agent") or ""
        return q.get("pretty") in ("true", "1") or ua.startswith(
            ("curl", "Wget", "Mozilla/5.0"))

    def _json(self, code, obj, q, headers, extra=None):
        return Response(code, encode_json(obj, self._pretty(q, headers)),
                        "application/json", extra)

    def _error(self, e, q, headers):
        extra = list(e.headers)
        if e.code == 403:
            extra.append(("X-Content-Type-Options", "nosniff"))
        return self._json(e.code, e.status(), q, headers, extra)

    def _fault_response(self, fault, path, headers, q):
        if re.match(r"^/(healthz|livez|readyz)", path):
            which = path.strip("/").split("/")[0]
            return Response(500, ("[-]etcd failed: reason withheld\n%s check "
                                  "failed\n" % which).encode(),
                            "text/plain; charset=utf-8",
                            [("X-Content-Type-Options", "nosniff")])
        code = int(fault)
        if code == 409:
            m = re.match(r"^/apis?/(?:apps/)?v1/namespaces/[^/]+/([^/]+)/([^/]+)",
                         path) or re.match(r"^/api/v1/([^/]+)/([^/]+)", path)
            if m and m.group(1) in KINDS:
                raise KINDS[m.group(1)].conflict(m.group(2))
            raise ApiError(409, "Conflict", "Operation cannot be fulfilled: "
                           + OPTIMISTIC_LOCK_MSG)
        if code == 429:
            raise ApiError(429, "TooManyRequests", "Too many requests, please "
                           "try again later.", make_details(retry=1),
                           [("Retry-After", "1")])
        if code == 503:
            raise ApiError(503, "ServiceUnavailable", "the server is currently "
                           "unable to handle the request")
        if code == 504:
            raise ApiError(504, "Timeout", "Timeout: request did not complete "
                           "within the allowed duration")
        raise ApiError(500, "InternalError", "Internal error occurred: "
                       "injected fault", make_details(causes=[
                           {"message": "injected fault"}]))

    def _count(self, method, what, verb=None):
        with self._lock:
            self.counts[(method, what)] += 1
            if verb:
                self.counts[(verb, what)] += 1

    # ------------------------------------------------------------ routing
    def _route(self, method, path, q, headers, body):
        segs = [urllib.parse.unquote(s) for s in path.strip("/").split("/")] \
            if path.strip("/") else []
        if method not in ("GET", "HEAD") and (not segs or segs[0] not in (
                "api", "apis")):
            return self._not_found_text()
        if path == "/version":
            self._count(method, path)
            return self._json(200, VERSION_INFO, q, headers)
        if segs and segs[0] in ("healthz", "livez", "readyz"):
            self._count(method, "/" + segs[0])
            return self._health(segs, q)
        if segs[:2] == ["openapi", "v3"]:
            self._count(method, path)
            if len(segs) == 2:
                return self._json(200, {"paths": {
                    ("api/v1" if gv == "v1" else "apis/" + gv): {
                        "serverRelativeURL": "/openapi/v3/%s?hash=%s" % (
                            "api/v1" if gv == "v1" else "apis/" + gv,
                            OPENAPI_HASHES[gv])} for gv in GROUP_VERSIONS}},
                    q, headers)
            gv = "/".join(segs[3:]) if segs[2] == "apis" else (
                "v1" if segs[2:] == ["api", "v1"] else None)
            if gv in OPENAPI_DOCS:
                return Response(200, OPENAPI_DOCS[gv], "application/json",
                                [("Cache-Control", "public, immutable"),
                                 ("Etag", '"%s"' % OPENAPI_HASHES[gv])])
            return self._not_found_text()
        if segs == ["api"] or segs == ["apis"]:
            self._count(method, path)
            return self._discovery_root(segs[0], q, headers)
        if segs == ["api", "v1"]:
            self._count(method, path)
            return self._json(200, api_resource_list("v1"), q, headers)
        if segs == ["apis", "apps"]:
            self._count(method, path)
            return self._json(200, {"kind": "APIGroup", "apiVersion": "v1",
                                    "name": "apps", "versions": [
                                        {"groupVersion": "apps/v1",
                                         "version": "v1"}],
                                    "preferredVersion": {
                                        "groupVersion": "apps/v1",
                                        "version": "v1"}}, q, headers)
        if segs == ["apis", "apps", "v1"]:
            self._count(method, path)
            return self._json(200, api_resource_list("apps/v1"), q, headers)
        if segs[:2] == ["api", "v1"] and len(segs) > 2:
            return self._resource(method, "v1", segs[2:], q, headers, body)
        if segs[:3] == ["apis", "apps", "v1"] and len(segs) > 3:
            return self._resource(method, "apps/v1", segs[3:], q, headers, body)
        return self._not_found_text()

    def _not_found_text(self):
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8",
                        [("X-Content-Type-Options", "nosniff")])

    def _health(self, segs, q):
        which = segs[0]
        checks = ["ping", "log", "etcd", "poststarthook/start-apiextensions-"
                  "informers", "poststarthook/bootstrap-controller"]
        if which == "readyz":
            checks += ["informer-sync", "shutdown"]
        if len(segs) > 1:
            if "/".join(segs[1:]) not in checks:
                return self._not_found_text()
            body = "ok"
        elif "verbose" in q:
            body = "".join("[+]%s ok\n" % c for c in checks) + \
                "%s check passed\n" % which
        else:
            body = "ok"
        return Response(200, body.encode(), "text/plain; charset=utf-8",
                        [("X-Content-Type-Options", "nosniff")])

    def _discovery_root(self, which, q, headers):
        accept = headers.get("Accept") or ""
        for version in ("v2", "v2beta1"):
            for part in accept.split(","):
                params = [p.strip() for p in part.split(";")]
                if "g=apidiscovery.k8s.io" in params and "v=" + version in \
                        params and "as=APIGroupDiscoveryList" in params:
                    body = discovery_aggregated(
                        "core" if which == "api" else "groups", version)
                    return Response(
                        200, encode_json(body, self._pretty(q, headers)),
                        "application/json;g=apidiscovery.k8s.io;v=%s;"
                        "as=APIGroupDiscoveryList" % version,
                        [("Vary", "Accept")])
        if which == "api":
            return self._json(200, {"kind": "APIVersions", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": [{
                                        "clientCIDR": "0.0.0.0/0",
                                        "serverAddress": "%s:%d" % (
                                            self.host, self.port or 0)}]},
                              q, headers, [("Vary", "Accept")])
        return self._json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                "groups": [{"name": "apps", "versions": [
                                    {"groupVersion": "apps/v1",
                                     "version": "v1"}],
                                    "preferredVersion": {
                                        "groupVersion": "apps/v1",
                                        "version": "v1"}}]},
                          q, headers, [("Vary", "Accept")])

    def _resource(self, method, gv, segs, q, headers, body):
        ns = name = sub = None
        if segs[0] == "namespaces" and len(segs) >= 3 and not (
                len(segs) == 3 and segs[2] in ("status", "finalize")):
            if len(segs) > 5:
                return self._not_found_text()
            ns, res = segs[1], segs[2]
            name = segs[3] if len(segs) > 3 else None
            sub = segs[4] if len(segs) > 4 else None
            kd = KINDS.get(res)
            if kd is None or not kd.namespaced:
                return self._not_found_text()
        else:
            if len(segs) > 3:
                return self._not_found_text()
            res = segs[0]
            name = segs[1] if len(segs) > 1 else None
            sub = segs[2] if len(segs) > 2 else None
            kd = KINDS.get(res)
            if kd is None or (kd.namespaced and name is not None):
                return self._not_found_text()
        if kd.api_version != gv or (sub is not None and
                                    sub not in kd.subresources):
            return self._not_found_text()
        if name == "":
            return self._not_found_text()
        watch = "watch" in q and q["watch"].lower() not in ("0", "f", "false")
        if method in ("GET", "HEAD"):
            verb = "watch" if watch else ("get" if name else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete" if name else "deletecollection"}.get(
                        method)
        what = kd.resource + ("/" + sub if sub else "")
        allowed = {None: {"GET", "HEAD", "POST", "DELETE"} if name is None
                   else {"GET", "HEAD", "PUT", "PATCH", "DELETE"},
                   "scale": {"GET", "HEAD", "PUT", "PATCH"},
                   "status": {"GET", "HEAD", "PUT", "PATCH"},
                   "log": {"GET", "HEAD"}}[sub]
        if name is None and ns is None and kd.namespaced:
            allowed = {"GET", "HEAD"}
        if verb is None or method not in allowed:
            raise ApiError(405, "MethodNotAllowed",
                           "%s is not supported on resources of kind %s" % (
                               verb or method.lower(), go_quote(kd.qualified)),
                           make_details(group=kd.group, kind=kd.resource))
        self._authorize(verb, kd, what, ns, name)
        self._count(method, what, verb)
        if ns is None and not kd.namespaced:
            ns = ""
        dry = q.get("dryRun")
        if dry is not None and dry != "All" and method != "GET":
            opts = {"POST": "CreateOptions", "PUT": "UpdateOptions",
                    "PATCH": "PatchOptions", "DELETE": "DeleteOptions"}[method]
            raise err_options_invalid(opts, [FieldError(
                "NotSupported", "dryRun", GoRepr("[]string{%s}" % go_quote(dry)),
                supported=["All"])])
        fv = q.get("fieldValidation")
        if fv is not None and fv not in ("Ignore", "Warn", "Strict", ""):
            raise err_bad_request("invalid fieldValidation directive: " + fv)
        if sub == "log":
            return self._pod_log(ns, name, q)
        if method in ("GET", "HEAD"):
            if watch:
                return self._watch(kd, ns, name, q, headers)
            if name is None:
                return self._list(kd, ns, q, headers)
            return self._get(kd, ns, name, sub, q, headers)
        manager = q.get("fieldManager") or (headers.get("User-Agent") or
                                            "unknown").split("/")[0]
        if len(q.get("fieldManager") or "") > 128:
            raise err_options_invalid(
                {"POST": "CreateOptions", "PUT": "UpdateOptions",
                 "PATCH": "PatchOptions"}.get(method, "CreateOptions"),
                [FieldError("TooLong", "fieldManager", detail="may not be "
                            "longer than 128")])
        if method == "POST":
            return self._http_create(kd, ns, q, headers, body, manager)
        if method == "PUT":
            return self._http_put(kd, ns, name, sub, q, headers, body, manager)
        if method == "PATCH":
            return self._http_patch(kd, ns, name, sub, q, headers, body,
                                    manager)
        if name is None:
            return self._delete_collection(kd, ns, q, headers, body)
        return self._http_delete(kd, ns, name, q, headers, body)

    def _authorize(self, verb, kd, what, ns, name):
        with self._lock:
            rules = list(self._deny)
        for v, r, n in rules:
            if v in ("*", verb) and r in ("*", what) and n in (None, ns):
                if name:
                    prefix = "%s %s is forbidden" % (kd.qualified,
                                                     go_quote(name))
                else:
                    prefix = "%s is forbidden" % kd.qualified
                scope = ("in the namespace %s" % go_quote(ns)) if ns else \
                    "at the cluster scope"
                raise ApiError(403, "Forbidden",
                               "%s: User %s cannot %s resource %s in API group "
                               "%s %s" % (prefix, go_quote(self.user), verb,
                                          go_quote(what), go_quote(kd.group),
                                          scope), kd.details(name))

    # ------------------------------------------------------------- bodies
    def _decode(self, kd, headers, body, q, allow_yaml=True, patch=False):
        ctype = (headers.get("Content-Type") or "application/json").split(
            ";")[0].strip().lower()
        if not patch and ctype not in ("application/json", "application/yaml",
                                       "*/*", ""):
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - "
                           "accepted media types include: application/json, "
                           "application/yaml")
        text = body.decode("utf-8", "replace")
        try:
            obj = json.loads(text)
        except ValueError as e:
            if ctype in ("application/yaml", APPLY_TYPE) and allow_yaml:
                try:
                    return parse_yaml(text)
                except ValueError as ye:
                    raise err_bad_request("error converting YAML to JSON: %s"
                                          % ye)
            if patch:
                raise err_bad_request("error decoding patch: %s" % e)
            raise err_bad_request("couldn't get version/kind; json parse "
                                  "error: %s" % e)
        return obj

    def _check_object(self, kd, obj, ns, q):
        if not isinstance(obj, dict):
            raise err_bad_request("couldn't get version/kind; json parse "
                                  "error: json: cannot unmarshal %s into Go "
                                  "value of type struct" % type(obj).__name__)
        av = obj.get("apiVersion")
        if av and av != kd.api_version:
            raise err_bad_request("the API version in the data (%s) does not "
                                  "match the expected API version (%s)" % (
                                      av, kd.api_version))
        k = obj.get("kind")
        if k and k != kd.kind:
            raise err_bad_request("the kind in the data (%s) does not match "
                                  "the expected kind (%s)" % (k, kd.kind))
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise err_bad_request("metadata must be an object")
        bns = (meta or {}).get("namespace")
        if kd.namespaced and bns and bns != ns:
            raise err_bad_request("the namespace of the provided object does "
                                  "not match the namespace sent on the request")
        return self._field_validation(kd, obj, q)

    def _field_validation(self, kd, obj, q, patch=False):
        mode = q.get("fieldValidation") or "Warn"
        unknown = unknown_fields(kd, obj) if mode != "Ignore" else []
        if not unknown:
            return []
        if mode == "Strict":
            msg = ", ".join("unknown field %s" % go_quote(u) for u in unknown)
            if patch:
                v = json.dumps(obj, separators=(",", ":"))
                fe = FieldError("Invalid", "patch", v,
                                "strict decoding error: " + msg)
                raise err_invalid("", "", "", "", [fe])
            raise err_bad_request("%s in version %s cannot be handled as a %s: "
                                  "strict decoding error: %s" % (
                                      kd.kind, go_quote(kd.version), kd.kind,
                                      msg))
        return [("Warning", '299 - %s' % go_quote("unknown field " + go_quote(u)))
                for u in unknown]

    # ------------------------------------------------------------ handlers
    def _get_obj(self, kd, ns, name):
        return self._objs[kd.resource].get((ns if kd.namespaced else "", name))

    def _wait_rv(self, q):
        """A GET/LIST resourceVersion newer than the store waits up to 3 s,
        then 504 (3.2)."""
        rv = q.get("resourceVersion")
        if not rv or rv == "0":
            return
        try:
            want = int(rv)
        except ValueError:
            raise ApiError(400, "BadRequest", "invalid resource version: %s"
                           % rv)
        end = time.time() + 3
        with self._cond:
            while self._rv < want and time.time() < end:
                self._cond.wait(end - time.time())
            if self._rv < want:
                raise ApiError(504, "Timeout", "Timeout: Too large resource "
                               "version: %d, current: %d" % (want, self._rv),
                               make_details(causes=[{
                                   "reason": "ResourceVersionTooLarge",
                                   "message": "Too large resource version"}],
                                   retry=1))

    def _wants_table(self, headers):
        accept = headers.get("Accept") or ""
        return "as=Table" in accept.replace(" ", "")

    def _check_accept(self, headers):
        accept = (headers.get("Accept") or "").lower()
        if accept and "json" not in accept and "*/*" not in accept and \
                "application/*" not in accept:
            raise ApiError(406, "NotAcceptable", "only the following media "
                           "types are accepted: application/json, "
                           "application/yaml")

    def _get(self, kd, ns, name, sub, q, headers):
        self._check_accept(headers)
        self._wait_rv(q)
        with self._lock:
            o = self._get_obj(kd, ns, name)
            if o is None:
                raise kd.not_found(name)
            if sub == "scale":
                return self._json(200, self._scale_of(o), q, headers)
            if self._wants_table(headers) and sub is None:
                return self._json(200, table_of(
                    kd.resource, [o], o["metadata"]["resourceVersion"],
                    q.get("includeObject", "Metadata")), q, headers)
            return self._json(200, o, q, headers)

    def _list(self, kd, ns, q, headers):
        self._check_accept(headers)
        if q.get("resourceVersionMatch") and not q.get("resourceVersion"):
            raise err_options_invalid("ListOptions", [FieldError(
                "Forbidden", "resourceVersionMatch", detail="resourceVersionMatch "
                "is forbidden unless resourceVersion is provided")])
        cont = q.get("continue")
        if cont and q.get("resourceVersion") not in (None, ""):
            raise err_bad_request("specifying resource version is not allowed "
                                  "when using continue")
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(kd, q.get("fieldSelector"))
        limit = 0
        if q.get("limit"):
            try:
                limit = max(0, int(q["limit"]))
            except ValueError:
                raise err_bad_request("invalid limit: " + q["limit"])
        self._wait_rv(q)
        with self._lock:
            start, list_rv = None, self._rv
            if cont:
                try:
                    raw = cont + "=" * (-len(cont) % 4)
                    tok = json.loads(base64.urlsafe_b64decode(raw))
                    start, list_rv = tok["start"], int(tok["rv"])
                    if tok.get("v") != "meta.k8s.io/v1":
                        raise ValueError("bad version")
                except Exception as e:
                    raise err_bad_request("invalid continue token: %s" % e)
                if list_rv < self._floor:
                    raise ApiError(410, "Expired", "The provided continue "
                                   "parameter is too old to display a "
                                   "consistent list result. You can start a "
                                   "new list without the continue parameter.")
            items = []
            for key, o in sorted(self._objs[kd.resource].items(),
                                 key=lambda kv: "%s/%s" % kv[0]):
                skey = "%s/%s" % key if kd.namespaced else key[1]
                if ns and key[0] != ns:
                    continue
                if start is not None and skey < start:
                    continue
                if not labels_match(lsel, dig(o, "metadata", "labels")) or \
                        not fields_match(fsel, o):
                    continue
                items.append((skey, o))
            next_tok, remaining = None, None
            if limit and len(items) > limit:
                last = items[limit - 1][0]
                next_tok = base64.urlsafe_b64encode(json.dumps(
                    {"v": "meta.k8s.io/v1", "rv": list_rv,
                     "start": last + "\x00"}, separators=(",", ":")).encode()
                ).decode().rstrip("=")
                if not lsel and not fsel:
                    remaining = len(items) - limit
                items = items[:limit]
            objs = [o for _, o in items]
            if self._wants_table(headers):
                return self._json(200, table_of(
                    kd.resource, objs, str(list_rv),
                    q.get("includeObject", "Metadata"), next_tok, remaining),
                    q, headers)
            meta = {"resourceVersion": str(list_rv)}
            if next_tok:
                meta["continue"] = next_tok
            if remaining is not None:
                meta["remainingItemCount"] = remaining
            out = {"kind": kd.kind + "List", "apiVersion": kd.api_version,
                   "metadata": meta, "items": []}
            for o in objs:
                it = {k: v for k, v in o.items()
                      if k not in ("kind", "apiVersion")}
                out["items"].append(it)
            return self._json(200, out, q, headers)

    def _scale_of(self, d):
        m = d["metadata"]
        r = d["spec"].get("replicas", 0)
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": m["name"], "namespace": m["namespace"],
                             "uid": m["uid"],
                             "resourceVersion": m["resourceVersion"],
                             "creationTimestamp": m["creationTimestamp"]},
                "spec": {"replicas": r} if r else {},
                "status": {"replicas": dig(d, "status", "replicas", default=0),
                           "selector": selector_string(selector_from(
                               d["spec"].get("selector") or {}))}}

    def _http_create(self, kd, ns, q, headers, body, manager):
        obj = self._decode(kd, headers, body, q)
        warnings = self._check_object(kd, obj, ns, q)
        dry = q.get("dryRun") == "All"
        with self._lock:
            out = self._create(kd, ns, obj, manager, dry_run=dry)
            resp = self._json(201, out, q, headers, warnings)
            if not dry:
                self._reconcile()
            return resp

    def _http_put(self, kd, ns, name, sub, q, headers, body, manager):
        obj = self._decode(kd, headers, body, q)
        if sub == "scale":
            return self._write_scale(kd, ns, name, obj, q, headers, manager)
        warnings = self._check_object(kd, obj, ns, q)
        bname = dig(obj, "metadata", "name")
        if bname and bname != name:
            raise err_bad_request("the name of the object (%s) does not match "
                                  "the name on the URL (%s)" % (bname, name))
        obj.setdefault("metadata", {})["name"] = name
        dry = q.get("dryRun") == "All"
        with self._lock:
            old = self._get_obj(kd, ns, name)
            if old is None:
                raise kd.not_found(name)
            out = self._update(kd, old, obj, manager, dry, sub)
            resp = self._json(200, out, q, headers, warnings)
            if not dry:
                self._reconcile()
            return resp

    def _write_scale(self, kd, ns, name, scale, q, headers, manager):
        if not isinstance(scale, dict):
            raise err_bad_request("couldn't get version/kind; json parse error")
        replicas = dig(scale, "spec", "replicas", default=0)
        dry = q.get("dryRun") == "All"
        with self._lock:
            d = self._get_obj(kd, ns, name)
            if d is None:
                raise kd.not_found(name)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or \
                    replicas < 0:
                raise err_invalid("Scale.autoscaling", "Scale", "autoscaling",
                                  name, [FieldError(
                                      "Invalid", "spec.replicas", replicas,
                                      "must be greater than or equal to 0")])
            rv = dig(scale, "metadata", "resourceVersion")
            if rv and rv != d["metadata"]["resourceVersion"]:
                raise kd.conflict(name)
            uid = dig(scale, "metadata", "uid")
            if uid and uid != d["metadata"]["uid"]:
                raise kd.conflict(name, "Precondition failed: UID in "
                                  "precondition: %s, UID in object meta: %s"
                                  % (uid, d["metadata"]["uid"]),
                                  qualified=kd.qualified + "/scale")
            new = copy.deepcopy(d)
            new["spec"]["replicas"] = replicas
            new["metadata"].pop("resourceVersion", None)
            out = self._update(kd, d, new, manager, dry)
            resp = self._json(200, self._scale_of(out), q, headers)
            if not dry:
                self._reconcile()
            return resp

    def _http_patch(self, kd, ns, name, sub, q, headers, body, manager):
        # one critical section: a patch without an RV precondition must not
        # fail because another writer got in between read and write
        with self._lock:
            return self._patch_locked(kd, ns, name, sub, q, headers, body,
                                      manager)

    def _patch_locked(self, kd, ns, name, sub, q, headers, body, manager):
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in PATCH_TYPES:
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - "
                           "accepted media types include: "
                           "application/json-patch+json, "
                           "application/merge-patch+json, "
                           "application/strategic-merge-patch+json, "
                           "application/apply-patch+yaml")
        is_apply = ctype == APPLY_TYPE
        if "force" in q and not is_apply:
            raise err_options_invalid("PatchOptions", [FieldError(
                "Forbidden", "force",
                detail="may not be specified for non-apply patch")])
        if is_apply and not q.get("fieldManager"):
            raise err_options_invalid("PatchOptions", [FieldError(
                "Required", "fieldManager", detail="is required for apply "
                "patch")])
        patch = self._decode(kd, headers, body, q, patch=True)
        if is_apply and isinstance(patch, dict) and dig(
                patch, "metadata", "managedFields") is not None:
            raise err_bad_request("metadata.managedFields must be nil")
        dry = q.get("dryRun") == "All"
        force = (q.get("force") or "").lower() in ("true", "1")
        with self._lock:
            cur = self._get_obj(kd, ns, name)
            if cur is None:
                if is_apply and sub is None:
                    if not isinstance(patch, dict):
                        raise err_bad_request("error decoding patch: not an "
                                              "object")
                    warnings = self._check_object(kd, patch, ns, q)
                    obj = copy.deepcopy(patch)
                    bname = dig(obj, "metadata", "name")
                    if bname and bname != name:
                        raise err_bad_request(
                            "the name of the object (%s) does not match the "
                            "name on the URL (%s)" % (bname, name))
                    obj.setdefault("metadata", {})["name"] = name
                    out = self._create(kd, ns, obj, manager, dry)
                    if not dry:
                        key = (kd.resource,) + self._key(kd, out)
                        self._owners[key] = {
                            p: (manager, "Apply") for p in owned_leaves(
                                strip_directives(patch), kd.kind)}
                    resp = self._json(201, out, q, headers, warnings)
                    if not dry:
                        self._reconcile()
                    return resp
                raise kd.not_found(name)
            base = self._scale_of(cur) if sub == "scale" else copy.deepcopy(cur)
            owners = None
            try:
                if ctype == "application/json-patch+json":
                    patched = json_patch(base, patch)
                elif not isinstance(patch, dict):
                    raise err_bad_request("error decoding patch: json: cannot "
                                          "unmarshal into Go value of type "
                                          "map[string]interface {}")
                elif ctype == "application/merge-patch+json":
                    patched = merge_patch(base, patch)
                elif ctype == "application/strategic-merge-patch+json":
                    patched = strategic_merge(base, patch, "Scale" if
                                              sub == "scale" else kd.kind)
                else:
                    patched, owners = self._apply(kd, cur, base, patch, manager,
                                                  force, sub)
            except PatchError:
                raise ApiError(422, "Invalid", "the server rejected our request "
                               "due to an error in our request", {})
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the server rejected our request "
                               "due to an error in our request", {})
            rv = dig(patched, "metadata", "resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise kd.conflict(name)
        if sub == "scale":
            return self._write_scale(kd, ns, name, patched, q, headers, manager)
        warnings = self._field_validation(kd, patched, q, patch=True)
        with self._lock:
            out = self._update(kd, cur, patched, manager, dry, sub, owners)
            resp = self._json(200, out, q, headers, warnings)
            if not dry:
                self._reconcile()
            return resp

    def _apply(self, kd, cur, base, cfg, manager, force, sub):
        """Server-side apply: merge cfg into the live object, with field
        ownership (conflicts unless force) and removal of fields this
        manager applied before but no longer sends."""
        if not isinstance(cfg, dict):
            raise err_bad_request("error decoding patch: not an object")
        kind = "Scale" if sub == "scale" else kd.kind
        if sub is not None:
            return strategic_merge(base, cfg, kind), None
        key = (kd.resource,) + self._key(kd, cur)
        owners = dict(self._owners.get(key, {}))
        me = (manager, "Apply")
        want = owned_leaves(cfg, kind)
        live = owned_leaves(cur, kind)
        conflicts = sorted((p, owners[p]) for p in want
                           if p in owners and owners[p] != me and
                           p in live and live[p] != want[p])
        if conflicts and not force:
            causes = [{"reason": "FieldManagerConflict",
                       "message": "conflict with %s" % self._print_manager(
                           m, kd), "field": path_string(p)}
                      for p, m in conflicts]
            if len(conflicts) == 1:
                msg = "Apply failed with 1 conflict: conflict with %s: %s" % (
                    self._print_manager(conflicts[0][1], kd),
                    path_string(conflicts[0][0]))
            else:
                lines = []
                for m in sorted({m for _, m in conflicts}):
                    lines.append("conflicts with %s:" % self._print_manager(
                        m, kd))
                    lines += ["- " + path_string(p) for p, mm in conflicts
                              if mm == m]
                msg = "Apply failed with %d conflicts: %s" % (
                    len(conflicts), "\n".join(lines))
            raise ApiError(409, "Conflict", msg, make_details(causes=causes))
        merged = strategic_merge(base, cfg, kind)
        removed = False
        for p, m in list(owners.items()):
            if m == me and p not in want:
                remove_path(merged, p)
                del owners[p]
                removed = True
        if removed:
            prune_empty(merged)
        for p in want:
            owners[p] = me
        return merged, owners

    def _print_manager(self, m, kd):
        # conflict.go printManager: Update managers show their API version
        name, op = m
        if op == "Update":
            return "%s using %s" % (go_quote(name), kd.api_version)
        return go_quote(name)

    def _delete_options(self, q, body):
        opts = {}
        if body and body.strip():
            try:
                opts = json.loads(body)
            except ValueError as e:
                raise err_bad_request("error decoding DeleteOptions: %s" % e)
            if not isinstance(opts, dict):
                raise err_bad_request("error decoding DeleteOptions")
        else:
            for k in ("propagationPolicy", "gracePeriodSeconds",
                      "orphanDependents"):
                if k in q:
                    opts[k] = q[k]
            if "gracePeriodSeconds" in opts:
                try:
                    opts["gracePeriodSeconds"] = int(opts["gracePeriodSeconds"])
                except ValueError:
                    raise err_bad_request("invalid gracePeriodSeconds")
            if q.get("dryRun"):
                opts["dryRun"] = [q["dryRun"]]
        dry = opts.get("dryRun") or []
        if any(d != "All" for d in dry):
            raise err_options_invalid("DeleteOptions", [FieldError(
                "NotSupported", "dryRun", GoRepr("[]string{%s}" % ", ".join(
                    go_quote(d) for d in dry)), supported=["All"])])
        pp = opts.get("propagationPolicy")
        if pp is not None and pp not in ("Orphan", "Background", "Foreground"):
            raise err_options_invalid("DeleteOptions", [FieldError(
                "NotSupported", "propagationPolicy", pp,
                supported=["Foreground", "Background", "Orphan", "nil"])])
        if opts.get("orphanDependents") in (True, "true") and pp is None:
            opts["propagationPolicy"] = "Orphan"
        return opts

    def _http_delete(self, kd, ns, name, q, headers, body):
        opts = self._delete_options(q, body)
        dry = bool(opts.get("dryRun"))
        with self._lock:
            o = self._get_obj(kd, ns, name)
            if o is None:
                raise kd.not_found(name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != o["metadata"]["uid"]:
                raise kd.conflict(name, "Precondition failed: UID in "
                                  "precondition: %s, UID in object meta: %s"
                                  % (pre["uid"], o["metadata"]["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != \
                    o["metadata"]["resourceVersion"]:
                raise kd.conflict(name, "Precondition failed: "
                                  "ResourceVersion in precondition: %s, "
                                  "ResourceVersion in object meta: %s" % (
                                      pre["resourceVersion"],
                                      o["metadata"]["resourceVersion"]))
            code, out = self._delete_obj(kd, o, opts, dry)
            resp = self._json(code, out, q, headers)
            if not dry:
                self._reconcile()
            return resp

    def _delete_obj(self, kd, o, opts, dry):
        """Returns (http code, body) for deleting o (lock held)."""
        name = o["metadata"]["name"]
        if kd.resource == "namespaces":
            if name in SYSTEM_NAMESPACES:
                raise ApiError(403, "Forbidden", "namespaces %s is forbidden: "
                               "this namespace may not be deleted" %
                               go_quote(name), kd.details(name))
            if dry:
                return 200, o
            if dig(o, "metadata", "deletionTimestamp"):
                return 200, o
            new = copy.deepcopy(o)
            new["metadata"]["deletionTimestamp"] = now_ts()
            new["status"]["phase"] = "Terminating"
            out = self._store_update(kd, o, new)
            uid = o["metadata"]["uid"]
            self._schedule(self.ns_delete_delay,
                           lambda: self._finish_namespace_delete(name, uid))
            return 200, out
        pp = opts.get("propagationPolicy")
        if kd.resource == "pods":
            grace = opts.get("gracePeriodSeconds")
            if grace is None:
                grace = o["spec"].get("terminationGracePeriodSeconds", 30)
            if dry:
                return 200, o
            if dig(o, "spec", "nodeName") and grace > 0 and dig(
                    o, "status", "phase") not in ("Succeeded", "Failed"):
                if dig(o, "metadata", "deletionTimestamp"):
                    return 200, o
                new = copy.deepcopy(o)
                new["metadata"]["deletionTimestamp"] = now_ts(
                    time.time() + grace)
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                out = self._store_update(kd, o, new)
                ns, uid = o["metadata"]["namespace"], o["metadata"]["uid"]
                self._schedule(self.pod_delete_delay,
                               lambda: self._finish_pod_delete(ns, name, uid))
                return 200, out
            return 200, self._remove(kd, o)
        if kd.resource == "deployments" and pp in ("Foreground", "Orphan"):
            if dry:
                return 200, o
            new = copy.deepcopy(o)
            new["metadata"]["deletionTimestamp"] = now_ts()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            fins = new["metadata"].setdefault("finalizers", [])
            f = "foregroundDeletion" if pp == "Foreground" else "orphan"
            if f not in fins:
                fins.append(f)
            return 200, self._store_update(kd, o, new)
        if dry:
            gone = o
        else:
            gone = self._remove(kd, o)
        if kd.returns_object:
            return 200, gone
        return 200, status_obj("Success", details=kd.details(
            name, uid=o["metadata"]["uid"]))

    def _delete_collection(self, kd, ns, q, headers, body):
        opts = self._delete_options(q, body)
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(kd, q.get("fieldSelector"))
        dry = bool(opts.get("dryRun"))
        with self._lock:
            items = []
            for key, o in sorted(self._objs[kd.resource].items()):
                if ns and key[0] != ns:
                    continue
                if labels_match(lsel, dig(o, "metadata", "labels")) and \
                        fields_match(fsel, o):
                    _, out = self._delete_obj(kd, o, opts, dry)
                    items.append({k: v for k, v in (
                        out if out.get("kind") != "Status" else o).items()
                        if k not in ("kind", "apiVersion")})
            resp = self._json(200, {"kind": kd.kind + "List",
                                    "apiVersion": kd.api_version,
                                    "metadata": {"resourceVersion": str(
                                        self._rv)}, "items": items}, q, headers)
            if not dry:
                self._reconcile()
            return resp

    # ------------------------------------------------------------- watch
    def _watch(self, kd, ns, name, q, headers):
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(kd, q.get("fieldSelector"))
        if name:
            fsel.append(("metadata.name", "=", name))
        rv = q.get("resourceVersion") or ""
        bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
        table = self._wants_table(headers)
        try:
            start = int(rv) if rv not in ("", "0") else None
        except ValueError:
            raise err_bad_request("invalid resource version: " + rv)
        try:
            timeout = float(q["timeoutSeconds"]) if q.get(
                "timeoutSeconds") else random.uniform(1800, 3600)
        except ValueError:
            raise err_bad_request("invalid timeoutSeconds")

        def matches(o):
            if o is None:
                return False
            if ns and dig(o, "metadata", "namespace") != ns:
                return False
            return labels_match(lsel, dig(o, "metadata", "labels")) and \
                fields_match(fsel, o)

        sim = self
        first = [True]

        def render(typ, obj):
            if table and typ in ("ADDED", "MODIFIED", "DELETED"):
                obj = table_of(kd.resource, [obj], obj["metadata"][
                    "resourceVersion"], q.get("includeObject", "Metadata"),
                    headers=first[0])
                first[0] = False
            return encode_json({"type": typ, "object": obj})

        def run(write, gone):
            deadline = time.time() + timeout
            next_bm = time.time() + sim.bookmark_interval
            with sim._lock:
                out = []
                if start is None:
                    sent = sim._rv
                    for _, o in sorted(sim._objs[kd.resource].items()):
                        if matches(o):
                            out.append(render("ADDED", o))
                elif start < sim._floor:
                    out.append(render("ERROR", expired_status(
                        start, sim._floor + 1)))
                    sent = None
                else:
                    sent = start
            for chunk in out:
                write(chunk)
            if sent is None:
                return
            while True:
                bookmark = False
                with sim._cond:
                    if sent < sim._floor:
                        chunk = render("ERROR", expired_status(
                            sent, sim._floor + 1))
                        batch = None
                    else:
                        batch = [ev for ev in sim._events
                                 if ev[0] > sent and ev[1] == kd.resource]
                    cur_rv = sim._rv
                    if batch == []:
                        # nothing for us up to cur_rv: a quiet watch must not
                        # expire because other kinds filled the history
                        sent = max(sent, cur_rv)
                        now = time.time()
                        if sim._stopping.is_set() or now >= deadline:
                            break
                        if bookmarks and now >= next_bm:
                            next_bm = now + sim.bookmark_interval
                            bookmark = True
                        else:
                            wait = min(0.25, deadline - now)
                            if bookmarks:
                                wait = min(wait, next_bm - now)
                            sim._cond.wait(max(0.0, wait))
                            if gone():
                                return
                            continue
                if batch is None:
                    write(chunk)
                    return
                if bookmark:
                    write(render("BOOKMARK", bookmark_obj(kd, sent)))
                    continue
                for _, _, typ, obj, prev in batch:
                    now_m, was_m = matches(obj), matches(prev)
                    if typ == "DELETED":
                        if was_m or now_m:
                            write(render("DELETED", obj))
                    elif now_m and (was_m or typ == "ADDED"):
                        write(render(typ, obj))
                    elif now_m:
                        write(render("ADDED", obj))
                    elif was_m:
                        write(render("DELETED", obj))
                sent = cur_rv
            if bookmarks and not sim._stopping.is_set():
                write(render("BOOKMARK", bookmark_obj(kd, sent)))

        return Stream("application/json", run)

    # -------------------------------------------------------------- logs
    def _pod_log(self, ns, name, q):
        kd = KINDS["pods"]
        with self._lock:
            pod = self._get_obj(kd, ns, name)
            if pod is None:
                raise kd.not_found(name)
            names = [c.get("name") for c in pod["spec"].get("containers") or []]
            c = q.get("container")
            if not c:
                dflt = dig(pod, "metadata", "annotations",
                           "kubectl.kubernetes.io/default-container")
                if len(names) == 1:
                    c = names[0]
                elif dflt in names:
                    c = dflt
                else:
                    raise err_bad_request(
                        "a container name must be specified for pod %s, "
                        "choose one of: [%s]" % (name, " ".join(names)))
            if c not in names:
                raise err_bad_request("container %s is not valid for pod %s"
                                      % (c, name))
            if not dig(pod, "spec", "nodeName"):
                return Response(200, b"", "text/plain")
            if q.get("previous", "").lower() in ("true", "1"):
                raise err_bad_request("previous terminated container %s in "
                                      "pod %s not found" % (go_quote(c),
                                                            go_quote(name)))
            uid = pod["metadata"]["uid"]
            lines = list(self._logs.get((ns, name, c), []))
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
            since = int(q["sinceSeconds"]) if q.get("sinceSeconds") else None
        except ValueError as e:
            raise err_bad_request(str(e))
        since_t = time.time() - since if since is not None else parse_ts(
            q.get("sinceTime"))
        stamps = q.get("timestamps", "").lower() in ("true", "1")
        follow = q.get("follow", "").lower() in ("true", "1")

        def fmt(entries):
            out = b""
            for t, ln in entries:
                if since_t is not None and t < since_t:
                    continue
                out += ((nano_ts(t) + " " if stamps else "") + ln + "\n"
                        ).encode()
            return out
        first = lines[-tail:] if tail is not None and tail >= 0 else lines
        if tail == 0:
            first = []
        data = fmt(first)
        if not follow:
            if limit is not None:
                data = data[:limit]
            return Response(200, data, "text/plain")
        sim = self

        def run(write, gone):
            budget = [limit]

            def emit(b):
                if budget[0] is not None:
                    b = b[:budget[0]]
                    budget[0] -= len(b)
                if b:
                    write(b)
                return budget[0] is None or budget[0] > 0
            if not emit(data):
                return
            seen = len(lines)
            while True:
                with sim._cond:
                    p = sim._objs["pods"].get((ns, name))
                    if p is None or p["metadata"]["uid"] != uid or \
                            sim._stopping.is_set():
                        return
                    cur = sim._logs.get((ns, name, c), [])
                    new = cur[seen:]
                    seen = len(cur)
                    if not new:
                        sim._cond.wait(0.25)
                if new:
                    if not emit(fmt(new)):
                        return
                elif gone():
                    return
        return Stream("text/plain", run)


def expired_status(rv, oldest):
    return status_obj("Failure", "too old resource version: %d (%d)" % (
        rv, oldest), "Expired", code=410)


def bookmark_obj(kd, rv):
    meta = {"resourceVersion": str(rv), "creationTimestamp": None}
    o = {"kind": kd.kind, "apiVersion": kd.api_version, "metadata": meta}
    if kd.resource == "deployments":
        o["spec"] = {"selector": None, "template": {
            "metadata": {"creationTimestamp": None},
            "spec": {"containers": None}}, "strategy": {}}
    elif kd.resource == "pods":
        o["spec"] = {"containers": None}
    else:
        o["spec"] = {}
    o["status"] = {}
    return o


META_ORDER = ["name", "generateName", "namespace", "selfLink", "uid",
              "resourceVersion", "generation", "creationTimestamp",
              "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
              "annotations", "ownerReferences", "finalizers", "managedFields"]


def normalize(obj):
    """Key order as the Go structs emit it (kind, apiVersion, metadata, spec,
    status; ObjectMeta field order). Cosmetic, but it keeps dumps readable."""
    out = {}
    for k in ("kind", "apiVersion", "metadata", "spec", "status"):
        if k in obj:
            out[k] = obj[k]
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    m = out.get("metadata")
    if isinstance(m, dict):
        nm = {k: m[k] for k in META_ORDER if k in m}
        nm.update({k: v for k, v in m.items() if k not in nm})
        out["metadata"] = nm
    return out


# ------------------------------------------------------------------ HTTP

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, sim, family):
        self.address_family = family
        self.sim = sim
        super().__init__(addr, handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # TCPServer.server_bind: HTTPServer's would call getfqdn()
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", \
            self.server_address[1]

    def finish_request(self, request, client_address):
        sim = self.sim
        conn = request
        key = id(request)
        try:
            # Headers and body go out in separate writes: without
            # TCP_NODELAY, Nagle plus the client's delayed ACK add ~40 ms
            # to every request on a kept-alive connection.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with sim._lock:
                sim._conns[key] = request
            if sim._accept_fault() or sim._stopping.is_set():
                sim.requests.append(("CONNECT", "", 0))
                return
            if sim._ssl_ctx is not None:
                request.settimeout(10)
                conn = sim._ssl_ctx.wrap_socket(request, server_side=True)
                conn.settimeout(None)
                with sim._lock:
                    sim._conns[key] = conn
            self.RequestHandlerClass(conn, client_address, self)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with sim._lock:
                sim._conns.pop(key, None)
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if DEBUG:
            traceback.print_exc()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300          # idle keep-alive connections end after this
    MAX_BODY = 3 * 1024 * 1024

    def log_message(self, fmt, *args):
        if DEBUG:
            sys.stderr.write("k8s_sim: " + (fmt % args) + "\n")

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(8)
                if len(out) > self.MAX_BODY:
                    raise ValueError("too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > self.MAX_BODY:
            raise ValueError("too large")
        return self.rfile.read(n) if n > 0 else b""

    def _serve(self):
        sim = self.server.sim
        method = self.command
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(Response(413, encode_json(status_obj(
                "Failure", "Request entity too large: limit is 3145728",
                "RequestEntityTooLarge", code=413))))
            sim.requests.append((method, self.path, 413))
            return
        resp = sim.handle(method, self.path, self.headers, body)
        if resp is DROP:
            sim.requests.append((method, self.path, 0))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if isinstance(resp, Stream):
            sim.requests.append((method, self.path, 200))
            self._stream(resp)
            return
        sim.requests.append((method, self.path, resp.code))
        self._write(resp)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = \
        do_OPTIONS = _serve

    def _start(self, code, ctype, extra):
        self.send_response_only(code)
        self.send_header("Date", self.date_time_string())
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            if k == "Cache-Control":
                continue
            self.send_header(k, v)

    def _write(self, resp):
        self._start(resp.code, resp.ctype, resp.headers)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _stream(self, st):
        sim = self.server.sim
        self._start(200, st.ctype, [])
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        conn = self.connection

        def write(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def gone():
            try:
                r, _, _ = select.select([conn], [], [], 0)
            except (OSError, ValueError):
                return True
            return bool(r)
        with sim._lock:
            sim.streams += 1
        try:
            st.run(write, gone)
            if sim._stopping.is_set():
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            if gone():
                self.close_connection = True
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            with sim._lock:
                sim.streams -= 1


# ------------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description="Kubernetes API simulator")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--certdir", default=None)
    ap.add_argument("--token", default="test-token")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--log-tick", type=float, default=0.0)
    ap.add_argument("--no-controllers", action="store_true")
    a = ap.parse_args(argv)
    sim = K8sSim(port=a.port, certdir=a.certdir, token=a.token or None,
                 host=a.host, nodes=a.nodes, log_tick=a.log_tick,
                 controllers=not a.no_controllers)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sim.start()
    print("listening on %s" % sim.url, flush=True)
    while not done.wait(0.5):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
