/*
 * msg: the JSON envelope of PROTOCOL.md section 2, and the two kinds of
 * items that travel through the agent's rings.
 *
 *   struct request  reader -> worker / supervisor: one decoded message
 *   struct outmsg   anyone -> writer: one serialized message to send
 *
 * Both are owned by exactly one thread at a time; pushing one into a ring
 * hands it over.
 */
#ifndef PIPEOPS_AGENT_MSG_H
#define PIPEOPS_AGENT_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum endpoint_id { EP_CP = 0, EP_RUNNER = 1, EP_COUNT };

struct request {
	json_t *root;	  /* owned: the whole message */
	const char *id;	  /* borrowed from root; never NULL */
	const char *type; /* borrowed from root; never NULL */
	json_t *data;	  /* owned reference: decoded data object */
	enum endpoint_id origin;
	uint64_t link_gen;   /* connection generation it arrived on */
	uint64_t peer_gen;   /* endpoint target (peer) it arrived from */
	size_t bytes;	     /* size of the message as received */
	int64_t received_ms; /* monotonic */
};

/* Flags of an outgoing message. */
enum {
	OUT_DROP_WHEN_DOWN = 1u << 0, /* heartbeat/status: never queued */
	OUT_REPLY = 1u << 1,	      /* a reply: kept in the outbox */
};

struct outmsg {
	struct outmsg *next; /* for the writer's outbox list */
	char *text;	     /* owned, NUL-terminated JSON */
	size_t len;
	unsigned flags;
	uint64_t peer_gen; /* only for this peer (target gen); 0: any */
	char type[24];	   /* for logs and metrics */
};

/*
 * Decode one received text message. On success returns 0 and a new
 * request in @out. On failure returns -EINVAL, fills @err with the reason
 * and, when the message had a usable string "id", sets *@id_out to a new
 * copy of it (else NULL; the caller frees it), so it can be answered.
 */
int msg_decode(const char *text, size_t len, enum endpoint_id origin,
	       struct request **out, char *err, size_t errlen, char **id_out);

void request_free(struct request *r); /* accepts NULL */

/* A new unique message id ("<agent id>-<boot ns>-<counter>"). */
void msg_new_id(char *buf, size_t len);
/* Set once at start-up, before threads; @agent_id is copied. */
void msg_set_id_prefix(const char *agent_id);

/*
 * Build an envelope {id, type, timestamp, data} (and request_id when not
 * NULL). Steals the reference to @data. Returns a new reference.
 */
json_t *msg_envelope(const char *type, const char *request_id, json_t *data);

/*
 * A success reply to @request_id: data gets "success": true and
 * "request_id". Steals @data (may be NULL: an empty object). New ref.
 */
json_t *msg_reply_ok(const char *request_id, json_t *data);

/*
 * An error reply: top-level "error", data {success:false, error,
 * request_id, code?, reason?}. @code 0 / @reason NULL or "" are left out.
 * Steals @extra (fields merged into data; may be NULL). New reference.
 */
json_t *msg_reply_error(const char *request_id, const char *error, int code,
			const char *reason, json_t *extra);

/*
 * A proxy_response (PROTOCOL.md 4.6) to @request_id: data gets "id" (when
 * it has none) and "request_id"; a string data.error is repeated at top
 * level. Steals @data (never NULL). New reference.
 */
json_t *msg_proxy_response(const char *request_id, json_t *data);

/* Serialize @msg (borrowed) into a new outmsg; NULL if it cannot. */
struct outmsg *outmsg_from_json(json_t *msg, unsigned flags);
void outmsg_free(struct outmsg *m); /* accepts NULL */

#endif
