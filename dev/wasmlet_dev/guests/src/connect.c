/* connect: opens outbound TCP connections and resolves names through WASI 0.2 sockets.
 *
 * Built as a component only (see build.py): wasi-libc here predates WASI 0.2, so the
 * wasi:sockets functions are imported by hand with their canonical-ABI signatures, as
 * declared in connect.wit. Each argument is one operation and prints one line:
 *   connect:A.B.C.D:PORT   connect over TCP, send "hello from wasm\n", then drop the socket
 *   resolve:NAME           resolve NAME and print the first address
 * "OK <op> <arg>[: detail]" or "ERR <op> <arg>: <error-code>". Exit 0 if every op succeeded.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define SOCKETS "wasi:sockets/"
#define V "@0.2.6"

IMPORT(SOCKETS "instance-network" V, "instance-network")
extern int32_t instance_network(void);
IMPORT(SOCKETS "network" V, "[resource-drop]network")
extern void drop_network(int32_t);
IMPORT(SOCKETS "tcp-create-socket" V, "create-tcp-socket")
extern void create_tcp_socket(int32_t family, void *ret);
IMPORT(SOCKETS "tcp" V, "[method]tcp-socket.start-connect")
extern void tcp_start_connect(int32_t self, int32_t network, int32_t tag, int32_t p0, int32_t p1,
                              int32_t p2, int32_t p3, int32_t p4, int32_t p5, int32_t p6,
                              int32_t p7, int32_t p8, int32_t p9, int32_t p10, void *ret);
IMPORT(SOCKETS "tcp" V, "[method]tcp-socket.finish-connect")
extern void tcp_finish_connect(int32_t self, void *ret);
IMPORT(SOCKETS "tcp" V, "[method]tcp-socket.subscribe")
extern int32_t tcp_subscribe(int32_t self);
IMPORT(SOCKETS "tcp" V, "[resource-drop]tcp-socket")
extern void drop_tcp_socket(int32_t);
IMPORT(SOCKETS "ip-name-lookup" V, "resolve-addresses")
extern void resolve_addresses(int32_t network, const char *name, int32_t len, void *ret);
IMPORT(SOCKETS "ip-name-lookup" V, "[method]resolve-address-stream.resolve-next-address")
extern void resolve_next_address(int32_t self, void *ret);
IMPORT(SOCKETS "ip-name-lookup" V, "[method]resolve-address-stream.subscribe")
extern int32_t resolve_subscribe(int32_t self);
IMPORT(SOCKETS "ip-name-lookup" V, "[resource-drop]resolve-address-stream")
extern void drop_resolve_stream(int32_t);
IMPORT("wasi:io/poll" V, "[method]pollable.block")
extern void pollable_block(int32_t self);
IMPORT("wasi:io/poll" V, "[resource-drop]pollable")
extern void drop_pollable(int32_t);
IMPORT("wasi:io/streams" V, "[method]output-stream.blocking-write-and-flush")
extern void stream_write(int32_t self, const void *data, int32_t len, void *ret);
IMPORT("wasi:io/streams" V, "[resource-drop]input-stream")
extern void drop_input_stream(int32_t);
IMPORT("wasi:io/streams" V, "[resource-drop]output-stream")
extern void drop_output_stream(int32_t);

enum { WOULD_BLOCK = 8 };

static const char *const ERROR_CODES[] = {
    "unknown", "access-denied", "not-supported", "invalid-argument", "out-of-memory", "timeout",
    "concurrency-conflict", "not-in-progress", "would-block", "invalid-state",
    "new-socket-limit", "address-not-bindable", "address-in-use", "remote-unreachable",
    "connection-refused", "connection-reset", "connection-aborted", "datagram-too-large",
    "name-unresolvable", "temporary-resolver-failure", "permanent-resolver-failure",
};

static const char *error_name(uint8_t code) {
    return code < sizeof ERROR_CODES / sizeof *ERROR_CODES ? ERROR_CODES[code] : "?";
}

static void wait_for(int32_t pollable) {
    pollable_block(pollable);
    drop_pollable(pollable);
}

/* Return areas, laid out per the canonical ABI: a result's tag byte, then its payload. */
static _Alignas(8) uint8_t ret[32];

