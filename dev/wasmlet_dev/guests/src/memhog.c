/* memhog: allocates and touches memory in chunks until allocation fails.
 *
 * argv[1]: chunk size in KiB (default 1024)
 * argv[2]: what to do when malloc returns NULL:
 *   "exit"  (default) print a report and exit with code 12 (ENOMEM),
 *   "abort" print a report and abort(), which traps with `unreachable`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    size_t chunk_kib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    const char *mode = argc > 2 ? argv[2] : "exit";
    size_t chunk = chunk_kib * 1024;
    size_t total = 0;
    /* Chain the chunks into a list, so the compiler cannot elide the allocations. */
    void **head = NULL;
    printf("memhog: chunk=%zu KiB mode=%s\n", chunk_kib, mode);
    fflush(stdout);
    for (;;) {
        char *p = malloc(chunk);
        if (p == NULL) {
            size_t chunks = 0;
            for (void **c = head; c; c = *c) {
                chunks++;
            }
            printf("memhog: malloc failed after %zu KiB in %zu chunks\n", total / 1024, chunks);
            fflush(stdout);
            if (strcmp(mode, "abort") == 0) {
                abort();
            }
            return 12;
        }
        memset(p, 0xab, chunk);
        *(void ***)p = head;
        head = (void **)p;
        total += chunk;
    }
}
