/*
 * deploy: PROTOCOL.md 4.1 deploy, 4.2 delete and 4.3 scale.
 *
 * deploy validates the whole request first (every field, with a message
 * naming it), then server-side applies the Deployment and, when ports are
 * given, a ClusterIP Service (PATCH application/apply-patch+yaml with a
 * JSON body, fieldManager=pipeops-agent, force=true). Apply creates the
 * object when it is absent and is idempotent, as on a real API server. A
 * server that does not know apply (415 UnsupportedMediaType: Kubernetes
 * before 1.16) gets GET then POST or PUT instead.
 * scale reads the scale subresource and PUTs it back with its
 * resourceVersion; a 409 Conflict is retried with a fresh read.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "k8s/k8s.h"
#include "k8s/k8s_internal.h"
#include "k8s/status.h"
#include "k8s/validate.h"

#define FIELD_MANAGER	      "pipeops-agent"
#define APPLY_QUERY	      "?fieldManager=" FIELD_MANAGER "&force=true"
#define APPLY_TYPE	      "application/apply-patch+yaml"
#define MAX_PORTS	      64
#define MAX_CONFLICT_RETRIES  5
#define MAX_ANNOTATIONS_BYTES (256 * 1024)
#define INT32_MAX_VALUE	      2147483647LL

struct deploy_port {
	json_int_t container_port;
	json_int_t service_port;
	const char *name;     /* borrowed from the request; may be NULL */
	const char *protocol; /* static or borrowed */
};

/* A validated deploy request; strings and objects borrowed from data. */
struct deploy_req {
	const char *name;
	const char *ns;
	const char *image;
	bool has_replicas;
	json_int_t replicas;
	struct deploy_port ports[MAX_PORTS];
	size_t nports;
	json_t *env;	     /* object or NULL */
	json_t *resources;   /* object or NULL */
	json_t *labels;	     /* object or NULL */
	json_t *annotations; /* object or NULL */
};

