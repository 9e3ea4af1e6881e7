/* hello-http: answers every HTTP request (CGI over WASI stdio) with a greeting that names
 * the method, path and query it was asked for. One fresh instance serves each request. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *method = getenv("REQUEST_METHOD");
    const char *path = getenv("PATH_INFO");
    const char *query = getenv("QUERY_STRING");
    printf("Content-Type: text/plain\r\n\r\n");
    printf("hello from wasmlet: %s %s%s%s\n", method ? method : "?", path ? path : "/",
           query && *query ? "?" : "", query ? query : "");
    return 0;
}
