/* grower: grows its linear memory while it runs, then stays alive, for live-memory tests.
 *
 * argv[1]: MiB to allocate and touch, one MiB at a time (default 4)
 * argv[2]: seconds to stay alive after growing, in 20 ms sleeps (default 0: forever)
 * Prints "grown N MiB" once grown. As a CGI responder (REQUEST_METHOD is set) it answers
 * 200 with the same line when its time is up. The short sleeps return to Wasm code often, so
 * the host's epoch checks (and its samples of the memory) keep happening while it waits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 4;
    long seconds = argc > 2 ? atol(argv[2]) : 0;
    int cgi = getenv("REQUEST_METHOD") != NULL;
    void **head = NULL; /* chained, so the allocations cannot be elided */
    for (long i = 0; i < mib; i++) {
        char *p = malloc(1024 * 1024);
        if (p == NULL) {
            fprintf(stderr, "grower: malloc failed after %ld MiB\n", i);
            return 12;
        }
        memset(p, 0xab, 1024 * 1024);
        *(void ***)p = head;
        head = (void **)p;
    }
    if (!cgi) {
        printf("grown %ld MiB\n", mib);
        fflush(stdout);
    }
    const struct timespec pause = {0, 20 * 1000 * 1000};
    for (long i = 0; seconds == 0 || i < seconds * 50; i++) {
        nanosleep(&pause, NULL);
    }
    if (cgi) {
        printf("Content-Type: text/plain\r\n\r\ngrown %ld MiB\n", mib);
    }
    return head == NULL && mib > 0;
}