/* Fills @err with "invalid <op> request: <text>" (code 0, Invalid). */
__attribute__((format(printf, 3, 4))) static int
invalid(struct k8s_error *err, const char *op, const char *fmt, ...)
{
	char tmp[2 * sizeof(err->message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	k8s_error_set(err, 0, "Invalid", "invalid %s request: %s", op, tmp);
	return -EINVAL;
}

/* Value of @key when present and not null, else NULL (borrowed). */
static json_t *opt(json_t *data, const char *key)
{
	json_t *v = json_object_get(data, key);

	return json_is_null(v) ? NULL : v;
}

/* The string value of @v, or "" (borrowed). */
static const char *str_or_empty(json_t *v)
{
	const char *s = json_string_value(v);

	return s ? s : "";
}

/* Reads name (DNS-1123 label when @label, else subdomain) and namespace
 * into *name / *ns (borrowed). */
static int check_name_ns(struct k8s_client *c, json_t *data, const char *op,
			 bool label, const char **name, const char **ns,
			 struct k8s_error *err)
{
	json_t *v = opt(data, "name");
	const char *s;

	if (!json_is_object(data))
		return invalid(err, op, "data must be a JSON object");
	if (!v)
		return invalid(err, op, "name: required");
	if (!json_is_string(v))
		return invalid(err, op, "name: must be a string");
	s = json_string_value(v);
	if (label && !k8s_is_dns1123_label(s))
		return invalid(err, op, "name: invalid value \"%.100s\": %s", s,
			       k8s_dns1123_label_problem(s));
	if (!label && !k8s_is_dns1123_subdomain(s))
		return invalid(err, op,
			       "name: invalid value \"%.100s\": a "
			       "lowercase RFC 1123 subdomain must consist of "
			       "lower case alphanumeric characters, '-' or "
			       "'.', and must start and end with an "
			       "alphanumeric character",
			       s);
	*name = s;
	v = opt(data, "namespace");
	if (!v || (json_is_string(v) && !*json_string_value(v))) {
		*ns = k8s_client_default_namespace(c);
		return 0;
	}
	if (!json_is_string(v))
		return invalid(err, op, "namespace: must be a string");
	s = json_string_value(v);
	if (!k8s_is_dns1123_label(s))
		return invalid(err, op,
			       "namespace: invalid value \"%.100s\": "
			       "%s",
			       s, k8s_dns1123_label_problem(s));
	*ns = s;
	return 0;
}

/* Integer field in [lo, hi]; @what names it in messages. */
static int check_int(json_t *v, const char *op, const char *what, json_int_t lo,
		     json_int_t hi, json_int_t *out, struct k8s_error *err)
{
	json_int_t n;

	if (json_is_real(v)) {
		double d = json_real_value(v);

		if (d != (double)(json_int_t)d)
			return invalid(err, op, "%s: %g is not an integer",
				       what, d);
		n = (json_int_t)d;
	} else if (json_is_integer(v)) {
		n = json_integer_value(v);
	} else {
		return invalid(err, op, "%s: must be an integer", what);
	}
	if (n < lo || n > hi)
		return invalid(err, op, "%s: %lld is out of range %lld..%lld",
			       what, (long long)n, (long long)lo,
			       (long long)hi);
	*out = n;
	return 0;
}

static int check_replicas(json_t *v, const char *op, json_int_t *out,
			  struct k8s_error *err)
{
	if (json_is_integer(v) && json_integer_value(v) < 0)
		return invalid(err, op,
			       "replicas: %lld must be greater than "
			       "or equal to 0",
			       (long long)json_integer_value(v));
	return check_int(v, op, "replicas", 0, INT32_MAX_VALUE, out, err);
}

/* An object whose values are all strings; keys checked with @key_ok. */
static int check_string_map(json_t *m, const char *field,
			    bool (*key_ok)(const char *), const char *key_rule,
			    struct k8s_error *err)
{
	const char *k;
	json_t *v;

	if (!json_is_object(m))
		return invalid(err, "deploy",
			       "%s: must be an object of "
			       "strings",
			       field);
	json_object_foreach(m, k, v)
	{
		if (!key_ok(k))
			return invalid(err, "deploy",
				       "%s: invalid key "
				       "\"%.100s\": %s",
				       field, k, key_rule);
		if (!json_is_string(v))
			return invalid(err, "deploy",
				       "%s.%.100s: value must "
				       "be a string",
				       field, k);
	}
	return 0;
}

static int check_ports(json_t *ports, struct deploy_req *r,
		       struct k8s_error *err)
{
	size_t i;
	json_t *p;

	if (!json_is_array(ports))
		return invalid(err, "deploy", "ports: must be an array");
	if (json_array_size(ports) > MAX_PORTS)
		return invalid(err, "deploy", "ports: more than %d entries",
			       MAX_PORTS);
	json_array_foreach(ports, i, p)
	{
		struct deploy_port *dp = &r->ports[i];
		json_t *v;
		char what[48];

		if (!json_is_object(p))
			return invalid(err, "deploy",
				       "ports[%zu]: must be an "
				       "object",
				       i);
		v = opt(p, "container_port");
		if (!v)
			return invalid(err, "deploy",
				       "ports[%zu]."
				       "container_port: required",
				       i);
		strfmt(what, sizeof(what), "ports[%zu].container_port", i);
		if (check_int(v, "deploy", what, 1, 65535, &dp->container_port,
			      err))
			return -EINVAL;
		dp->service_port = dp->container_port;
		v = opt(p, "service_port");
		strfmt(what, sizeof(what), "ports[%zu].service_port", i);
		if (v && check_int(v, "deploy", what, 1, 65535,
				   &dp->service_port, err))
			return -EINVAL;
		dp->name = NULL;
		v = opt(p, "name");
		if (v && (!json_is_string(v) || *json_string_value(v))) {
			if (!json_is_string(v) ||
			    !k8s_is_port_name(json_string_value(v)))
				return invalid(
				    err, "deploy",
				    "ports[%zu].name:"
				    " invalid value \"%.40s\": must "
				    "be at most 15 lower case "
				    "letters, digits or '-', with at "
				    "least one letter",
				    i,
				    json_is_string(v) ? json_string_value(v)
						      : "");
			dp->name = json_string_value(v);
		}
		dp->protocol = "TCP";
		v = opt(p, "protocol");
		if (v) {
			const char *s = json_string_value(v);

			if (!s || (strcmp(s, "TCP") && strcmp(s, "UDP") &&
				   strcmp(s, "SCTP")))
				return invalid(err, "deploy",
					       "ports[%zu]."
					       "protocol: unsupported value "
					       "\"%.20s\": supported values: "
					       "TCP, UDP, SCTP",
					       i, s ? s : "");
			dp->protocol = s;
		}
		for (size_t j = 0; j < i; j++) {
			struct deploy_port *o = &r->ports[j];

			if (o->container_port == dp->container_port &&
			    !strcmp(o->protocol, dp->protocol))
				return invalid(err, "deploy",
					       "ports[%zu]: "
					       "duplicate container_port "
					       "%lld/%s",
					       i, (long long)dp->container_port,
					       dp->protocol);
			if (o->service_port == dp->service_port &&
			    !strcmp(o->protocol, dp->protocol))
				return invalid(err, "deploy",
					       "ports[%zu]: "
					       "duplicate service_port "
					       "%lld/%s",
					       i, (long long)dp->service_port,
					       dp->protocol);
			if (o->name && dp->name && !strcmp(o->name, dp->name))
				return invalid(err, "deploy",
					       "ports[%zu].name:"
					       " duplicate value \"%s\"",
					       i, dp->name);
		}
	}
	r->nports = json_array_size(ports);
	return 0;
}

static int check_resources(json_t *res, struct k8s_error *err)
{
	const char *kind, *rname;
	json_t *m, *q;

	if (!json_is_object(res))
		return invalid(err, "deploy", "resources: must be an object");
	json_object_foreach(res, kind, m)
	{
		if (strcmp(kind, "limits") && strcmp(kind, "requests"))
			return invalid(err, "deploy",
				       "resources.%.40s: "
				       "unsupported key: supported keys: "
				       "limits, requests",
				       kind);
		if (json_is_null(m))
			continue;
		if (!json_is_object(m))
			return invalid(err, "deploy",
				       "resources.%s: must be "
				       "an object",
				       kind);
		json_object_foreach(m, rname, q)
		{
			if (!k8s_is_resource_name(rname))
				return invalid(err, "deploy",
					       "resources.%s."
					       "%.60s: unknown resource name: "
					       "use cpu, memory, "
					       "ephemeral-storage, "
					       "hugepages-<size> or a "
					       "domain-prefixed name",
					       kind, rname);
			if (json_is_integer(q) && json_integer_value(q) >= 0)
				continue;
			if (!json_is_string(q))
				return invalid(err, "deploy",
					       "resources.%s."
					       "%s: must be a quantity string "
					       "such as \"500m\" or \"128Mi\"",
					       kind, rname);
			if (!k8s_is_quantity(json_string_value(q)))
				return invalid(
				    err, "deploy",
				    "resources.%s."
				    "%s: invalid quantity \"%.40s\" "
				    "(expected e.g. \"500m\", \"2\", "
				    "\"128Mi\", \"1G\")",
				    kind, rname, json_string_value(q));
			if (json_string_value(q)[0] == '-')
				return invalid(err, "deploy",
					       "resources.%s."
					       "%s: %.40s must be greater than "
					       "or equal to 0",
					       kind, rname,
					       json_string_value(q));
		}
	}
	return 0;
}

static bool image_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

static int check_deploy(struct k8s_client *c, json_t *data,
			struct deploy_req *r, struct k8s_error *err)
{
	json_t *v;
	const char *app;

	memset(r, 0, sizeof(*r));
	if (check_name_ns(c, data, "deploy", true, &r->name, &r->ns, err))
		return -EINVAL;
	v = opt(data, "image");
	if (!v || (json_is_string(v) && !*json_string_value(v)))
		return invalid(err, "deploy", "image: required");
	if (!json_is_string(v) || !image_ok(json_string_value(v)))
		return invalid(err, "deploy",
			       "image: must be a string without "
			       "spaces or control characters");
	r->image = json_string_value(v);
	v = opt(data, "replicas");
	if (v) {
		if (check_replicas(v, "deploy", &r->replicas, err))
			return -EINVAL;
		r->has_replicas = true;
	}
	v = opt(data, "ports");
	if (v && check_ports(v, r, err))
		return -EINVAL;
	if (r->nports > 0 && !k8s_is_dns1035_label(r->name))
		return invalid(err, "deploy",
			       "name: invalid value \"%s\": a "
			       "Service is created for the ports, and a "
			       "Service name must start with a letter",
			       r->name);
	r->env = opt(data, "environment");
	if (r->env &&
	    check_string_map(r->env, "environment", k8s_is_env_var_name,
			     "an environment variable name must "
			     "consist of alphabetic characters, "
			     "digits, '_', '-', or '.', and must "
			     "not start with a digit",
			     err))
		return -EINVAL;
	r->resources = opt(data, "resources");
	if (r->resources && check_resources(r->resources, err))
		return -EINVAL;
	r->labels = opt(data, "labels");
	if (r->labels) {
		const char *k;

		if (check_string_map(r->labels, "labels", k8s_is_qualified_name,
				     "must be [prefix/]name with name at "
				     "most 63 alphanumerics, '-', '_' or '.'",
				     err))
			return -EINVAL;
		json_object_foreach(r->labels, k, v)
		{
			if (!k8s_is_label_value(json_string_value(v)))
				return invalid(
				    err, "deploy",
				    "labels.%s: "
				    "invalid value \"%.70s\": must be "
				    "empty or at most 63 "
				    "alphanumerics, '-', '_' or '.', "
				    "starting and ending with an "
				    "alphanumeric",
				    k, json_string_value(v));
		}
		app = json_string_value(json_object_get(r->labels, "app"));
		if (app && strcmp(app, r->name))
			return invalid(err, "deploy",
				       "labels.app: must be "
				       "\"%s\" or absent: the selector is "
				       "app=<name>",
				       r->name);
	}
	r->annotations = opt(data, "annotations");
	if (r->annotations) {
		const char *k;
		size_t total = 0;

		if (check_string_map(r->annotations, "annotations",
				     k8s_is_qualified_name,
				     "must be [prefix/]name with name at "
				     "most 63 alphanumerics, '-', '_' or '.'",
				     err))
			return -EINVAL;
		json_object_foreach(r->annotations, k, v) total +=
		    strlen(k) + json_string_length(v);
		if (total > MAX_ANNOTATIONS_BYTES)
			return invalid(err, "deploy",
				       "annotations: may not be "
				       "more than 256 KiB in total");
	}
	return 0;
}

/* ---- manifests --------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* {"app": name} plus the request's labels. New reference. */
static json_t *labels_for(const struct deploy_req *r)
{
	json_t *l = r->labels ? json_copy(r->labels) : json_object();

	json_object_set_new(l, "app", json_string(r->name));
	return l;
}

/* env as [{name, value}] sorted by name, so that equal requests give equal
 * manifests. New reference. */
static json_t *env_list(json_t *env)
{
	size_t n = json_object_size(env), i = 0;
	const char **keys = xcalloc(n ? n : 1, sizeof(*keys));
	json_t *list = json_array(), *v;
	const char *k;

	json_object_foreach(env, k, v) keys[i++] = k;
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 0; i < n; i++)
		json_array_append_new(
		    list, json_pack("{s:s, s:O}", "name", keys[i], "value",
				    json_object_get(env, keys[i])));
	free(keys);
	return list;
}

/* resources with integer quantities turned into strings. New reference. */
static json_t *resources_obj(json_t *res)
{
	json_t *out = json_object(), *m, *q;
	const char *kind, *rname;
	char num[32];

	json_object_foreach(res, kind, m)
	{
		json_t *o;

		if (!json_is_object(m))
			continue;
		o = json_object();
		json_object_foreach(m, rname, q)
		{
			if (json_is_integer(q)) {
				strfmt(num, sizeof(num), "%lld",
				       (long long)json_integer_value(q));
				json_object_set_new(o, rname, json_string(num));
			} else {
				json_object_set(o, rname, q);
			}
		}
		json_object_set_new(out, kind, o);
	}
	return out;
}

/* The Deployment to apply. New reference. */
static json_t *deployment_manifest(const struct deploy_req *r)
{
	json_t *meta, *container, *spec, *d;

	meta = json_pack("{s:s, s:s, s:o}", "name", r->name, "namespace", r->ns,
			 "labels", labels_for(r));
	if (r->annotations && json_object_size(r->annotations))
		json_object_set(meta, "annotations", r->annotations);
	container = json_pack("{s:s, s:s}", "name", r->name, "image", r->image);
	if (r->nports) {
		json_t *ports = json_array();

		for (size_t i = 0; i < r->nports; i++) {
			json_t *p =
			    json_pack("{s:I, s:s}", "containerPort",
				      (json_int_t)r->ports[i].container_port,
				      "protocol", r->ports[i].protocol);

			if (r->ports[i].name)
				json_object_set_new(
				    p, "name", json_string(r->ports[i].name));
			json_array_append_new(ports, p);
		}
		json_object_set_new(container, "ports", ports);
	}
	if (r->env && json_object_size(r->env))
		json_object_set_new(container, "env", env_list(r->env));
	if (r->resources)
		json_object_set_new(container, "resources",
				    resources_obj(r->resources));
	spec =
	    json_pack("{s:{s:{s:s}}, s:{s:{s:o}, s:{s:[o]}}}", "selector",
		      "matchLabels", "app", r->name, "template", "metadata",
		      "labels", labels_for(r), "spec", "containers", container);
	if (r->has_replicas)
		json_object_set_new(spec, "replicas",
				    json_integer(r->replicas));
	d = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "apps/v1", "kind",
		      "Deployment", "metadata", meta, "spec", spec);
	return d;
}

