#!/usr/bin/python3
"""Fidelity tests of tests/sim/k8s_sim.py.

Two kinds of evidence:
  * direct HTTPS requests (http.client/urllib with the test CA) compared with
    the bodies in /work/shared/reference/k8s-api-fidelity.md: Status objects,
    resourceVersion/generation rules, patches, paging, watch framing,
    discovery negotiation, keep-alive;
  * the real kubectl (/usr/bin/kubectl, the dispatcher, which runs
    kubectl.1.32 because the simulator reports minor "32") with a fresh HOME
    and a kubeconfig holding the CA and the token, stdin=/dev/null.
Every simulator binds port 0 on loopback and is stopped by the test.
"""
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import k8s_sim  # noqa: E402

TOKEN = "t0k-sim"
PKI = None
KUBECTL = "/usr/bin/kubectl"


def setUpModule():
    global PKI
    PKI = tempfile.mkdtemp(prefix="k8s-sim-pki-")
    subprocess.run(["bash", os.path.join(TOP, "tests", "lib", "certs.sh"), PKI],
                   check=True, timeout=120)


def tearDownModule():
    if PKI:
        shutil.rmtree(PKI, ignore_errors=True)


def new_sim(**kw):
    kw.setdefault("certdir", PKI)
    kw.setdefault("token", TOKEN)
    return k8s_sim.K8sSim(**kw).start()


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


def ssl_ctx():
    return ssl.create_default_context(cafile=os.path.join(PKI, "ca.pem"))


def connect(sim):
    return http.client.HTTPSConnection("127.0.0.1", sim.port,
                                       context=ssl_ctx(), timeout=10)


def call(sim, method, path, body=None, ctype="application/json",
         token=TOKEN, headers=None, conn=None):
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    if body is not None and ctype:
        h["Content-Type"] = ctype
    c = conn or connect(sim)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return Resp(r.status, r.headers, r.read())
    finally:
        if conn is None:
            c.close()


def deployment(name="web", replicas=2, image="nginx:1.27", ns=None):
    meta = {"name": name, "labels": {"app": name}}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [
                                      {"name": "nginx", "image": image}]}}}}


def service(name="websvc", port=80, target=8080):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"port": port, "targetPort": target}]}}


DEPS = "/apis/apps/v1/namespaces/default/deployments"
SVCS = "/api/v1/namespaces/default/services"

# Bodies copied from the reference (sections 2.3, 3.5, 6, 7).
REF_NOT_FOUND = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":'
                 '"Failure","message":"deployments.apps \\"web\\" not found",'
                 '"reason":"NotFound","details":{"name":"web","group":"apps",'
                 '"kind":"deployments"},"code":404}\n')
REF_SVC_NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Failure",
                     "message": "services \"websvc\" not found",
                     "reason": "NotFound",
                     "details": {"name": "websvc", "kind": "services"},
                     "code": 404}
REF_ALREADY_EXISTS = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                      "status": "Failure",
                      "message": "deployments.apps \"web\" already exists",
                      "reason": "AlreadyExists",
                      "details": {"name": "web", "group": "apps",
                                  "kind": "deployments"}, "code": 409}
REF_CONFLICT = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure",
                "message": "Operation cannot be fulfilled on deployments.apps "
                           "\"web\": the object has been modified; please "
                           "apply your changes to the latest version and try "
                           "again", "reason": "Conflict",
                "details": {"name": "web", "group": "apps",
                            "kind": "deployments"}, "code": 409}
REF_UNAUTHORIZED = ('{"kind":"Status","apiVersion":"v1","metadata":{},'
                    '"status":"Failure","message":"Unauthorized","reason":'
                    '"Unauthorized","code":401}\n')
REF_FORBIDDEN = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                 "status": "Failure",
                 "message": "deployments.apps \"web\" is forbidden: User "
                            "\"system:serviceaccount:default:agent\" cannot "
                            "get resource \"deployments\" in API group "
                            "\"apps\" in the namespace \"default\"",
                 "reason": "Forbidden",
                 "details": {"name": "web", "group": "apps",
                             "kind": "deployments"}, "code": 403}
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
REF_INVALID_DEPLOYMENT = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "Deployment.apps \"Web_1\" is invalid: metadata.name: Invalid "
               "value: \"Web_1\": " + SUBDOMAIN_MSG,
    "reason": "Invalid",
    "details": {"name": "Web_1", "group": "apps", "kind": "Deployment",
                "causes": [{"reason": "FieldValueInvalid",
                            "message": "Invalid value: \"Web_1\": "
                                       + SUBDOMAIN_MSG,
                            "field": "metadata.name"}]}, "code": 422}
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or "
    "'-', start with an alphabetic character, and end with an alphanumeric "
    "character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
    "'[a-z]([-a-z0-9]*[a-z0-9])?')")
REF_INVALID_SERVICE = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "Service \"1web\" is invalid: metadata.name: Invalid value: "
               "\"1web\": " + DNS1035_MSG,
    "reason": "Invalid",
    "details": {"name": "1web", "kind": "Service", "causes": [
        {"reason": "FieldValueInvalid",
         "message": "Invalid value: \"1web\": " + DNS1035_MSG,
         "field": "metadata.name"}]}, "code": 422}
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
    "characters or '-', and must start and end with an alphanumeric character "
    "(e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
REF_INVALID_NS = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "Namespace \"Team_A\" is invalid: metadata.name: Invalid value: "
               "\"Team_A\": " + LABEL_MSG,
    "reason": "Invalid",
    "details": {"name": "Team_A", "kind": "Namespace", "causes": [
        {"reason": "FieldValueInvalid",
         "message": "Invalid value: \"Team_A\": " + LABEL_MSG,
         "field": "metadata.name"}]}, "code": 422}
REF_INVALID_NS_DOTS = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "Namespace \"team.a\" is invalid: metadata.name: Invalid value: "
               "\"team.a\": must not contain dots", "reason": "Invalid",
    "details": {"name": "team.a", "kind": "Namespace", "causes": [
        {"reason": "FieldValueInvalid",
         "message": "Invalid value: \"team.a\": must not contain dots",
         "field": "metadata.name"}]}, "code": 422}
REF_INVALID_EMPTY = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "Deployment.apps \"\" is invalid: metadata.name: Required "
               "value: name or generateName is required", "reason": "Invalid",
    "details": {"group": "apps", "kind": "Deployment", "causes": [
        {"reason": "FieldValueRequired",
         "message": "Required value: name or generateName is required",
         "field": "metadata.name"}]}, "code": 422}
REF_SCALE_INVALID = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid "
               "value: -1: must be greater than or equal to 0",
    "reason": "Invalid",
    "details": {"name": "web", "group": "autoscaling", "kind": "Scale",
                "causes": [{"reason": "FieldValueInvalid",
                            "message": "Invalid value: -1: must be greater "
                                       "than or equal to 0",
                            "field": "spec.replicas"}]}, "code": 422}


class SimCase(unittest.TestCase):
    """One simulator per class (controllers on)."""
    sim_kw = {}

    @classmethod
    def setUpClass(cls):
        cls.sim = new_sim(**cls.sim_kw)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def call(self, *a, **kw):
        return call(self.sim, *a, **kw)

    def assertStatus(self, r, code, body=None):
        self.assertEqual(r.status, code, r)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        if body is not None:
            self.assertEqual(r.json, body)


# ------------------------------------------------------------ public / auth

