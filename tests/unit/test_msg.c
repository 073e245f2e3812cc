/* Unit tests for the message envelope (agent/msg.c) and backoff. */
#include <errno.h>
#include <jansson.h>
#include <mbedtls/base64.h>

#include "agent/msg.h"
#include "common/backoff.h"
#include "tests/unit/check.h"

struct decode_case {
	const char *text;
	int rc;		      /* 0 or -EINVAL */
	const char *id;	      /* id reported (also on failure) */
	const char *err_has;  /* fragment of the error text */
	const char *data_key; /* a key expected in the decoded data */
};

static const struct decode_case decode_cases[] = {
    {"{\"id\":\"a\",\"type\":\"deploy\",\"data\":{\"name\":\"web\"}}", 0, "a",
     NULL, "name"},
    {"{\"id\":\"b\",\"type\":\"deploy\",\"data\":\"{\\\"name\\\":1}\"}", 0, "b",
     NULL, "name"},
    {"{\"id\":\"c\",\"type\":\"scale\"}", 0, "c", NULL, NULL},
    {"{\"id\":\"c2\",\"type\":\"scale\",\"data\":null}", 0, "c2", NULL, NULL},
    {"not json", -EINVAL, "", "invalid JSON", NULL},
    /* valid JSON jansson refuses: the id is still found */
    {"{\"id\":\"big\",\"type\":\"scale\",\"data\":"
     "{\"replicas\":9223372036854775808}}",
     -EINVAL, "big", "too big integer", NULL},
    {"{\"id\":\"nul\",\"type\":\"x\",\"data\":{\"k\":\"a\\u0000\"}}", -EINVAL,
     "nul", "invalid JSON", NULL},
    {"[1,2]", -EINVAL, "", "not a JSON object", NULL},
    {"{\"type\":\"deploy\"}", -EINVAL, "", "missing \"id\"", NULL},
    {"{\"id\":\"d\"}", -EINVAL, "d", "missing \"type\"", NULL},
    {"{\"id\":\"e\",\"type\":\"x\",\"data\":42}", -EINVAL, "e",
     "object or a string", NULL},
    {"{\"id\":\"f\",\"type\":\"x\",\"data\":\"%%%\"}", -EINVAL, "f",
     "neither JSON nor base64", NULL},
    {"{\"id\":\"g\",\"type\":\"x\",\"data\":\"[1]\"}", -EINVAL, "g",
     "does not hold a JSON object", NULL},
};

static void test_decode_table(void)
{
	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(*decode_cases);
	     i++) {
		const struct decode_case *c = &decode_cases[i];
		struct request *r = NULL;
		char err[256] = "", *id = NULL;
		int rc = msg_decode(c->text, strlen(c->text), EP_RUNNER, &r,
				    err, sizeof(err), &id);

		CHECK_INT(rc, c->rc);
		/* the id: in the request, or handed back to answer a failure */
		CHECK_STR(rc == 0 ? (r ? r->id : "") : (id ? id : ""), c->id);
		CHECK(rc != 0 || id == NULL);
		free(id);
		if (c->err_has && !strstr(err, c->err_has)) {
			fprintf(stderr, "  case %zu: error \"%s\"\n", i, err);
			CHECK(0);
		}
		if (rc == 0) {
			CHECK(r != NULL);
			CHECK(json_is_object(r->data));
			CHECK_INT(r->origin, EP_RUNNER);
			if (c->data_key)
				CHECK(json_object_get(r->data, c->data_key));
		} else {
			CHECK(r == NULL);
		}
		request_free(r);
	}
}

static void test_long_id_echoed_whole(void)
{
	char text[2300], id_in[2001], err[128], *id = NULL;
	struct request *r;

	memset(id_in, 'J', 2000);
	id_in[2000] = '\0';
	snprintf(text, sizeof(text), "{\"id\":\"%s\",\"data\":{}}", id_in);
	CHECK_INT(
	    msg_decode(text, strlen(text), EP_CP, &r, err, sizeof(err), &id),
	    -EINVAL);
	CHECK_STR(id, id_in);
	free(id);
}