/* The ClusterIP Service to apply. New reference. */
static json_t *service_manifest(const struct deploy_req *r)
{
	json_t *ports = json_array();
	char gen[32];

	for (size_t i = 0; i < r->nports; i++) {
		const struct deploy_port *dp = &r->ports[i];
		json_t *p = json_pack(
		    "{s:I, s:I, s:s}", "port", (json_int_t)dp->service_port,
		    "targetPort", (json_int_t)dp->container_port, "protocol",
		    dp->protocol);

		/* A Service with several ports needs a name on each. */
		if (dp->name) {
			json_object_set_new(p, "name", json_string(dp->name));
		} else if (r->nports > 1) {
			strfmt(gen, sizeof(gen), "%s-%lld",
			       !strcmp(dp->protocol, "TCP")   ? "tcp"
			       : !strcmp(dp->protocol, "UDP") ? "udp"
							      : "sctp",
			       (long long)dp->service_port);
			json_object_set_new(p, "name", json_string(gen));
		}
		json_array_append_new(ports, p);
	}
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, "
			 "s:{s:s, s:{s:s}, s:o}}",
			 "apiVersion", "v1", "kind", "Service", "metadata",
			 "name", r->name, "namespace", r->ns, "labels",
			 labels_for(r), "spec", "type", "ClusterIP", "selector",
			 "app", r->name, "ports", ports);
}