class PublicAndAuthTest(SimCase):

    def test_version_with_urllib_and_ca(self):
        with urllib.request.urlopen(self.sim.url + "/version",
                                    context=ssl_ctx(), timeout=10) as r:
            v = json.load(r)
        self.assertEqual((v["major"], v["minor"]), ("1", "32"))
        self.assertEqual(sorted(v), sorted(k8s_sim.VERSION_INFO))

    def test_health_endpoints(self):
        for p in ("/healthz", "/livez", "/readyz"):
            r = self.call("GET", p, token=None)
            self.assertEqual((r.status, r.body), (200, b"ok"), p)
            self.assertEqual(r.headers["Content-Type"],
                             "text/plain; charset=utf-8")
            self.assertEqual(r.headers["X-Content-Type-Options"], "nosniff")
        r = self.call("GET", "/readyz?verbose", token=None)
        self.assertTrue(r.body.startswith(b"[+]ping ok\n"))
        self.assertTrue(r.body.endswith(b"readyz check passed\n"))

    def test_missing_and_wrong_token(self):
        for path, token in (("/api/v1/namespaces", None),
                            ("/apis", None), (DEPS, "wrong"),
                            ("/version", "wrong")):
            r = self.call("GET", path, token=token)
            self.assertEqual(r.status, 401, (path, token))
            self.assertEqual(r.body.decode(), REF_UNAUTHORIZED)
            self.assertIsNone(r.headers["WWW-Authenticate"])
        # token rotation hook
        self.sim.token = "rotated"
        try:
            self.assertEqual(self.call("GET", DEPS).status, 401)
            self.assertEqual(self.call("GET", DEPS, token="rotated").status,
                             200)
        finally:
            self.sim.token = TOKEN

    def test_unknown_path_is_text_404(self):
        for p in ("/nope", "/api/v1/foos", "/apis/apps/v1/namespaces/default/"
                  "deployments/web/bogus", "/openapi/v2"):
            r = self.call("GET", p)
            self.assertEqual((r.status, r.body), (404, b"404 page not found\n"),
                             p)
            self.assertEqual(r.headers["Content-Type"],
                             "text/plain; charset=utf-8")


# -------------------------------------------------------------- discovery

