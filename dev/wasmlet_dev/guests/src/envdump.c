/* envdump: prints every environment variable it can see, one NAME=value per line. */
#include <stdio.h>

extern char **environ;

int main(void) {
    int count = 0;
    for (char **e = environ; e && *e; e++, count++) {
        puts(*e);
    }
    printf("# %d variables\n", count);
    return 0;
}