static void test_decode_base64_data(void)
{
	const char *inner = "{\"name\":\"web\",\"replicas\":3}";
	unsigned char b64[128];
	size_t n;
	char text[256], err[128], *id = NULL;
	struct request *r;

	mbedtls_base64_encode(b64, sizeof(b64), &n,
			      (const unsigned char *)inner, strlen(inner));
	snprintf(text, sizeof(text),
		 "{\"id\":\"h\",\"type\":\"scale\",\"data\":\"%s\"}", b64);
	CHECK_INT(
	    msg_decode(text, strlen(text), EP_CP, &r, err, sizeof(err), &id),
	    0);
	CHECK(id == NULL);
	CHECK_INT(json_integer_value(json_object_get(r->data, "replicas")), 3);
	request_free(r);
}

static void test_reply_shapes(void)
{
	json_t *ok, *bad, *d;

	msg_set_id_prefix("agent-x");
	ok = msg_reply_ok("req-1", NULL);
	CHECK_STR(json_string_value(json_object_get(ok, "type")), "response");
	CHECK_STR(json_string_value(json_object_get(ok, "request_id")),
		  "req-1");
	d = json_object_get(ok, "data");
	CHECK(json_is_true(json_object_get(d, "success")));
	CHECK_STR(json_string_value(json_object_get(d, "request_id")), "req-1");
	CHECK(json_object_get(ok, "error") == NULL);
	CHECK(strncmp(json_string_value(json_object_get(ok, "id")), "agent-x-",
		      8) == 0);

	bad = msg_reply_error("req-2", "boom", 404, "NotFound", NULL);
	CHECK_STR(json_string_value(json_object_get(bad, "error")), "boom");
	d = json_object_get(bad, "data");
	CHECK(json_is_false(json_object_get(d, "success")));
	CHECK_STR(json_string_value(json_object_get(d, "error")), "boom");
	CHECK_INT(json_integer_value(json_object_get(d, "code")), 404);
	CHECK_STR(json_string_value(json_object_get(d, "reason")), "NotFound");
	/* distinct ids */
	CHECK(strcmp(json_string_value(json_object_get(ok, "id")),
		     json_string_value(json_object_get(bad, "id"))) != 0);
	json_decref(ok);
	json_decref(bad);

	bad = msg_reply_error("req-3", "local", 0, "", NULL);
	d = json_object_get(bad, "data");
	CHECK(json_object_get(d, "code") == NULL);
	CHECK(json_object_get(d, "reason") == NULL);
	json_decref(bad);
}

static void test_outmsg(void)
{
	json_t *m = msg_envelope("heartbeat", NULL, NULL);
	struct outmsg *o = outmsg_from_json(m, OUT_DROP_WHEN_DOWN);

	CHECK_STR(o->type, "heartbeat");
	CHECK_INT(o->len, strlen(o->text));
	CHECK(strstr(o->text, "\"timestamp\"") != NULL);
	CHECK(o->flags == OUT_DROP_WHEN_DOWN);
	outmsg_free(o);
	json_decref(m);
}

static void test_backoff(void)
{
	struct backoff b;
	int64_t d;

	backoff_init(&b, 1000, 8000);
	d = backoff_next(&b, 0);
	CHECK_INT(d, 500); /* lower half of the first bound */
	d = backoff_next(&b, 0xffffffffu);
	CHECK(d >= 1000 && d <= 2000);
	backoff_next(&b, 0);
	backoff_next(&b, 0);
	d = backoff_next(&b, 7); /* capped at max */
	CHECK(d >= 4000 && d <= 8000);
	CHECK_INT(b.current_ms, 8000);
	/* a short-lived link does not reset the bound */
	backoff_up(&b, 100000);
	backoff_down(&b, 101000);
	CHECK_INT(b.current_ms, 8000);
	/* a stable one does */
	backoff_up(&b, 200000);
	backoff_down(&b, 200000 + 16000);
	CHECK_INT(b.current_ms, 1000);
	CHECK_INT(backoff_at_least(500, 3000), 3000);
	CHECK_INT(backoff_at_least(5000, -1), 5000);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_decode_table),
    CHECK_CASE(test_decode_base64_data),
    CHECK_CASE(test_long_id_echoed_whole),
    CHECK_CASE(test_reply_shapes),
    CHECK_CASE(test_outmsg),
    CHECK_CASE(test_backoff),
};

CHECK_MAIN()