class DiscoveryTest(SimCase):
    V2 = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
          "application/json;g=apidiscovery.k8s.io;v=v2beta1;"
          "as=APIGroupDiscoveryList,application/json")
    V2BETA1 = ("application/json;g=apidiscovery.k8s.io;v=v2beta1;"
               "as=APIGroupDiscoveryList,application/json")

    def test_aggregated_v2(self):
        r = self.call("GET", "/api?timeout=32s", headers={"Accept": self.V2})
        self.assertEqual(r.headers["Content-Type"], "application/json;g=apidiscov"
                         "ery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        body = r.json
        self.assertEqual(body["apiVersion"], "apidiscovery.k8s.io/v2")
        self.assertEqual(body["items"][0]["metadata"], {"creationTimestamp": None})
        res = {x["resource"]: x for x in body["items"][0]["versions"][0]["resources"]}
        self.assertEqual(set(res), {"pods", "services", "namespaces", "nodes"})
        for x in res.values():   # an empty responseKind is silently dropped
            self.assertTrue(x["responseKind"]["kind"])
            for s in x.get("subresources", []):
                self.assertTrue(s["responseKind"]["kind"])
        self.assertEqual(res["pods"]["subresources"][0]["subresource"], "log")
        r = self.call("GET", "/apis", headers={"Accept": self.V2})
        g = r.json["items"][0]
        self.assertEqual(g["metadata"]["name"], "apps")
        dep = g["versions"][0]["resources"][0]
        self.assertEqual(dep["resource"], "deployments")
        self.assertEqual(dep["subresources"][0], {
            "subresource": "scale", "responseKind": {
                "group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]})

    def test_v2beta1_and_legacy(self):
        r = self.call("GET", "/apis", headers={"Accept": self.V2BETA1})
        self.assertIn("v=v2beta1", r.headers["Content-Type"])
        self.assertEqual(r.json["apiVersion"], "apidiscovery.k8s.io/v2beta1")
        r = self.call("GET", "/api", headers={"Accept": "application/json"})
        self.assertEqual(r.headers["Content-Type"], "application/json")
        self.assertEqual(r.json["kind"], "APIVersions")
        self.assertEqual(self.call("GET", "/apis").json["groups"][0]["name"],
                         "apps")
        lst = self.call("GET", "/apis/apps/v1").json
        names = {x["name"]: x for x in lst["resources"]}
        self.assertEqual(names["deployments/scale"]["group"], "autoscaling")
        self.assertIn("pods/log", {x["name"] for x in
                                   self.call("GET", "/api/v1").json["resources"]})

    def test_openapi_v3(self):
        idx = self.call("GET", "/openapi/v3").json["paths"]
        url = idx["apis/apps/v1"]["serverRelativeURL"]
        doc = self.call("GET", url).json
        op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/"
                          "{name}"]["patch"]
        self.assertEqual(op["x-kubernetes-group-version-kind"]["kind"],
                         "Deployment")
        self.assertIn({"name": "fieldValidation", "in": "query", "schema": {
            "type": "string", "uniqueItems": True}}, op["parameters"])


# ----------------------------------------------------------- Status bodies

class StatusBodiesTest(SimCase):

    def setUp(self):
        for n in ("web", "Web_1"):
            self.sim.remove("deployments", "default", n)
        self.sim.allow_all()

    def test_not_found_exact_bytes(self):
        r = self.call("GET", DEPS + "/web")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body.decode(), REF_NOT_FOUND)
        self.assertStatus(self.call("GET", SVCS + "/websvc"), 404,
                          REF_SVC_NOT_FOUND)
        for m in ("PUT", "PATCH", "DELETE"):
            r = self.call(m, DEPS + "/web", body=deployment() if m == "PUT"
                          else {}, ctype="application/merge-patch+json"
                          if m == "PATCH" else "application/json")
            self.assertEqual(r.body.decode(), REF_NOT_FOUND, m)

    def test_already_exists_and_conflict(self):
        r = self.call("POST", DEPS, deployment())
        self.assertEqual(r.status, 201)
        stale = r.json
        self.assertStatus(self.call("POST", DEPS, deployment()), 409,
                          REF_ALREADY_EXISTS)
        self.call("PATCH", DEPS + "/web", {"metadata": {"labels": {"x": "1"}}},
                  ctype="application/merge-patch+json")
        self.assertStatus(self.call("PUT", DEPS + "/web", stale), 409,
                          REF_CONFLICT)
        # an RV precondition inside a patch body
        self.assertStatus(self.call(
            "PATCH", DEPS + "/web", {"metadata": {"resourceVersion": "1"}},
            ctype="application/merge-patch+json"), 409, REF_CONFLICT)

    def test_invalid_names(self):
        self.assertStatus(self.call("POST", DEPS, deployment("Web_1")), 422,
                          REF_INVALID_DEPLOYMENT)
        bad = service("1web")
        self.assertStatus(self.call("POST", SVCS, bad), 422, REF_INVALID_SERVICE)
        for name, ref in (("Team_A", REF_INVALID_NS),
                          ("team.a", REF_INVALID_NS_DOTS)):
            self.assertStatus(self.call("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name}}), 422, ref)
        d = deployment()
        d["metadata"]["name"] = ""
        self.assertStatus(self.call("POST", DEPS, d), 422, REF_INVALID_EMPTY)

    def test_invalid_spec_causes(self):
        d = deployment("web")
        d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
        d["spec"]["template"]["spec"]["containers"][0]["image"] = ""
        r = self.call("POST", DEPS, d)
        self.assertEqual(r.status, 422)
        causes = {c["field"]: c for c in r.json["details"]["causes"]}
        self.assertEqual(causes["spec.template.metadata.labels"]["message"],
                         'Invalid value: map[string]string{"app":"other"}: '
                         '`selector` does not match template `labels`')
        self.assertEqual(causes["spec.template.spec.containers[0].image"],
                         {"reason": "FieldValueRequired",
                          "message": "Required value",
                          "field": "spec.template.spec.containers[0].image"})
        self.assertTrue(r.json["message"].startswith(
            'Deployment.apps "web" is invalid: ['))

    def test_forbidden(self):
        self.call("POST", DEPS, deployment())
        self.sim.deny("get", "deployments")
        self.assertStatus(self.call("GET", DEPS + "/web"), 403, REF_FORBIDDEN)
        self.sim.deny("list", "nodes")
        r = self.call("GET", "/api/v1/nodes")
        self.assertEqual(r.json["message"], 'nodes is forbidden: User "system:'
                         'serviceaccount:default:agent" cannot list resource '
                         '"nodes" in API group "" at the cluster scope')
        self.assertEqual(r.json["details"], {"kind": "nodes"})
        self.sim.allow_all()
        self.assertEqual(self.call("GET", DEPS + "/web").status, 200)

    def test_namespace_lifecycle_and_bad_requests(self):
        r = self.call("POST", "/apis/apps/v1/namespaces/nope/deployments",
                      deployment("Web_1"))   # 404 wins over 422
        self.assertStatus(r, 404, {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "namespaces \"nope\" not found",
            "reason": "NotFound", "details": {"name": "nope",
                                              "kind": "namespaces"},
            "code": 404})
        r = self.call("GET", "/apis/apps/v1/namespaces/nope/deployments")
        self.assertEqual((r.status, r.json["items"]), (200, []))
        r = self.call("POST", DEPS, deployment(ns="other"))
        self.assertEqual((r.status, r.json["message"]), (
            400, "the namespace of the provided object does not match the "
                 "namespace sent on the request"))
        d = deployment()
        d["apiVersion"] = "v1"
        r = self.call("POST", DEPS, d)
        self.assertEqual((r.status, r.json["reason"], r.json["message"]), (
            400, "BadRequest", "the API version in the data (v1) does not "
                               "match the expected API version (apps/v1)"))
        r = self.call("POST", DEPS, b"{nope")
        self.assertEqual(r.status, 400)
        self.assertTrue(r.json["message"].startswith(
            "couldn't get version/kind; json parse error"))
        self.call("POST", DEPS, deployment())
        r = self.call("PUT", DEPS + "/web", deployment("other"))
        self.assertEqual(r.json["message"], "the name of the object (other) "
                         "does not match the name on the URL (web)")
        d = deployment()
        d["spec"]["foo"] = 1
        r = self.call("POST", DEPS + "?fieldValidation=Strict", d)
        self.assertEqual(r.json["message"], 'Deployment in version "v1" cannot '
                         'be handled as a Deployment: strict decoding error: '
                         'unknown field "spec.foo"')

    def test_terminating_namespace_forbidden(self):
        sim = new_sim(ns_delete_delay=30)
        try:
            ns = {"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "team-a"}}
            self.assertEqual(call(sim, "POST", "/api/v1/namespaces", ns).status,
                             201)
            r = call(sim, "DELETE", "/api/v1/namespaces/team-a")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json["status"]["phase"], "Terminating")
            self.assertIn("deletionTimestamp", r.json["metadata"])
            r = call(sim, "POST", "/apis/apps/v1/namespaces/team-a/deployments",
                     deployment())
            self.assertEqual(r.status, 403)
            self.assertEqual(r.json["message"], 'deployments.apps "web" is '
                             'forbidden: unable to create new content in '
                             'namespace team-a because it is being terminated')
            self.assertEqual(r.json["details"]["causes"][0]["reason"],
                             "NamespaceTerminating")
            r = call(sim, "DELETE", "/api/v1/namespaces/default")
            self.assertEqual((r.status, r.json["message"]), (
                403, 'namespaces "default" is forbidden: this namespace may '
                     'not be deleted'))
        finally:
            sim.stop()

    def test_patch_content_type_and_options(self):
        self.call("POST", DEPS, deployment())
        r = self.call("PATCH", DEPS + "/web", {}, ctype="text/plain")
        self.assertEqual(r.status, 415)
        self.assertEqual(r.json["message"], "the body of the request was in an "
                         "unknown format - accepted media types include: "
                         "application/json-patch+json, application/merge-patch"
                         "+json, application/strategic-merge-patch+json, "
                         "application/apply-patch+yaml")
        r = self.call("PATCH", DEPS + "/web?force=true", {},
                      ctype="application/merge-patch+json")
        self.assertEqual((r.status, r.json["message"]), (
            422, 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: '
                 'may not be specified for non-apply patch'))
        r = self.call("PATCH", DEPS + "/web", {},
                      ctype="application/apply-patch+yaml")
        self.assertEqual((r.status, r.json["message"]), (
            422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                 'Required value: is required for apply patch'))


# ------------------------------------------------ resourceVersion, patches

class WriteSemanticsTest(SimCase):
    sim_kw = {"controllers": False}   # no controller writes: exact RVs

    def setUp(self):
        for r, n in (("deployments", "web"), ("services", "websvc")):
            self.sim.remove(r, "default", n)

    def create(self):
        r = self.call("POST", DEPS + "?fieldManager=test", deployment())
        self.assertEqual(r.status, 201, r)
        return r.json

    def rv(self):
        return int(self.sim.resource_version)

    def test_create_fills_server_fields_and_defaults(self):
        before = self.rv()
        d = self.create()
        m = d["metadata"]
        self.assertEqual(m["resourceVersion"], str(before + 1))
        self.assertIsInstance(m["resourceVersion"], str)
        self.assertEqual(m["generation"], 1)
        self.assertEqual(len(m["uid"]), 36)
        self.assertRegex(m["creationTimestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(d["status"], {})
        s = d["spec"]
        self.assertEqual(s["strategy"], {"type": "RollingUpdate", "rollingUpdate": {
            "maxUnavailable": "25%", "maxSurge": "25%"}})
        self.assertEqual((s["revisionHistoryLimit"], s["progressDeadlineSeconds"]),
                         (10, 600))
        self.assertIsNone(s["template"]["metadata"]["creationTimestamp"])
        c = s["template"]["spec"]["containers"][0]
        self.assertEqual(c["imagePullPolicy"], "IfNotPresent")
        self.assertEqual(c["terminationMessagePath"], "/dev/termination-log")
        self.assertEqual(s["template"]["spec"]["schedulerName"], "default-scheduler")
        lst = self.call("GET", DEPS).json
        self.assertEqual(lst["kind"], "DeploymentList")
        self.assertEqual(lst["metadata"]["resourceVersion"], str(self.rv()))
        self.assertNotIn("kind", lst["items"][0])       # items carry no kind
        self.assertNotIn("apiVersion", lst["items"][0])
        self.assertEqual(self.sim.get("deployments", "default", "web"), d)

    def test_generation_rules(self):
        d = self.create()
        rv0 = d["metadata"]["resourceVersion"]
        # no-op PUT: same RV, no event
        d2 = self.call("PUT", DEPS + "/web", d).json
        self.assertEqual(d2["metadata"]["resourceVersion"], rv0)
        # PUT without RV is allowed for deployments
        d.pop("status")
        del d["metadata"]["resourceVersion"]
        d["metadata"]["labels"]["tier"] = "front"
        d3 = self.call("PUT", DEPS + "/web", d).json
        self.assertGreater(int(d3["metadata"]["resourceVersion"]), int(rv0))
        self.assertEqual(d3["metadata"]["generation"], 1)    # labels only
        r = self.call("PATCH", DEPS + "/web", {"metadata": {"annotations": {
            "a": "1"}}}, ctype="application/merge-patch+json").json
        self.assertEqual(r["metadata"]["generation"], 2)     # annotations bump
        r = self.call("PATCH", DEPS + "/web", {"spec": {"replicas": 5}},
                      ctype="application/merge-patch+json").json
        self.assertEqual(r["metadata"]["generation"], 3)     # spec bumps
        r = self.call("PATCH", DEPS + "/web/status", {"status": {
            "replicas": 5}}, ctype="application/merge-patch+json").json
        self.assertEqual((r["metadata"]["generation"], r["status"]),
                         (3, {"replicas": 5}))               # status doesn't
        # a main-resource write cannot change status
        r = self.call("PATCH", DEPS + "/web", {"status": {"replicas": 9}},
                      ctype="application/merge-patch+json").json
        self.assertEqual(r["status"], {"replicas": 5})
        # selector is immutable
        r = self.call("PATCH", DEPS + "/web", {"spec": {"selector": {
            "matchLabels": {"app": "x"}}}}, ctype="application/merge-patch+json")
        self.assertEqual(r.status, 422)
        self.assertIn("spec.selector", {c["field"] for c in
                                        r.json["details"]["causes"]})

    def test_scale_subresource(self):
        d = self.create()
        s = self.call("GET", DEPS + "/web/scale").json
        self.assertEqual(s, {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "web", "namespace": "default",
                         "uid": d["metadata"]["uid"],
                         "resourceVersion": d["metadata"]["resourceVersion"],
                         "creationTimestamp": d["metadata"]["creationTimestamp"]},
            "spec": {"replicas": 2}, "status": {"replicas": 0,
                                                "selector": "app=web"}})
        r = self.call("PATCH", DEPS + "/web/scale", {"spec": {"replicas": 0}},
                      ctype="application/merge-patch+json")
        self.assertEqual((r.status, r.json["spec"]), (200, {}))
        cur = self.sim.get("deployments", "default", "web")
        self.assertEqual((cur["spec"]["replicas"], cur["metadata"]["generation"]),
                         (0, 2))
        # PUT without Content-Type (kubectl scale --current-replicas)
        s = self.call("GET", DEPS + "/web/scale").json
        s["spec"]["replicas"] = 4
        r = self.call("PUT", DEPS + "/web/scale", s, ctype=None)
        self.assertEqual((r.status, r.json["spec"]), (200, {"replicas": 4}))
        r = self.call("PUT", DEPS + "/web/scale", s)          # stale RV
        self.assertStatus(r, 409, REF_CONFLICT)
        r = self.call("PATCH", DEPS + "/web/scale", {"spec": {"replicas": -1}},
                      ctype="application/merge-patch+json")
        self.assertStatus(r, 422, REF_SCALE_INVALID)
        r = self.call("GET", DEPS + "/nope/scale")
        self.assertEqual(r.json["message"], 'deployments.apps "nope" not found')

    def test_strategic_merge_patch_directives(self):
        d = deployment()
        d["spec"]["template"]["spec"]["containers"] = [
            {"name": "nginx", "image": "nginx:1.27", "ports": [
                {"containerPort": 80}]},
            {"name": "side", "image": "busybox", "env": [
                {"name": "A", "value": "1"}]}]
        self.assertEqual(self.call("POST", DEPS, d).status, 201)
        patch = {"metadata": {"annotations": {"k": "v"}}, "spec": {"template": {
            "spec": {"$setElementOrder/containers": [{"name": "side"},
                                                     {"name": "nginx"}],
                     "containers": [{"image": "nginx:1.28", "name": "nginx"},
                                    {"name": "side", "env": [
                                        {"name": "B", "value": "2"}]}]}}}}
        r = self.call("PATCH", DEPS + "/web", patch,
                      ctype="application/strategic-merge-patch+json")
        cs = r.json["spec"]["template"]["spec"]["containers"]
        self.assertEqual([c["name"] for c in cs], ["side", "nginx"])
        self.assertEqual(cs[1]["image"], "nginx:1.28")
        self.assertEqual(cs[1]["ports"], [{"containerPort": 80,
                                           "protocol": "TCP"}])
        self.assertEqual(cs[0]["image"], "busybox")      # kept, not replaced
        self.assertEqual([e["name"] for e in cs[0]["env"]], ["A", "B"])
        patch = {"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"$patch": "delete", "name": "side"}]}},
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
        r = self.call("PATCH", DEPS + "/web", patch,
                      ctype="application/strategic-merge-patch+json").json
        self.assertEqual([c["name"] for c in
                          r["spec"]["template"]["spec"]["containers"]],
                         ["nginx"])
        self.assertEqual(r["spec"]["strategy"], {"type": "Recreate"})
        self.assertNotIn("$patch", json.dumps(r))

    def test_json_patch_and_merge_patch(self):
        self.create()
        r = self.call("PATCH", DEPS + "/web", [
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/x", "value": "y"}],
            ctype="application/json-patch+json")
        self.assertEqual((r.status, r.json["spec"]["replicas"]), (200, 3))
        r = self.call("PATCH", DEPS + "/web", [
            {"op": "test", "path": "/spec/replicas", "value": 99}],
            ctype="application/json-patch+json")
        self.assertStatus(r, 422, {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "the server rejected our request "
            "due to an error in our request", "reason": "Invalid",
            "code": 422})
        r = self.call("PATCH", DEPS + "/web", {"metadata": {"labels": {
            "x": None}}}, ctype="application/merge-patch+json").json
        self.assertNotIn("x", r["metadata"]["labels"])

    def test_server_side_apply(self):
        svc = service()
        r = self.call("PATCH", SVCS + "/websvc?fieldManager=kubectl&force=false",
                      svc, ctype="application/apply-patch+yaml")
        self.assertEqual(r.status, 201)                     # created
        self.assertEqual(r.json["spec"]["ports"], [
            {"protocol": "TCP", "port": 80, "targetPort": 8080}])
        self.assertTrue(r.json["spec"]["clusterIP"].startswith("10.96."))
        # YAML body
        yaml_body = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: websvc\n"
                     "  labels:\n    tier: front\nspec:\n  selector:\n"
                     "    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n")
        r = self.call("PATCH", SVCS + "/websvc?fieldManager=kubectl", yaml_body,
                      ctype="application/apply-patch+yaml")
        self.assertEqual((r.status, r.json["metadata"]["labels"]),
                         (200, {"tier": "front"}))
        # another manager changes a field; re-applying it conflicts
        self.call("PATCH", SVCS + "/websvc?fieldManager=other",
                  {"spec": {"selector": {"app": "x"}}},
                  ctype="application/merge-patch+json")
        r = self.call("PATCH", SVCS + "/websvc?fieldManager=kubectl", svc,
                      ctype="application/apply-patch+yaml")
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["message"], 'Apply failed with 1 conflict: '
                         'conflict with "other" using v1: .spec.selector.app')
        self.assertEqual(r.json["details"]["causes"], [{
            "reason": "FieldManagerConflict",
            "message": 'conflict with "other" using v1',
            "field": ".spec.selector.app"}])
        r = self.call("PATCH", SVCS + "/websvc?fieldManager=kubectl&force=true",
                      svc, ctype="application/apply-patch+yaml")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["spec"]["selector"], {"app": "web"})
        # the label this manager applied before and dropped now is removed
        self.assertNotIn("tier", r.json["metadata"].get("labels", {}))

    def test_delete_responses(self):
        d = self.create()
        r = self.call("DELETE", DEPS + "/web", {"propagationPolicy":
                                                 "Background"})
        self.assertStatus(r, 200, {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "details": {
                "name": "web", "group": "apps", "kind": "deployments",
                "uid": d["metadata"]["uid"]}})
        self.assertIsNone(self.sim.get("deployments", "default", "web"))
        self.assertEqual(self.call("DELETE", DEPS + "/web").body.decode(),
                         REF_NOT_FOUND)
        self.call("POST", SVCS, service())
        r = self.call("DELETE", SVCS + "/websvc")
        self.assertEqual((r.status, r.json["kind"]), (200, "Service"))
        # dryRun stores nothing
        r = self.call("POST", DEPS + "?dryRun=All", deployment())
        self.assertEqual(r.status, 201)
        self.assertIsNone(self.sim.get("deployments", "default", "web"))


# --------------------------------------------------- lists, paging, watch

class ListWatchTest(SimCase):
    sim_kw = {"nodes": 5}

    def test_paging(self):
        r = self.call("GET", "/api/v1/nodes?limit=2").json
        rv = r["metadata"]["resourceVersion"]
        names = [n["metadata"]["name"] for n in r["items"]]
        self.assertEqual(r["metadata"]["remainingItemCount"], 3)
        pages = 1
        while "continue" in r["metadata"]:
            tok = r["metadata"]["continue"]
            r = self.call("GET", "/api/v1/nodes?limit=2&continue=" + tok).json
            self.assertEqual(r["metadata"]["resourceVersion"], rv)
            names += [n["metadata"]["name"] for n in r["items"]]
            pages += 1
        self.assertEqual(pages, 3)
        self.assertNotIn("continue", r["metadata"])        # absent on last
        self.assertEqual(names, ["node-%d" % i for i in range(1, 6)])
        r = self.call("GET", "/api/v1/nodes?limit=2&continue=garbage!")
        self.assertEqual(r.status, 400)
        self.assertTrue(r.json["message"].startswith("invalid continue token"))
        r = self.call("GET", "/api/v1/nodes?limit=2&resourceVersion=1&continue="
                      + tok)
        self.assertEqual(r.json["message"], "specifying resource version is "
                         "not allowed when using continue")

    def test_expired_continue(self):
        sim = new_sim()
        try:
            tok = call(sim, "GET", "/api/v1/nodes?limit=1").json["metadata"][
                "continue"]
            sim.create({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "later"}})
            sim.compact()
            r = call(sim, "GET", "/api/v1/nodes?limit=1&continue=" + tok)
            self.assertEqual((r.status, r.json["reason"]), (410, "Expired"))
            self.assertEqual(r.json["message"], "The provided continue "
                             "parameter is too old to display a consistent "
                             "list result. You can start a new list without "
                             "the continue parameter.")
        finally:
            sim.stop()

    def test_selectors_and_all_namespaces(self):
        self.sim.create({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": "shop"}})
        self.sim.create(deployment("web", 1))
        self.sim.create(deployment("api", 1, ns="shop"))
        r = self.call("GET", "/apis/apps/v1/deployments").json
        self.assertEqual(sorted((i["metadata"]["namespace"],
                                 i["metadata"]["name"]) for i in r["items"]),
                         [("default", "web"), ("shop", "api")])
        r = self.call("GET", "/api/v1/pods?labelSelector=app%3Dapi").json
        self.assertEqual([p["metadata"]["namespace"] for p in r["items"]],
                         ["shop"])
        r = self.call("GET", "/api/v1/pods?labelSelector=app+in+(web,api),"
                      "pod-template-hash").json
        self.assertEqual(len(r["items"]), 2)
        r = self.call("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-2")
        self.assertEqual([n["metadata"]["name"] for n in r.json["items"]],
                         ["node-2"])
        r = self.call("GET", DEPS + "?fieldSelector=spec.replicas%3D1")
        self.assertEqual((r.status, r.json["message"]), (
            400, '"spec.replicas" is not a known field selector: only '
                 '"metadata.name", "metadata.namespace"'))
        r = self.call("GET", "/api/v1/pods?fieldSelector=spec.foo%3D1")
        self.assertEqual(r.json["message"], "field label not supported: "
                         "spec.foo")
        r = self.call("GET", "/api/v1/pods?fieldSelector=status.phase%3DRunning")
        self.assertEqual(len(r.json["items"]), 2)

    def test_table(self):
        self.sim.create(deployment("tbl", 1))
        acc = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;"
               "as=Table;v=v1beta1;g=meta.k8s.io,application/json")
        t = self.call("GET", DEPS + "?limit=500", headers={"Accept": acc}).json
        self.assertEqual(t["kind"], "Table")
        self.assertEqual([c["name"] for c in t["columnDefinitions"]][:5],
                         ["Name", "Ready", "Up-to-date", "Available", "Age"])
        row = [r for r in t["rows"] if r["cells"][0] == "tbl"][0]
        self.assertEqual(row["cells"][1:4], ["1/1", 1, 1])
        self.assertEqual(row["object"]["kind"], "PartialObjectMetadata")

    def read_watch(self, path, until=None, timeout=10):
        """Open a watch; return (response, events) after the stream ends."""
        c = connect(self.sim)
        c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["Transfer-Encoding"], "chunked")
        self.assertEqual(r.headers["Content-Type"], "application/json")
        self.assertIsNone(r.headers["Content-Length"])
        events = []
        t0 = time.time()
        while time.time() - t0 < timeout:
            line = r.readline()
            if not line:
                break
            self.assertTrue(line.endswith(b"\n"))
            events.append(json.loads(line))
            if until and until(events):
                break
        c.close()
        return r, events

    def test_watch_initial_and_changes(self):
        sim = self.sim
        rv = self.call("GET", "/api/v1/namespaces").json["metadata"][
            "resourceVersion"]
        _, ev = self.read_watch("/api/v1/namespaces?watch=1&timeoutSeconds=1")
        self.assertTrue(all(e["type"] == "ADDED" for e in ev))
        self.assertIn("default", [e["object"]["metadata"]["name"] for e in ev])
        self.assertEqual(ev[0]["object"]["kind"], "Namespace")
        sim.create({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "w1", "labels": {"a": "b"}}})
        sim.remove("namespaces", "", "w1")
        t0 = time.time()
        _, ev = self.read_watch("/api/v1/namespaces?watch=true&resourceVersion=%s"
                                "&timeoutSeconds=1" % rv)
        self.assertGreaterEqual(time.time() - t0, 0.9)   # ends at timeout
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"])
                          for e in ev], [("ADDED", "w1"), ("DELETED", "w1")])
        self.assertGreater(int(ev[1]["object"]["metadata"]["resourceVersion"]),
                           int(ev[0]["object"]["metadata"]["resourceVersion"]))
        # selectors filter events; no bookmarks unless asked
        _, ev = self.read_watch("/api/v1/namespaces?watch=true&resourceVersion="
                                "%s&timeoutSeconds=1&labelSelector=a%%3Dc" % rv)
        self.assertEqual(ev, [])

    def test_watch_bookmarks(self):
        sim = new_sim(bookmark_interval=0.3)
        try:
            self.sim, keep = sim, self.sim
            rv = sim.resource_version
            _, ev = self.read_watch(
                DEPS + "?watch=1&allowWatchBookmarks=true&resourceVersion=%s"
                "&timeoutSeconds=1" % rv)
            self.assertTrue(ev)
            self.assertTrue(all(e["type"] == "BOOKMARK" for e in ev))
            self.assertEqual(ev[0]["object"]["metadata"]["resourceVersion"], rv)
            self.assertEqual(ev[0]["object"]["kind"], "Deployment")
            _, ev = self.read_watch(DEPS + "?watch=1&resourceVersion=%s"
                                    "&timeoutSeconds=1" % rv)
            self.assertEqual(ev, [])
        finally:
            self.sim = keep
            sim.stop()

    def test_watch_too_old_is_error_event(self):
        sim = new_sim()
        try:
            self.sim, keep = sim, self.sim
            old = sim.resource_version
            sim.create(deployment("x", 0))
            sim.compact()
            r, ev = self.read_watch(DEPS + "?watch=1&resourceVersion=%s" % old)
            self.assertEqual(r.status, 200)
            self.assertEqual(len(ev), 1)
            self.assertEqual(ev[0]["type"], "ERROR")
            o = ev[0]["object"]
            self.assertEqual((o["kind"], o["reason"], o["code"]),
                             ("Status", "Expired", 410))
            self.assertRegex(o["message"], r"^too old resource version: \d+ "
                             r"\(\d+\)$")
        finally:
            self.sim = keep
            sim.stop()

    def test_watch_streams_live_events(self):
        c = connect(self.sim)
        rv = self.sim.resource_version
        c.request("GET", DEPS + "?watch=1&resourceVersion=%s&fieldSelector="
                  "metadata.name%%3Dlive" % rv,
                  headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        self.sim.wait_for(lambda: self.sim.streams >= 1)
        self.sim.create(deployment("live", 1))
        first = json.loads(r.readline())
        self.assertEqual((first["type"], first["object"]["metadata"]["name"]),
                         ("ADDED", "live"))
        nxt = json.loads(r.readline())          # controller status update
        self.assertEqual(nxt["type"], "MODIFIED")
        c.close()
        self.sim.wait_for(lambda: self.sim.streams == 0)


# ------------------------------------------------------- transport, hooks

class TransportAndHooksTest(SimCase):

    def test_keep_alive_across_errors(self):
        c = connect(self.sim)
        c.connect()
        sock = c.sock
        seq = [("GET", "/version", None, 200), ("GET", DEPS + "/none", None, 404),
               ("POST", DEPS, deployment("ka"), 201),
               ("POST", DEPS, deployment("ka"), 409),
               ("GET", "/nope", None, 404),
               ("PATCH", DEPS + "/ka/scale", {"spec": {"replicas": 2}}, 200),
               ("DELETE", DEPS + "/ka", None, 200)]
        for m, p, b, code in seq:
            r = call(self.sim, m, p, b, ctype="application/merge-patch+json"
                     if m == "PATCH" else "application/json", conn=c)
            self.assertEqual(r.status, code, (m, p, r))
            self.assertEqual(int(r.headers["Content-Length"]), len(r.body))
            self.assertIs(c.sock, sock, "connection was not kept alive")
        r = call(self.sim, "GET", DEPS, token="bad", conn=c)   # 401 too
        self.assertEqual(r.status, 401)
        self.assertEqual(call(self.sim, "GET", "/version", conn=c).status, 200)
        self.assertIs(c.sock, sock)
        c.close()

    def test_concurrent_writers(self):
        self.sim.create(deployment("cc", 1))
        codes, errors = [], []

        def worker(i):
            try:
                c = connect(self.sim)
                for j in range(15):
                    codes.append(call(self.sim, "PATCH", DEPS + "/cc/scale",
                                      {"spec": {"replicas": (i + j) % 4}},
                                      ctype="application/merge-patch+json",
                                      conn=c).status)
                    codes.append(call(self.sim, "GET", "/api/v1/pods?limit=2",
                                      conn=c).status)
                c.close()
            except Exception as e:  # reported below
                errors.append(e)
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(codes, [200] * 180)
        d = self.sim.get("deployments", "default", "cc")
        self.assertEqual(len(self.sim.list("pods", "default", "app=cc")),
                         d["spec"]["replicas"])

    def test_counters(self):
        self.sim.reset_counts()
        self.sim.create(deployment("cnt", 1))
        call(self.sim, "PATCH", DEPS + "/cnt/scale", {"spec": {"replicas": 3}},
             ctype="application/merge-patch+json")
        call(self.sim, "GET", DEPS)
        call(self.sim, "GET", DEPS + "/cnt")
        call(self.sim, "GET", DEPS, token="bad")        # not executed
        c = self.sim.counts
        self.assertEqual(c[("PATCH", "deployments/scale")], 1)
        self.assertEqual(c[("patch", "deployments/scale")], 1)
        self.assertEqual(c[("GET", "deployments")], 2)
        self.assertEqual((c[("list", "deployments")], c[("get", "deployments")]),
                         (1, 1))
        self.assertEqual(self.sim.requests[-1][2], 401)
        self.assertEqual(self.sim.get("deployments", "default", "cnt")["spec"][
            "replicas"], 3)
        self.assertEqual(len(self.sim.list("pods", "default", "app=cnt")), 3)

    def test_faults(self):
        sim = self.sim
        try:
            sim.set_fault("500")
            r = call(sim, "GET", DEPS)
            self.assertEqual((r.status, r.json["reason"]), (500, "InternalError"))
            r = call(sim, "GET", "/readyz", token=None)
            self.assertEqual(r.status, 500)
            self.assertTrue(r.body.endswith(b"readyz check failed\n"))
            sim.set_fault("503", match="/scale", times=2)
            self.assertEqual(call(sim, "GET", DEPS).status, 200)
            self.assertEqual(call(sim, "GET", DEPS + "/x/scale").status, 503)
            self.assertEqual(call(sim, "GET", DEPS + "/x/scale").status, 503)
            self.assertEqual(call(sim, "GET", DEPS + "/x/scale").status, 404)
            sim.create(deployment("cf", 0))
            sim.set_fault("409", match="/cf/scale", times=1)
            r = call(sim, "PATCH", DEPS + "/cf/scale", {"spec": {"replicas": 1}},
                     ctype="application/merge-patch+json")
            self.assertEqual(r.json["message"], REF_CONFLICT["message"].replace(
                '"web"', '"cf"'))
            sim.set_fault("slow:0.5")
            t0 = time.time()
            self.assertEqual(call(sim, "GET", "/version").status, 200)
            self.assertGreaterEqual(time.time() - t0, 0.5)
            sim.set_fault("down")
            with self.assertRaises((OSError, http.client.HTTPException)):
                call(sim, "GET", "/version")
            sim.set_fault("refuse")
            with self.assertRaises(ConnectionRefusedError):
                call(sim, "GET", "/version")
        finally:
            sim.set_fault(None)
        self.assertEqual(call(sim, "GET", "/version").status, 200)

    def test_stop_ends_streams_and_idle_connections(self):
        sim = new_sim()
        sim.create(deployment("st", 1))
        pod = sim.list("pods", "default")[0]["metadata"]["name"]
        conns = []
        for path in (DEPS + "?watch=1",
                     "/api/v1/namespaces/default/pods/%s/log?follow=1" % pod,
                     "/version"):
            c = connect(sim)
            c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
            r = c.getresponse()
            if path == "/version":
                r.read()           # idle keep-alive connection
            conns.append((c, r))
        sim.wait_for(lambda: sim.streams == 2)
        t0 = time.time()
        sim.stop()
        self.assertLess(time.time() - t0, 3)
        for c, r in conns[:2]:
            try:
                while r.read(65536):
                    pass
            except (OSError, http.client.HTTPException):
                pass
            c.close()
        conns[2][0].close()
        self.assertEqual(sim.streams, 0)
        with self.assertRaises(ConnectionRefusedError):
            call(sim, "GET", "/version")

    def test_pod_logs(self):
        sim = self.sim
        sim.create(deployment("lg", 1))
        pod = sim.list("pods", "default", "app=lg")[0]["metadata"]["name"]
        base = "/api/v1/namespaces/default/pods/%s/log" % pod
        r = call(sim, "GET", base + "?container=nginx&tailLines=2")
        self.assertEqual(r.headers["Content-Type"], "text/plain")
        self.assertEqual(r.body.decode(), "%s nginx line 9\n%s nginx line 10\n"
                         % (pod, pod))
        r = call(sim, "GET", base + "?container=c3")
        self.assertEqual((r.status, r.json["message"]), (
            400, "container c3 is not valid for pod %s" % pod))
        r = call(sim, "GET", base + "?tailLines=1&timestamps=true")
        self.assertRegex(r.body.decode(), r"^\d{4}-\d\d-\d\dT[\d:.]+Z \S+ nginx "
                         r"line 10\n$")
        self.assertEqual(call(sim, "GET", base + "?limitBytes=5").body,
                         pod[:5].encode())
        r = call(sim, "GET", "/api/v1/namespaces/default/pods/none/log")
        self.assertEqual(r.json["message"], 'pods "none" not found')
        # follow: chunked, new lines arrive, ends when the pod goes away
        c = connect(sim)
        c.request("GET", base + "?follow=true&tailLines=1",
                  headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        self.assertEqual(r.headers["Transfer-Encoding"], "chunked")
        self.assertEqual(r.readline().decode(), "%s nginx line 10\n" % pod)
        sim.append_log("default", pod, "nginx", "hello")
        self.assertEqual(r.readline(), b"hello\n")
        sim.remove("pods", "default", pod)
        self.assertEqual(r.read(), b"")
        c.close()

    def test_graceful_pod_delete_and_gc(self):
        sim = self.sim
        sim.create(deployment("gc", 2))
        pods = sim.list("pods", "default", "app=gc")
        self.assertEqual(len(pods), 2)
        p = pods[0]
        self.assertEqual(p["status"]["phase"], "Running")
        self.assertTrue(p["spec"]["nodeName"].startswith("node-"))
        r = call(sim, "DELETE", "/api/v1/namespaces/default/pods/" +
                 p["metadata"]["name"])
        self.assertEqual(r.json["metadata"]["deletionGracePeriodSeconds"], 30)
        # a replacement is created at once; the old pod goes after the delay
        sim.wait_for(lambda: sim.get("pods", "default", p["metadata"]["name"])
                     is None)
        self.assertEqual(len(sim.list("pods", "default", "app=gc")), 2)
        call(sim, "DELETE", DEPS + "/gc", {"propagationPolicy": "Foreground"})
        self.assertEqual(sim.list("pods", "default", "app=gc"), [])
        self.assertIsNone(sim.get("deployments", "default", "gc"))


class HelpersTest(unittest.TestCase):
    """Pure functions of the simulator."""

    def test_yaml_subset(self):
        y = ("# manifest\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
             "  annotations:\n    note: \"a: b # not a comment\"\n"
             "spec:\n  containers:\n    - name: c\n      image: busybox\n"
             "      args: [\"-c\", \"x\"]\n      env:\n      - name: A\n"
             "        value: \"1\"\n      - {name: B, value: x}\n"
             "      command:\n      - sh\n      - |\n        echo hi\n"
             "  volumes: []\n  flag: true\n  none:\n---\nkind: Other\n")
        self.assertEqual(k8s_sim.parse_yaml(y), {
            "apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": "p", "annotations": {"note": "a: b # not a comment"}},
            "spec": {"containers": [{
                "name": "c", "image": "busybox", "args": ["-c", "x"],
                "env": [{"name": "A", "value": "1"},
                        {"name": "B", "value": "x"}],
                "command": ["sh", "echo hi\n"]}],
                "volumes": [], "flag": True, "none": None}})

    def test_label_selectors(self):
        reqs = k8s_sim.parse_label_selector(
            "app in (web,api),tier!=db,!legacy,env")
        m = k8s_sim.labels_match
        self.assertTrue(m(reqs, {"app": "web", "env": "x"}))
        self.assertFalse(m(reqs, {"app": "web", "env": "x", "legacy": "1"}))
        self.assertFalse(m(reqs, {"app": "db", "env": "x"}))
        self.assertFalse(m(reqs, {"app": "web"}))
        with self.assertRaises(k8s_sim.ApiError) as cm:
            k8s_sim.parse_label_selector("app=(")
        self.assertEqual(cm.exception.code, 400)
        self.assertEqual(k8s_sim.selector_string(k8s_sim.selector_from({
            "matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
                {"key": "c", "operator": "In", "values": ["y", "x"]}]})),
            "a=1,b=2,c in (x,y)")

    def test_human_duration(self):
        h = k8s_sim.human_duration
        self.assertEqual([h(x) for x in (5, 119, 150, 600, 3 * 3600 + 60,
                                         9 * 3600, 50 * 3600, 400 * 86400)],
                         ["5s", "119s", "2m30s", "10m", "3h1m", "9h", "2d2h",
                          "400d"])


