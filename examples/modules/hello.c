/* hello: a long-running command-mode app. Prints its arguments and GREETING_STYLE, then a
 * heartbeat line every 2 seconds, so `wasmlet logs hello` has something to show. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *style = getenv("GREETING_STYLE");
    printf("hello from wasmlet (%s)\n", style ? style : "plain");
    for (int i = 1; i < argc; i++) {
        printf("arg %d: %s\n", i, argv[i]);
    }
    fflush(stdout);
    for (unsigned long n = 1;; n++) {
        sleep(2);
        printf("still here (%lu)\n", n);
        fflush(stdout);
    }
}
