/* hello: prints a greeting, its arguments and the env vars named in GREET_VARS (or GREETING). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *greeting = getenv("GREETING");
    printf("%s from wasm\n", greeting ? greeting : "hello");
    for (int i = 0; i < argc; i++) {
        printf("arg[%d]=%s\n", i, argv[i]);
    }
    /* GREET_VARS is a comma-separated list of variable names to echo. */
    const char *names = getenv("GREET_VARS");
    if (names) {
        char buf[1024];
        strncpy(buf, names, sizeof buf - 1);
        buf[sizeof buf - 1] = '\0';
        for (char *name = strtok(buf, ","); name; name = strtok(NULL, ",")) {
            const char *value = getenv(name);
            printf("env[%s]=%s\n", name, value ? value : "<unset>");
        }
    }
    return 0;
}