/* Object values of @src merged into @dst recursively; arrays and scalars
 * replace. Both borrowed; @dst is modified. */
static void merge_into(json_t *dst, json_t *src)
{
	const char *k;
	json_t *v;

	json_object_foreach(src, k, v)
	{
		json_t *d = json_object_get(dst, k);

		if (json_is_object(v) && json_is_object(d))
			merge_into(d, v);
		else
			json_object_set(dst, k, v);
	}
}

/*
 * Create-or-update without apply: GET @obj_path; 404 -> POST @manifest to
 * @coll_path; else PUT the live object with @manifest merged in (its
 * resourceVersion as precondition), retrying on 409. *out gets the stored
 * object (new reference).
 */
static int create_or_replace(struct k8s_client *c, const char *coll_path,
			     const char *obj_path, json_t *manifest,
			     json_t **out, struct k8s_error *err)
{
	char *q =
	    k8s_strdup_printf("%s?fieldManager=" FIELD_MANAGER, coll_path);
	char *oq =
	    k8s_strdup_printf("%s?fieldManager=" FIELD_MANAGER, obj_path);
	json_t *live = NULL;
	int ret = -EIO;

	for (int attempt = 0; attempt < MAX_CONFLICT_RETRIES; attempt++) {
		ret =
		    k8s_call(c, "GET", obj_path, NULL, NULL, &live, NULL, err);
		if (ret < 0 && err->code == 404) {
			ret = k8s_call(c, "POST", q, NULL, manifest, out, NULL,
				       err);
			if (ret < 0 && err->code == 409 &&
			    !strcmp(err->reason, "AlreadyExists"))
				continue;
			break;
		}
		if (ret < 0)
			break;
		merge_into(live, manifest);
		ret = k8s_call(c, "PUT", oq, NULL, live, out, NULL, err);
		json_decref(live);
		live = NULL;
		if (ret < 0 && err->code == 409 &&
		    !strcmp(err->reason, "Conflict"))
			continue;
		break;
	}
	free(q);
	free(oq);
	return ret;
}

