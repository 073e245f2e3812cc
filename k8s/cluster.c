/*
 * cluster: PROTOCOL.md 4.4 get_resources and the cluster facts sent with
 * register (k8s_cluster_info).
 *
 * Every list is read page by page (limit=500 and continue) and each item is
 * reduced to its summary right away, so only one page of raw objects is
 * held at a time. A continue token that expired (410) restarts that list
 * once from the beginning, as client-go's pager does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "k8s/k8s.h"
#include "k8s/k8s_internal.h"
#include "k8s/status.h"
#include "k8s/validate.h"

#define MAX_PAGES 10000

/* Turns one list item (borrowed) into its summary (new reference). */
typedef json_t *(*summarize_fn)(json_t *item);

static const char *str_or_empty(json_t *v)
{
	const char *s = json_string_value(v);

	return s ? s : "";
}

/* Borrowed value at a path of object keys (NULL-terminated), or NULL. */
static json_t *dig(json_t *v, const char *const *keys)
{
	for (; *keys && v; keys++)
		v = json_object_get(v, *keys);
	return v;
}

#define DIG(v, ...) dig((v), (const char *const[]){__VA_ARGS__, NULL})

/* A copy of an object value, or {} (new reference). */
static json_t *obj_or_empty(json_t *v)
{
	return json_is_object(v) ? json_copy(v) : json_object();
}

/* True when conditions[] has @type with status "True". */
static bool condition_true(json_t *conds, const char *type)
{
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c)
	{
		if (!strcmp(str_or_empty(json_object_get(c, "type")), type))
			return !strcmp(
			    str_or_empty(json_object_get(c, "status")), "True");
	}
	return false;
}

/* {cpu, memory} from a resource list ("0" when absent). */
static json_t *cpu_mem(json_t *list)
{
	json_t *cpu = json_object_get(list, "cpu");
	json_t *mem = json_object_get(list, "memory");

	return json_pack("{s:s, s:s}", "cpu",
			 json_is_string(cpu) ? json_string_value(cpu) : "0",
			 "memory",
			 json_is_string(mem) ? json_string_value(mem) : "0");
}

static json_t *node_summary(json_t *item)
{
	json_t *meta = json_object_get(item, "metadata");
	json_t *status = json_object_get(item, "status");
	json_t *info = json_object_get(status, "nodeInfo");
	json_t *cap = json_object_get(status, "capacity");
	json_t *alloc = json_object_get(status, "allocatable");

	if (!json_is_object(alloc))
		alloc = cap;
	return json_pack(
	    "{s:s, s:b, s:s, s:s, s:s, s:o, s:s, s:{s:o, s:o}}", "name",
	    str_or_empty(json_object_get(meta, "name")), "ready",
	    condition_true(json_object_get(status, "conditions"), "Ready"),
	    "version", str_or_empty(json_object_get(info, "kubeletVersion")),
	    "os", str_or_empty(json_object_get(info, "operatingSystem")),
	    "arch", str_or_empty(json_object_get(info, "architecture")),
	    "labels", obj_or_empty(json_object_get(meta, "labels")),
	    "created_at",
	    str_or_empty(json_object_get(meta, "creationTimestamp")),
	    "resources", "allocatable", cpu_mem(alloc), "capacity",
	    cpu_mem(cap));
}

static json_t *namespace_summary(json_t *item)
{
	json_t *meta = json_object_get(item, "metadata");

	return json_pack(
	    "{s:s, s:s, s:o, s:s}", "name",
	    str_or_empty(json_object_get(meta, "name")), "status",
	    str_or_empty(DIG(item, "status", "phase")), "labels",
	    obj_or_empty(json_object_get(meta, "labels")), "created_at",
	    str_or_empty(json_object_get(meta, "creationTimestamp")));
}

