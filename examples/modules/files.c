/* files: copies the file named by argv[1] to argv[2] (volumes mounted by the WasmApp), prints
 * what it copied, then stays up. Exits 1 if the copy fails, so restartPolicy: OnFailure
 * retries it. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: files SRC DST\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    char buf[4096];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        fwrite(buf, 1, n, out);
        total += n;
    }
    fclose(in);
    fclose(out);
    printf("copied %zu bytes from %s to %s\n", total, argv[1], argv[2]);
    fflush(stdout);
    for (;;) {
        sleep(60);
    }
}