/* Server-side apply of @manifest at @obj_path (falls back to
 * create_or_replace on 415). *out: the stored object, new reference. */
static int apply(struct k8s_client *c, const char *coll_path,
		 const char *obj_path, json_t *manifest, json_t **out,
		 struct k8s_error *err)
{
	char *path = k8s_strdup_printf("%s" APPLY_QUERY, obj_path);
	int ret =
	    k8s_call(c, "PATCH", path, APPLY_TYPE, manifest, out, NULL, err);

	if (ret < 0 && err->code == 415) {
		LOG_INFO("server-side apply not supported, using GET and "
			 "POST/PUT",
			 "path=%s", obj_path);
		ret = create_or_replace(c, coll_path, obj_path, manifest, out,
					err);
	}
	free(path);
	return ret;
}

json_t *k8s_op_deploy(struct k8s_client *c, json_t *data, struct k8s_error *err)
{
	struct deploy_req r;
	json_t *dep = NULL, *svc = NULL, *stored = NULL, *reply = NULL;
	json_t *meta;
	char *coll = NULL, *obj = NULL;

	if (check_deploy(c, data, &r, err))
		return NULL;

	dep = deployment_manifest(&r);
	coll =
	    k8s_strdup_printf("/apis/apps/v1/namespaces/%s/deployments", r.ns);
	obj = k8s_strdup_printf("%s/%s", coll, r.name);
	if (apply(c, coll, obj, dep, &stored, err))
		goto out_free;
	meta = json_object_get(stored, "metadata");
	reply = json_pack(
	    "{s:b, s:s++++, s:{s:s, s:s, s:s, s:I, s:s}}", "success", 1,
	    "message", "deployment ", r.ns, "/", r.name, " applied",
	    "deployment", "name", r.name, "namespace", r.ns, "uid",
	    str_or_empty(json_object_get(meta, "uid")), "generation",
	    json_integer_value(json_object_get(meta, "generation")),
	    "resource_version",
	    str_or_empty(json_object_get(meta, "resourceVersion")));
	json_decref(stored);
	stored = NULL;
	if (r.nports == 0)
		goto out_free;

	svc = service_manifest(&r);
	free(coll);
	free(obj);
	coll = k8s_strdup_printf("/api/v1/namespaces/%s/services", r.ns);
	obj = k8s_strdup_printf("%s/%s", coll, r.name);
	if (apply(c, coll, obj, svc, &stored, err)) {
		json_decref(reply);
		reply = NULL;
		goto out_free;
	}
	{
		json_t *s = json_pack("{s:s}", "name", r.name);
		const char *ip = json_string_value(json_object_get(
		    json_object_get(stored, "spec"), "clusterIP"));

		if (ip && *ip)
			json_object_set_new(s, "cluster_ip", json_string(ip));
		json_object_set_new(reply, "service", s);
	}
out_free:
	json_decref(stored);
	json_decref(dep);
	json_decref(svc);
	free(coll);
	free(obj);
	return reply;
}