static json_t *deployment_summary(json_t *item)
{
	json_t *meta = json_object_get(item, "metadata");
	json_t *status = json_object_get(item, "status");
	json_t *rep = DIG(item, "spec", "replicas");
	json_int_t desired = json_is_integer(rep) ? json_integer_value(rep) : 1;
	json_int_t ready =
	    json_integer_value(json_object_get(status, "readyReplicas"));
	json_int_t avail =
	    json_integer_value(json_object_get(status, "availableReplicas"));
	json_int_t updated =
	    json_integer_value(json_object_get(status, "updatedReplicas"));
	json_t *og = json_object_get(status, "observedGeneration");
	bool observed =
	    !json_is_integer(og) ||
	    json_integer_value(og) >=
		json_integer_value(json_object_get(meta, "generation"));

	return json_pack(
	    "{s:s, s:s, s:o, s:b, s:s, s:I, s:I, s:I, s:I}", "name",
	    str_or_empty(json_object_get(meta, "name")), "namespace",
	    str_or_empty(json_object_get(meta, "namespace")), "labels",
	    obj_or_empty(json_object_get(meta, "labels")), "ready",
	    observed && ready >= desired, "created_at",
	    str_or_empty(json_object_get(meta, "creationTimestamp")),
	    "replicas", desired, "ready_replicas", ready, "available_replicas",
	    avail, "updated_replicas", updated);
}

static json_t *service_summary(json_t *item)
{
	json_t *meta = json_object_get(item, "metadata");
	json_t *spec = json_object_get(item, "spec");
	json_t *ports = json_array(), *p;
	size_t i;

	json_array_foreach(json_object_get(spec, "ports"), i, p)
	{
		json_t *o = json_pack(
		    "{s:s, s:I, s:s}", "name",
		    str_or_empty(json_object_get(p, "name")), "port",
		    json_integer_value(json_object_get(p, "port")), "protocol",
		    json_is_string(json_object_get(p, "protocol"))
			? json_string_value(json_object_get(p, "protocol"))
			: "TCP");
		json_t *tp = json_object_get(p, "targetPort");
		json_t *np = json_object_get(p, "nodePort");

		json_object_set(o, "target_port",
				tp ? tp : json_object_get(p, "port"));
		if (json_is_integer(np))
			json_object_set(o, "node_port", np);
		json_array_append_new(ports, o);
	}
	return json_pack(
	    "{s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:s}", "name",
	    str_or_empty(json_object_get(meta, "name")), "namespace",
	    str_or_empty(json_object_get(meta, "namespace")), "labels",
	    obj_or_empty(json_object_get(meta, "labels")), "type",
	    json_is_string(json_object_get(spec, "type"))
		? json_string_value(json_object_get(spec, "type"))
		: "ClusterIP",
	    "cluster_ip", str_or_empty(json_object_get(spec, "clusterIP")),
	    "ports", ports, "selector",
	    obj_or_empty(json_object_get(spec, "selector")), "created_at",
	    str_or_empty(json_object_get(meta, "creationTimestamp")));
}

/* The container state name ("running", "waiting: CrashLoopBackOff", ...). */
static json_t *container_state(json_t *state)
{
	static const char *const names[] = {"running", "waiting", "terminated"};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		json_t *s = json_object_get(state, names[i]);
		const char *reason;

		if (!s)
			continue;
		reason = json_string_value(json_object_get(s, "reason"));
		if (reason && *reason)
			return json_sprintf("%s: %s", names[i], reason);
		return json_string(names[i]);
	}
	return json_string("unknown");
}

