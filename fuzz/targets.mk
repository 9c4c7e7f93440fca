FUZZ_http_guard_SRC := gateway/gw_guard.c