json_t *k8s_op_delete(struct k8s_client *c, json_t *data, struct k8s_error *err)
{
	const char *name, *ns;
	char *path = NULL;
	json_t *opts = NULL, *reply = NULL;
	struct k8s_error dep_err;
	bool dep_missing = false, svc_deleted = false;
	int ret;

	if (check_name_ns(c, data, "delete", false, &name, &ns, err))
		return NULL;
	opts = json_pack("{s:s, s:s, s:s}", "kind", "DeleteOptions",
			 "apiVersion", "v1", "propagationPolicy", "Background");
	path = k8s_strdup_printf("/apis/apps/v1/namespaces/%s/deployments/%s",
				 ns, name);
	ret = k8s_call(c, "DELETE", path, NULL, opts, NULL, NULL, &dep_err);
	if (ret < 0 && dep_err.code != 404) {
		*err = dep_err;
		goto out_free;
	}
	dep_missing = ret < 0;

	/* The Service goes too, even when the Deployment was already gone
	 * (a retried delete must still clean up). A missing one is fine. */
	free(path);
	path = k8s_strdup_printf("/api/v1/namespaces/%s/services/%s", ns, name);
	ret = k8s_call(c, "DELETE", path, NULL, opts, NULL, NULL, err);
	if (ret < 0 && err->code != 404) {
		if (!dep_missing) {
			char msg[sizeof(err->message)];

			snprintf(msg, sizeof(msg), "%s", err->message);
			k8s_error_set(err, err->code, err->reason,
				      "deployment %s/%s deleted, but deleting "
				      "its service failed: %s",
				      ns, name, msg);
		}
		goto out_free;
	}
	svc_deleted = ret == 0;
	if (dep_missing) {
		*err = dep_err;
		goto out_free;
	}
	reply =
	    json_pack("{s:b, s:s++++, s:s, s:s, s:b}", "success", 1, "message",
		      "deployment ", ns, "/", name, " deleted", "name", name,
		      "namespace", ns, "service_deleted", svc_deleted);
out_free:
	json_decref(opts);
	free(path);
	return reply;
}