static int op_connect(int32_t net, const char *arg) {
    unsigned a, b, c, d, port;
    if (sscanf(arg, "%u.%u.%u.%u:%u", &a, &b, &c, &d, &port) != 5) {
        printf("ERR connect %s: expected A.B.C.D:PORT\n", arg);
        return 1;
    }
    create_tcp_socket(0 /* ipv4 */, ret);
    if (ret[0] != 0) {
        printf("ERR connect %s: create-tcp-socket: %s\n", arg, error_name(ret[4]));
        return 1;
    }
    int32_t sock = *(int32_t *)(ret + 4);
    tcp_start_connect(sock, net, 0 /* ipv4 */, (int32_t)port, (int32_t)a, (int32_t)b,
                      (int32_t)c, (int32_t)d, 0, 0, 0, 0, 0, 0, ret);
    if (ret[0] != 0) {
        printf("ERR connect %s: %s\n", arg, error_name(ret[1]));
        drop_tcp_socket(sock);
        return 1;
    }
    for (;;) {
        wait_for(tcp_subscribe(sock));
        tcp_finish_connect(sock, ret);
        if (ret[0] == 0 || ret[4] != WOULD_BLOCK) {
            break;
        }
    }
    if (ret[0] != 0) {
        printf("ERR connect %s: %s\n", arg, error_name(ret[4]));
        drop_tcp_socket(sock);
        return 1;
    }
    int32_t in = *(int32_t *)(ret + 4), out = *(int32_t *)(ret + 8);
    static const char hello[] = "hello from wasm\n";
    stream_write(out, hello, (int32_t)(sizeof hello - 1), ret);
    int failed = ret[0] != 0;
    printf(failed ? "ERR connect %s: write failed\n" : "OK connect %s\n", arg);
    drop_input_stream(in);
    drop_output_stream(out);
    drop_tcp_socket(sock);
    return failed;
}

static int op_resolve(int32_t net, const char *name) {
    resolve_addresses(net, name, (int32_t)strlen(name), ret);
    if (ret[0] != 0) {
        printf("ERR resolve %s: %s\n", name, error_name(ret[4]));
        return 1;
    }
    int32_t stream = *(int32_t *)(ret + 4);
    int status = 1;
    for (;;) {
        /* result<option<ip-address>, error-code>: tag@0, option tag@2, address tag@4, data@6 */
        resolve_next_address(stream, ret);
        if (ret[0] != 0 && ret[2] == WOULD_BLOCK) {
            wait_for(resolve_subscribe(stream));
            continue;
        }
        if (ret[0] != 0) {
            printf("ERR resolve %s: %s\n", name, error_name(ret[2]));
        } else if (ret[2] == 0) {
            printf("ERR resolve %s: no addresses\n", name);
        } else if (ret[4] == 0) {
            printf("OK resolve %s: %u.%u.%u.%u\n", name, ret[6], ret[7], ret[8], ret[9]);
            status = 0;
        } else {
            uint16_t *w = (uint16_t *)(ret + 6);
            printf("OK resolve %s: %x:%x:%x:%x:%x:%x:%x:%x\n", name, w[0], w[1], w[2], w[3],
                   w[4], w[5], w[6], w[7]);
            status = 0;
        }
        break;
    }
    drop_resolve_stream(stream);
    return status;
}

int main(int argc, char **argv) {
    int32_t net = instance_network();
    int failures = 0;
    for (int i = 1; i < argc; i++) {
        const char *colon = strchr(argv[i], ':');
        if (colon && strncmp(argv[i], "connect:", 8) == 0) {
            failures += op_connect(net, colon + 1);
        } else if (colon && strncmp(argv[i], "resolve:", 8) == 0) {
            failures += op_resolve(net, colon + 1);
        } else {
            printf("ERR usage %s: expected connect:A.B.C.D:PORT or resolve:NAME\n", argv[i]);
            failures++;
        }
    }
    fflush(stdout);
    drop_network(net);
    return failures ? 1 : 0;
}
