/* http_echo: the `cgi` guest's echo (dev/wasmlet_dev/guests/src/cgi.c) as a wasi:http/proxy
 * component, so `wasmtime serve` (a fresh instance per request) is a like-for-like baseline for
 * the agent serving `cgi` over CGI. Built by bench/wasi_http.py against the C bindings that
 * `wit-bindgen c` generates for the proxy world (proxy.h).
 *
 * Answers every request with 200, `Content-Type: text/plain; charset=utf-8`, `X-Guest:
 * wasi-http-c`, a Content-Length (the agent sends one too) and the body
 *   method=M\npath=P\nquery=Q\nbody_length=N\nbody=<the request body>\n
 * where P and Q are path-with-query split at the first '?' (P as received: the agent hands
 * the CGI guest a percent-decoded PATH_INFO, the same for plain paths like /bench). Logs
 * `cgi: M P` to stderr per request, as the cgi guest does. The cgi guest's special paths
 * (/status/N, /env, /big/N, ...) are not reproduced: the benchmark only GETs /bench.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define WRITE_MAX 4096 /* the most blocking-write-and-flush takes in one call */

static const char *method_name(const wasi_http_types_method_t *m, int *len) {
    static const char *names[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                  "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (m->tag == WASI_HTTP_TYPES_METHOD_OTHER) {
        *len = (int)m->val.other.len;
        return (const char *)m->val.other.ptr;
    }
    *len = (int)strlen(names[m->tag]);
    return names[m->tag];
}

/* The whole request body (NULL and 0 when there is none or it cannot be read). */
static char *read_body(wasi_http_types_own_incoming_request_t request, size_t *got) {
    *got = 0;
    wasi_http_types_own_incoming_body_t body;
    if (!wasi_http_types_method_incoming_request_consume(
            wasi_http_types_borrow_incoming_request(request), &body)) {
        return NULL;
    }
    char *buf = NULL;
    wasi_http_types_own_input_stream_t stream;
    if (wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body),
                                                    &stream)) {
        for (;;) {
            proxy_list_u8_t chunk;
            wasi_io_streams_stream_error_t err;
            if (!wasi_io_streams_method_input_stream_blocking_read(
                    wasi_io_streams_borrow_input_stream(stream), 65536, &chunk, &err)) {
                wasi_io_streams_stream_error_free(&err); /* closed: the body is complete */
                break;
            }
            char *grown = realloc(buf, *got + chunk.len + 1);
            if (grown != NULL) {
                buf = grown;
                memcpy(buf + *got, chunk.ptr, chunk.len);
                *got += chunk.len;
            }
            proxy_list_u8_free(&chunk);
        }
        wasi_io_streams_input_stream_drop_own(stream);
    }
    wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(body));
    return buf;
}

static wasi_http_types_own_fields_t response_headers(size_t content_length) {
    char length[24];
    snprintf(length, sizeof length, "%zu", content_length);
    static const char *const names[] = {"content-type", "x-guest", "content-length"};
    const char *values[] = {"text/plain; charset=utf-8", "wasi-http-c", length};
    wasi_http_types_tuple2_field_name_field_value_t entries[3];
    for (size_t i = 0; i < 3; i++) {
        entries[i].f0 = (proxy_string_t){(uint8_t *)names[i], strlen(names[i])};
        entries[i].f1 = (wasi_http_types_field_value_t){(uint8_t *)values[i], strlen(values[i])};
    }
    wasi_http_types_list_tuple2_field_name_field_value_t list = {entries, 3};
    wasi_http_types_own_fields_t fields;
    wasi_http_types_header_error_t err;
    if (!wasi_http_types_static_fields_from_list(&list, &fields, &err)) {
        fields = wasi_http_types_constructor_fields(); /* cannot happen: the names are valid */
    }
    return fields;
}

static void respond(wasi_http_types_own_response_outparam_t out, const char *data, size_t len) {
    wasi_http_types_own_outgoing_response_t response =
        wasi_http_types_constructor_outgoing_response(response_headers(len));
    wasi_http_types_own_outgoing_body_t body;
    bool have_body = wasi_http_types_method_outgoing_response_body(
        wasi_http_types_borrow_outgoing_response(response), &body);
    wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false};
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(out, &result);
    if (!have_body) {
        return;
    }
    wasi_http_types_own_output_stream_t stream;
    if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body),
                                                   &stream)) {
        for (size_t off = 0; off < len;) {
            size_t n = len - off < WRITE_MAX ? len - off : WRITE_MAX;
            proxy_list_u8_t chunk = {(uint8_t *)data + off, n};
            wasi_io_streams_stream_error_t err;
            if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                    wasi_io_streams_borrow_output_stream(stream), &chunk, &err)) {
                wasi_io_streams_stream_error_free(&err); /* the client went away */
                break;
            }
            off += n;
        }
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t err;
    if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &err)) {
        wasi_http_types_error_code_free(&err);
    }
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
    wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(req, &method);
    int method_len;
    const char *method_str = method_name(&method, &method_len);
    proxy_string_t target = {NULL, 0};
    wasi_http_types_method_incoming_request_path_with_query(req, &target);
    const char *path = (const char *)target.ptr;
    const char *mark = target.len ? memchr(path, '?', target.len) : NULL;
    int path_len = (int)(mark ? (size_t)(mark - path) : target.len);
    const char *query = mark ? mark + 1 : "";
    int query_len = mark ? (int)(target.len - (size_t)path_len - 1) : 0;

    size_t got;
    char *body = read_body(request, &got);
    wasi_http_types_incoming_request_drop_own(request);

    fprintf(stderr, "cgi: %.*s %.*s\n", method_len, method_str, path_len, path ? path : "");

    static const char format[] = "method=%.*s\npath=%.*s\nquery=%.*s\nbody_length=%zu\nbody=";
    int head = snprintf(NULL, 0, format, method_len, method_str, path_len, path ? path : "",
                        query_len, query, got);
    size_t total = (size_t)head + got + 1;
    char *out = malloc(total + 1);
    if (out == NULL) {
        abort();
    }
    snprintf(out, (size_t)head + 1, format, method_len, method_str, path_len,
             path ? path : "", query_len, query, got);
    if (got) {
        memcpy(out + head, body, got);
    }
    out[total - 1] = '\n';
    respond(response_out, out, total);

    free(out);
    free(body);
    proxy_string_free(&target);
    wasi_http_types_method_free(&method);
}