class IPv6AndPlainTest(unittest.TestCase):

    def test_ipv6_loopback(self):
        try:
            sim = new_sim(host="::1")
        except OSError as e:
            self.skipTest("no IPv6 loopback: %s" % e)
        try:
            self.assertTrue(sim.url.startswith("https://[::1]:"))
            with urllib.request.urlopen(sim.url + "/version", context=ssl_ctx(),
                                        timeout=10) as r:
                self.assertEqual(json.load(r)["minor"], "32")
        finally:
            sim.stop()


class CommandLineTest(unittest.TestCase):

    def test_cli_prints_url_and_stops_on_sigterm(self):
        p = subprocess.Popen([sys.executable if sys.executable.startswith(
            "/usr/bin/") else "/usr/bin/python3", os.path.join(HERE, "k8s_sim.py"),
            "--port", "0", "--certdir", PKI, "--token", TOKEN],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            self.assertRegex(line, r"^listening on https://127\.0\.0\.1:\d+\n$")
            url = line.split()[-1]
            req = urllib.request.Request(url + "/api/v1/nodes", headers={
                "Authorization": "Bearer " + TOKEN})
            with urllib.request.urlopen(req, context=ssl_ctx(), timeout=10) as r:
                self.assertEqual(len(json.load(r)["items"]), 3)
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=10), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()