json_t *k8s_op_scale(struct k8s_client *c, json_t *data, struct k8s_error *err)
{
	const char *name, *ns;
	json_t *v, *scale = NULL, *stored = NULL, *reply = NULL;
	json_int_t replicas, previous = 0, now;
	char *path, msg[256];
	int ret = -EIO;

	if (check_name_ns(c, data, "scale", false, &name, &ns, err))
		return NULL;
	v = opt(data, "replicas");
	if (!v) {
		invalid(err, "scale", "replicas: required");
		return NULL;
	}
	if (check_replicas(v, "scale", &replicas, err))
		return NULL;

	path = k8s_strdup_printf(
	    "/apis/apps/v1/namespaces/%s/deployments/%s/scale", ns, name);
	for (int attempt = 0; attempt < MAX_CONFLICT_RETRIES; attempt++) {
		json_t *spec;

		ret = k8s_call(c, "GET", path, NULL, NULL, &scale, NULL, err);
		if (ret < 0 && err->code == 409)
			continue;
		if (ret < 0)
			break;
		spec = json_object_get(scale, "spec");
		if (!json_is_object(spec)) {
			spec = json_object();
			json_object_set_new(scale, "spec", spec);
		}
		previous =
		    json_integer_value(json_object_get(spec, "replicas"));
		json_object_set_new(spec, "replicas", json_integer(replicas));
		ret = k8s_call(c, "PUT", path, NULL, scale, &stored, NULL, err);
		json_decref(scale);
		scale = NULL;
		if (ret == 0 || err->code != 409)
			break;
		LOG_DEBUG("scale conflict, retrying with a fresh read",
			  "namespace=%s name=%s attempt=%d", ns, name,
			  attempt + 1);
	}
	if (ret < 0)
		goto out_free;
	/* "spec": {} means 0 (replicas is omitempty). */
	now = json_integer_value(
	    json_object_get(json_object_get(stored, "spec"), "replicas"));
	strfmt(msg, sizeof(msg), "deployment %s/%s scaled to %lld", ns, name,
	       (long long)now);
	reply = json_pack("{s:b, s:s, s:s, s:s, s:I, s:I}", "success", 1,
			  "message", msg, "name", name, "namespace", ns,
			  "replicas", (json_int_t)now, "previous_replicas",
			  (json_int_t)previous);
out_free:
	json_decref(stored);
	free(path);
	return reply;
}