static json_t *pod_summary(json_t *item)
{
	json_t *meta = json_object_get(item, "metadata");
	json_t *status = json_object_get(item, "status");
	json_t *statuses = json_object_get(status, "containerStatuses");
	json_t *containers = json_array(), *c, *cs;
	json_int_t restarts = 0;
	size_t i, j;

	json_array_foreach(DIG(item, "spec", "containers"), i, c)
	{
		const char *cname = str_or_empty(json_object_get(c, "name"));
		json_t *st = NULL;
		json_int_t rc;

		json_array_foreach(statuses, j, cs)
		{
			if (!strcmp(str_or_empty(json_object_get(cs, "name")),
				    cname)) {
				st = cs;
				break;
			}
		}
		rc = json_integer_value(json_object_get(st, "restartCount"));
		restarts += rc;
		json_array_append_new(
		    containers,
		    json_pack(
			"{s:s, s:s, s:b, s:I, s:o}", "name", cname, "image",
			str_or_empty(json_object_get(c, "image")), "ready",
			json_is_true(json_object_get(st, "ready")),
			"restart_count", rc, "state",
			st ? container_state(json_object_get(st, "state"))
			   : json_string("waiting")));
	}
	return json_pack(
	    "{s:s, s:s, s:o, s:b, s:s, s:s, s:s, s:o, s:I}", "name",
	    str_or_empty(json_object_get(meta, "name")), "namespace",
	    str_or_empty(json_object_get(meta, "namespace")), "labels",
	    obj_or_empty(json_object_get(meta, "labels")), "ready",
	    condition_true(json_object_get(status, "conditions"), "Ready"),
	    "created_at",
	    str_or_empty(json_object_get(meta, "creationTimestamp")), "phase",
	    str_or_empty(json_object_get(status, "phase")), "node_name",
	    str_or_empty(DIG(item, "spec", "nodeName")), "containers",
	    containers, "restarts", restarts);
}

/* One attempt at reading every page of @path (+ @query, "" for none). */
static int list_pages(struct k8s_client *c, const char *path, const char *query,
		      summarize_fn fn, json_t *out, bool *expired,
		      struct k8s_error *err)
{
	char *cont = NULL;
	int ret = 0;

	*expired = false;
	for (int page = 0;; page++) {
		char *esc = cont ? k8s_query_escape(cont) : NULL;
		char *url = k8s_strdup_printf(
		    "%s?limit=%d%s%s%s%s", path, c->sh->list_page_limit,
		    *query ? "&" : "", query, esc ? "&continue=" : "",
		    esc ? esc : "");
		json_t *list = NULL, *items, *item;
		size_t i;

		free(esc);
		if (page >= MAX_PAGES) {
			k8s_error_set(err, 0, "InternalError",
				      "listing %s returned more than %d pages",
				      path, MAX_PAGES);
			ret = -E2BIG;
			free(url);
			break;
		}
		ret = k8s_call(c, "GET", url, NULL, NULL, &list, NULL, err);
		free(url);
		if (ret < 0) {
			*expired = cont && err->code == 410;
			break;
		}
		items = json_object_get(list, "items");
		if (!json_is_array(items) && !json_is_null(items) && items) {
			k8s_error_set(err, 0, "InvalidResponse",
				      "listing %s: items is not an array",
				      path);
			json_decref(list);
			ret = -EBADMSG;
			break;
		}
		json_array_foreach(items, i, item)
		    json_array_append_new(out, fn(item));
		free(cont);
		cont = NULL;
		{
			const char *next = json_string_value(
			    DIG(list, "metadata", "continue"));

			if (next && *next)
				cont = xstrdup(next);
		}
		json_decref(list);
		if (!cont)
			break;
	}
	free(cont);
	return ret;
}

/* Every item of the collection @path as summaries: a new array in *out. */
static int list_all(struct k8s_client *c, const char *path, const char *query,
		    summarize_fn fn, json_t **out, struct k8s_error *err)
{
	json_t *arr = json_array();
	bool expired;
	int ret = list_pages(c, path, query, fn, arr, &expired, err);

	if (ret < 0 && expired) {
		LOG_INFO("continue token expired, listing again", "path=%s",
			 path);
		json_array_clear(arr);
		ret = list_pages(c, path, query, fn, arr, &expired, err);
	}
	if (ret < 0) {
		json_decref(arr);
		return ret;
	}
	*out = arr;
	return 0;
}

static json_t *count_only(json_t *item)
{
	(void)item;
	return json_null();
}

static const char *const resource_types[] = {
    "nodes", "namespaces", "deployments", "services", "pods",
};

json_t *k8s_op_get_resources(struct k8s_client *c, json_t *data,
			     struct k8s_error *err)
{
	const char *ns = NULL, *type = NULL;
	json_t *v, *reply = NULL, *list;
	char ts[40], *path = NULL, *q = NULL;
	bool want[ARRAY_SIZE(resource_types)];
	size_t i;