# ------------------------------------------------------------ real kubectl

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: solo
spec:
  containers:
  - name: c1
    image: busybox
  - name: c2
    image: busybox
"""


@unittest.skipUnless(os.access(KUBECTL, os.X_OK), "no kubectl")
class KubectlTest(unittest.TestCase):
    """The real kubectl against the simulator; tests run in order."""

    @classmethod
    def setUpClass(cls):
        cls.sim = new_sim()
        cls.dir = tempfile.mkdtemp(prefix="k8s-sim-kubectl-")
        cls.home = os.path.join(cls.dir, "home")
        os.mkdir(cls.home)
        cls.kubeconfig = cls.write_kubeconfig("kubeconfig", TOKEN)
        with open(os.path.join(cls.dir, "manifest.yaml"), "w") as f:
            f.write(MANIFEST)
        with open(os.path.join(cls.dir, "pod.yaml"), "w") as f:
            f.write(POD)

    @classmethod
    def write_kubeconfig(cls, name, token):
        path = os.path.join(cls.dir, name)
        with open(path, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n"
                    "  cluster:\n    server: %s\n    certificate-authority: %s\n"
                    "users:\n- name: agent\n  user:\n    token: %s\n"
                    "contexts:\n- name: sim\n  context:\n    cluster: sim\n"
                    "    user: agent\n    namespace: default\n"
                    "current-context: sim\n" % (
                        cls.sim.url, os.path.join(PKI, "ca.pem"), token))
        return path

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def kubectl(self, *args, rc=0, kubeconfig=None, timeout=30):
        env = {"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "KUBECONFIG": kubeconfig or self.kubeconfig, "LANG": "C"}
        p = subprocess.run([KUBECTL] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, env=env,
                           cwd=self.dir, timeout=timeout)
        if rc is not None:
            self.assertEqual(p.returncode, rc, "kubectl %s\nstdout: %s\n"
                             "stderr: %s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def test_01_get_deployments_empty(self):
        p = self.kubectl("get", "deployments")
        self.assertEqual(p.stdout, "")
        self.assertIn("No resources found in default namespace.", p.stderr)
        # the dispatcher asked /version and picked kubectl 1.32
        p = self.kubectl("version", "-o", "json")
        v = json.loads(p.stdout)
        self.assertTrue(v["clientVersion"]["gitVersion"].startswith("v1.32."),
                        v["clientVersion"])
        self.assertEqual(v["serverVersion"]["gitVersion"], "v1.32.4")

    def test_02_apply_creates(self):
        p = self.kubectl("apply", "--validate=false", "-f", "manifest.yaml")
        self.assertEqual(p.stdout.splitlines(), ["deployment.apps/web created",
                                                 "service/web created"])
        d = self.sim.get("deployments", "default", "web")
        self.assertIn("kubectl.kubernetes.io/last-applied-configuration",
                      d["metadata"]["annotations"])
        self.assertEqual(d["spec"]["replicas"], 2)
        s = self.sim.get("services", "default", "web")
        self.assertTrue(s["spec"]["clusterIP"].startswith("10.96."))

    def test_03_get_json(self):
        d = json.loads(self.kubectl("get", "deployment", "web", "-o",
                                    "json").stdout)
        self.assertEqual((d["kind"], d["apiVersion"]), ("Deployment", "apps/v1"))
        self.assertEqual(d["metadata"]["generation"], 1)
        self.assertEqual(d["status"]["readyReplicas"], 2)
        self.assertEqual(d["status"]["observedGeneration"], 1)
        self.assertEqual(d["metadata"]["uid"], self.sim.get(
            "deployments", "default", "web")["metadata"]["uid"])

    def test_04_get_table_columns(self):
        lines = self.kubectl("get", "deployments").stdout.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "READY", "UP-TO-DATE",
                                            "AVAILABLE", "AGE"])
        self.assertEqual(lines[1].split()[:4], ["web", "2/2", "2", "2"])

    def test_05_scale(self):
        self.sim.reset_counts()
        p = self.kubectl("scale", "deployment", "web", "--replicas=3")
        self.assertEqual(p.stdout.strip(), "deployment.apps/web scaled")
        self.assertEqual(self.sim.counts[("PATCH", "deployments/scale")], 1)
        d = self.sim.get("deployments", "default", "web")
        self.assertEqual((d["spec"]["replicas"], d["metadata"]["generation"]),
                         (3, 2))
        p = self.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
        self.assertIn('deployment "web" successfully rolled out', p.stdout)

    def test_06_get_pods_services_nodes(self):
        pods = self.kubectl("get", "pods").stdout.splitlines()[1:]
        self.assertEqual(len(pods), 3)
        for ln in pods:
            f = ln.split()
            self.assertTrue(f[0].startswith("web-"))
            self.assertEqual(f[1:4], ["1/1", "Running", "0"])
        svcs = self.kubectl("get", "services").stdout.splitlines()
        self.assertEqual(svcs[0].split()[:5], ["NAME", "TYPE", "CLUSTER-IP",
                                               "EXTERNAL-IP", "PORT(S)"])
        rows = {ln.split()[0]: ln.split() for ln in svcs[1:]}
        self.assertEqual(rows["web"][1], "ClusterIP")
        self.assertEqual(rows["web"][4], "80/TCP")
        self.assertEqual(rows["kubernetes"][2], "10.96.0.1")
        nodes = self.kubectl("get", "nodes").stdout.splitlines()[1:]
        self.assertEqual([ln.split()[:2] for ln in nodes],
                         [["node-%d" % i, "Ready"] for i in (1, 2, 3)])
        self.assertEqual(nodes[0].split()[2], "control-plane")
        out = self.kubectl("get", "pods", "-A", "-o", "wide").stdout
        self.assertIn("NAMESPACE", out.splitlines()[0])
        ns = self.kubectl("get", "namespaces").stdout
        self.assertIn("kube-system", ns)

    def test_07_logs(self):
        p = self.kubectl("logs", "deploy/web", "--tail=2")
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertRegex(lines[1], r"^web-\S+ nginx line 10$")
        self.kubectl("apply", "--validate=false", "-f", "pod.yaml")
        p = self.kubectl("logs", "solo", "-c", "c2", "--tail=1")
        self.assertEqual(p.stdout, "solo c2 line 10\n")
        p = self.kubectl("logs", "solo", "--tail=1")       # defaults to c1
        self.assertEqual(p.stdout, "solo c1 line 10\n")
        self.assertIn('Defaulted container "c1"', p.stderr)

    def test_08_apply_with_openapi_validation(self):
        self.sim.reset_counts()
        p = self.kubectl("apply", "-f", "manifest.yaml")
        self.assertEqual(p.stdout.splitlines(), ["deployment.apps/web configured",
                                                 "service/web unchanged"])
        self.assertGreaterEqual(self.sim.counts[("GET", "/openapi/v3")], 1)
        self.assertEqual(self.sim.counts[("PATCH", "deployments")], 1)
        self.assertEqual(self.sim.get("deployments", "default", "web")["spec"][
            "replicas"], 2)
        p = self.kubectl("apply", "-f", "manifest.yaml")
        self.assertEqual(p.stdout.splitlines(), ["deployment.apps/web unchanged",
                                                 "service/web unchanged"])

    def test_09_server_side_apply(self):
        with open(os.path.join(self.dir, "svc.yaml"), "w") as f:
            f.write("apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n"
                    "spec:\n  type: NodePort\n  selector:\n    app: api\n"
                    "  ports:\n  - port: 8080\n")
        p = self.kubectl("apply", "--server-side", "-f", "svc.yaml")
        self.assertEqual(p.stdout.strip(), "service/api serverside-applied")
        s = self.sim.get("services", "default", "api")
        self.assertTrue(30000 <= s["spec"]["ports"][0]["nodePort"] <= 32767)
        self.assertIn(("PATCH", "/api/v1/namespaces/default/services/api?"
                       "fieldManager=kubectl&fieldValidation=Strict&force=false",
                       201), list(self.sim.requests))

    def test_10_errors(self):
        p = self.kubectl("get", "deployment", "nope", rc=1)
        self.assertEqual(p.stderr.strip(), 'Error from server (NotFound): '
                         'deployments.apps "nope" not found')
        # kubectl rebuilds an Invalid message from details.kind/name/causes
        p = self.kubectl("patch", "deployment", "web", "-p",
                         '{"spec":{"replicas":-1}}', rc=1)
        self.assertEqual(p.stderr.strip(), 'The Deployment "web" is invalid: '
                         'spec.replicas: Invalid value: -1: must be greater '
                         'than or equal to 0')
        p = self.kubectl("patch", "deployment", "web", "--type=json", "-p",
                         '[{"op":"test","path":"/spec/replicas","value":9}]',
                         rc=1)
        self.assertEqual(p.stderr.strip(), "The request is invalid: the server "
                         "rejected our request due to an error in our request")
        # server-side apply against a field another manager changed
        self.kubectl("patch", "deployment", "web", "-p",
                     '{"spec":{"replicas":3}}')
        p = self.kubectl("apply", "--server-side", "-f", "manifest.yaml", rc=1)
        self.assertIn('Apply failed with 1 conflict: conflict with "kubectl-'
                      'patch" using apps/v1: .spec.replicas', p.stderr)
        bad = self.write_kubeconfig("bad-kubeconfig", "wrong-token")
        p = self.kubectl("get", "pods", rc=1, kubeconfig=bad)
        self.assertIn("error: You must be logged in to the server "
                      "(Unauthorized)", p.stderr)

    def test_11_delete(self):
        p = self.kubectl("delete", "pod", "solo")         # waits via watch
        self.assertEqual(p.stdout.strip(), 'pod "solo" deleted')
        self.assertIsNone(self.sim.get("pods", "default", "solo"))
        p = self.kubectl("delete", "deployment", "web")
        self.assertEqual(p.stdout.strip(), 'deployment.apps "web" deleted')
        self.assertIsNone(self.sim.get("deployments", "default", "web"))
        self.assertEqual(self.sim.list("pods", "default"), [])
        p = self.kubectl("get", "pods")
        self.assertIn("No resources found", p.stderr)


if __name__ == "__main__":
    harness.main()
