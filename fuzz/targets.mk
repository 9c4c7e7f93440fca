# fuzz/targets.mk - the repo sources (and libraries) each fuzz target links.
# One target per fuzz/fuzz_<name>.c: FUZZ_<name>_SRC lists the .c files
# beside it (the generated catalog.pb-c.c and -lprotobuf-c come with every
# target), FUZZ_<name>_LIBS any further libraries. See the Makefile's fuzz
# section and README "Fuzzing".

# JSON write bodies: parse, validate, map to catalog.ProductInput.
FUZZ_body_SRC  := gateway/gw_body.c gateway/gw_json.c common/cm.c
FUZZ_body_LIBS := -ljson-c

# Router, query, path decoding, request headers, traceparent, request ids,
# and the JSON the gateway writes (checked by parsing it back).
FUZZ_route_SRC  := gateway/gw_route.c gateway/gw_hdr.c gateway/gw_json.c \
	common/cm.c common/cm_trace.c
FUZZ_route_LIBS := -levent -ljson-c

# The replica's cache entries (Redis content): decode, encode, decode.
FUZZ_entry_SRC := services/product/ps_entry.c services/product/ps_msg.c \
	common/cm.c

# The replica's request path: a catalog.Batch decoded and every request
# answered through ps_product.c / ps_write.c, with Redis, PostgreSQL and
# the worker loop faked by fuzz/ps_fake.c from the input's script.
FUZZ_proto_SRC := services/product/ps_product.c services/product/ps_write.c \
	services/product/ps_entry.c services/product/ps_msg.c \
	services/product/ps_flight.c services/product/ps_metrics.c \
	services/product/ps_drain.c common/cm.c common/cm_log.c \
	common/cm_metrics.c common/cm_trace.c fuzz/ps_fake.c

# The connection guard's HTTP/1.1 framing scanner (gateway/gw_guard.c):
# whole requests and the same bytes split at an input-chosen point.
FUZZ_http_guard_SRC := gateway/gw_guard.c