	if (data && !json_is_object(data) && !json_is_null(data)) {
		k8s_error_set(err, 0, "Invalid",
			      "invalid get_resources "
			      "request: data must be a JSON object");
		return NULL;
	}
	v = json_object_get(data, "namespace");
	if (v && !json_is_null(v)) {
		ns = json_string_value(v);
		if (!ns || (*ns && !k8s_is_dns1123_label(ns))) {
			k8s_error_set(err, 0, "Invalid",
				      "invalid get_resources request: "
				      "namespace: invalid value \"%.100s\": %s",
				      ns ? ns : "",
				      ns ? k8s_dns1123_label_problem(ns)
					 : "must be a string");
			return NULL;
		}
		if (!*ns)
			ns = NULL;
	}
	v = json_object_get(data, "resource_type");
	if (v && !json_is_null(v) &&
	    !(json_is_string(v) && !*json_string_value(v))) {
		type = json_string_value(v);
		for (i = 0; type && i < ARRAY_SIZE(resource_types); i++)
			if (!strcmp(type, resource_types[i]))
				break;
		if (!type || i == ARRAY_SIZE(resource_types)) {
			k8s_error_set(err, 0, "Invalid",
				      "invalid get_resources request: "
				      "resource_type: unsupported value "
				      "\"%.40s\": supported values: nodes, "
				      "namespaces, deployments, services, "
				      "pods",
				      type ? type : "");
			return NULL;
		}
	}
	for (i = 0; i < ARRAY_SIZE(resource_types); i++)
		want[i] = !type || !strcmp(type, resource_types[i]);

	reply = json_pack("{s:b}", "success", 1);
	for (i = 0; i < ARRAY_SIZE(resource_types); i++) {
		static const summarize_fn fns[] = {
		    node_summary,    namespace_summary, deployment_summary,
		    service_summary, pod_summary,
		};
		const char *t = resource_types[i];

		if (!want[i])
			continue;
		free(path);
		free(q);
		q = NULL;
		if (i == 0) {
			path = xstrdup("/api/v1/nodes");
		} else if (i == 1) {
			path = xstrdup("/api/v1/namespaces");
			if (ns)
				q = k8s_strdup_printf(
				    "fieldSelector=metadata.name%%3D%s", ns);
		} else {
			const char *group =
			    i == 2 ? "/apis/apps/v1" : "/api/v1";

			path = ns ? k8s_strdup_printf("%s/namespaces/%s/%s",
						      group, ns, t)
				  : k8s_strdup_printf("%s/%s", group, t);
		}
		if (list_all(c, path, q ? q : "", fns[i], &list, err) < 0) {
			json_decref(reply);
			reply = NULL;
			goto out_free;
		}
		json_object_set_new(reply, t, list);
	}
	if (!type)
		json_object_set_new(
		    reply, "metrics",
		    json_pack("{s:I, s:I}", "pod_count",
			      (json_int_t)json_array_size(
				  json_object_get(reply, "pods")),
			      "node_count",
			      (json_int_t)json_array_size(
				  json_object_get(reply, "nodes"))));
	if (ns)
		json_object_set_new(reply, "namespace", json_string(ns));
	clock_wall_rfc3339(ts, sizeof(ts));
	json_object_set_new(reply, "timestamp", json_string(ts));
out_free:
	free(path);
	free(q);
	return reply;
}

json_t *k8s_cluster_info(struct k8s_client *c, struct k8s_error *err)
{
	json_t *ver = NULL, *nodes = NULL, *info = NULL;
	const char *git;

	if (k8s_call(c, "GET", "/version", NULL, NULL, &ver, NULL, err) < 0)
		return NULL;
	git = json_string_value(json_object_get(ver, "gitVersion"));
	if (!git || !*git) {
		k8s_error_set(err, 0, "InvalidResponse",
			      "GET /version has no gitVersion");
		goto out_free;
	}
	if (list_all(c, "/api/v1/nodes", "", count_only, &nodes, err) < 0)
		goto out_free;
	info = json_pack("{s:s, s:I}", "version", git, "node_count",
			 (json_int_t)json_array_size(nodes));
out_free:
	json_decref(ver);
	json_decref(nodes);
	return info;
}
