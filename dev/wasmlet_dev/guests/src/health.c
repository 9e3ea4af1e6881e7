/* health: a CGI responder whose health the test decides, for readiness checks.
 *
 *   /health/NAME  answers with the status written in the file /probe/NAME (e.g. "200" or
 *                 "500"); 503 when the file is missing. The word "trap" in the file makes
 *                 the guest trap, "hang" makes it spin until the agent stops it.
 *   anything else answers 200 with "greeting=$GREETING" (tells revisions apart).
 * Each request also logs one line to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value ? value : fallback;
}

static void respond(int status, const char *body) {
    printf("Status: %d %s\r\n", status, status == 200 ? "OK" : "Custom");
    printf("Content-Type: text/plain; charset=utf-8\r\n\r\n%s\n", body);
}

int main(void) {
    const char *path = env_or("PATH_INFO", "");
    fprintf(stderr, "health: %s %s\n", env_or("REQUEST_METHOD", ""), path);
    if (strncmp(path, "/health/", 8) != 0) {
        printf("Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
        printf("greeting=%s\n", env_or("GREETING", ""));
        return 0;
    }
    char file[256];
    snprintf(file, sizeof file, "/probe/%s", path + 8);
    FILE *f = fopen(file, "r");
    if (!f) {
        respond(503, "no status file");
        return 0;
    }
    char word[32] = {0};
    if (!fgets(word, sizeof word, f)) {
        word[0] = '\0';
    }
    fclose(f);
    if (strncmp(word, "trap", 4) == 0) {
        __builtin_trap();
    }
    if (strncmp(word, "hang", 4) == 0) {
        for (volatile unsigned long i = 0;; i++) {
        }
    }
    int status = atoi(word);
    respond(status >= 100 && status <= 599 ? status : 500, word);
    return 0;
}
