/* cgi: a CGI/1.1 responder over WASI stdio that echoes the request back.
 *
 * Reads REQUEST_METHOD, PATH_INFO, QUERY_STRING and CONTENT_LENGTH from the environment and
 * CONTENT_LENGTH bytes of body from stdin; writes "Status: 200 OK", a Content-Type header, a
 * blank line and a plain-text body. Special paths exercise the host's other paths:
 *   /status/NNN  answers with status NNN
 *   /garbage     writes output that is not valid CGI
 *   /env         answers with every environment variable, one per line
 *   /big/N       answers with a body of N KiB of 'x'
 *   /flood       writes body bytes forever
 * Each request also logs one line to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value ? value : fallback;
}

int main(void) {
    const char *method = env_or("REQUEST_METHOD", "");
    const char *path = env_or("PATH_INFO", "");
    const char *query = env_or("QUERY_STRING", "");
    long length = atol(env_or("CONTENT_LENGTH", "0"));
    if (length < 0) {
        length = 0;
    }

    char *body = malloc((size_t)length + 1);
    size_t got = 0;
    if (body) {
        while (got < (size_t)length) {
            size_t n = fread(body + got, 1, (size_t)length - got, stdin);
            if (n == 0) {
                break;
            }
            got += n;
        }
        body[got] = '\0';
    }

    fprintf(stderr, "cgi: %s %s\n", method, path);
    if (strcmp(path, "/garbage") == 0) {
        fputs("this is not a CGI header block", stdout);
        return 0;
    }
    int status = 200;
    if (strncmp(path, "/status/", 8) == 0) {
        status = atoi(path + 8);
    }
    printf("Status: %d %s\r\n", status, status == 200 ? "OK" : "Custom");
    printf("Content-Type: text/plain; charset=utf-8\r\n");
    printf("X-Guest: cgi-c\r\n");
    printf("\r\n");
    if (strcmp(path, "/env") == 0) {
        for (char **e = environ; *e; e++) {
            puts(*e);
        }
        return 0;
    }
    if (strncmp(path, "/big/", 5) == 0 || strcmp(path, "/flood") == 0) {
        static char block[1024];
        memset(block, 'x', sizeof block);
        long blocks = path[1] == 'b' ? atol(path + 5) : -1;
        for (long i = 0; blocks < 0 || i < blocks; i++) {
            fwrite(block, 1, sizeof block, stdout);
        }
        return 0;
    }
    printf("method=%s\npath=%s\nquery=%s\nbody_length=%zu\nbody=", method, path, query, got);
    if (body) {
        fwrite(body, 1, got, stdout);
    }
    printf("\n");
    free(body);
    return 0;
}
