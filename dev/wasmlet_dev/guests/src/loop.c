/* loop: spins forever without making a host call, so only epochs or fuel can stop it. */
#include <stdio.h>

int main(void) {
    volatile unsigned long counter = 0;
    puts("looping");
    fflush(stdout);
    for (;;) {
        counter++;
    }
}
