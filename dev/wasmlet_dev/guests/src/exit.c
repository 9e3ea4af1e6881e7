/* exit: exits with the code given in argv[1] (0 when absent), after one line on stderr. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int code = argc > 1 ? atoi(argv[1]) : 0;
    fprintf(stderr, "exiting with %d\n", code);
    exit(code);
}
