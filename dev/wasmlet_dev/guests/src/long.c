/* long: a long-running command that prints a numbered line every 100 ms forever. */
#include <stdio.h>
#include <time.h>

int main(void) {
    const struct timespec pause = {0, 100 * 1000 * 1000};
    for (unsigned long i = 0;; i++) {
        printf("tick %lu\n", i);
        fflush(stdout);
        nanosleep(&pause, NULL);
    }
}
