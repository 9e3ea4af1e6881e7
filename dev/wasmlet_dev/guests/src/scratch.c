/* scratch: fills a directory, to test emptyDir sizeLimit (bytes and inodes).
 *
 * As a command, each argument is one operation, reported on stdout:
 *   touch:DIR:N   create N empty files DIR/t<i> (N = 0: until one cannot be created)
 *   fill:PATH:K   write K KiB to PATH
 * As a CGI responder (REQUEST_METHOD is set), PATH_INFO says what to do in /scratch:
 *   /write/K      write K KiB to a new file /scratch/w<i>; 200 "wrote", or 500 with the error
 *   /count        200 with the number of entries in /scratch
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fill(const char *path, long kib) {
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    static char block[1024];
    memset(block, 'x', sizeof block);
    for (long i = 0; i < kib; i++) {
        if (fwrite(block, 1, sizeof block, f) != sizeof block) {
            fclose(f);
            return -1;
        }
    }
    return fclose(f);
}

static long entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        return -1;
    }
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

static void touch(const char *dir, long n) {
    char path[512];
    long i = 0;
    for (; n == 0 || i < n; i++) {
        snprintf(path, sizeof path, "%s/t%ld", dir, i);
        FILE *f = fopen(path, "w");
        if (!f) {
            printf("ERR touch %s: %s after %ld files\n", path, strerror(errno), i);
            return;
        }
        fclose(f);
    }
    printf("OK touch %s: %ld files\n", dir, i);
}

static int cgi(const char *path) {
    char file[64];
    if (strncmp(path, "/write/", 7) == 0) {
        long kib = atol(path + 7);
        long i = entries("/scratch");
        snprintf(file, sizeof file, "/scratch/w%ld", i);
        if (i < 0 || fill(file, kib) != 0) {
            printf("Status: 500 Error\r\nContent-Type: text/plain\r\n\r\nERR %s\n", strerror(errno));
            return 0;
        }
        printf("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nwrote %ld KiB to %s\n", kib, file);
        return 0;
    }
    if (strcmp(path, "/count") == 0) {
        printf("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n%ld\n", entries("/scratch"));
        return 0;
    }
    printf("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nunknown path\n");
    return 0;
}

int main(int argc, char **argv) {
    const char *method = getenv("REQUEST_METHOD");
    if (method) {
        const char *path = getenv("PATH_INFO");
        return cgi(path ? path : "");
    }
    for (int i = 1; i < argc; i++) {
        char op[512];
        snprintf(op, sizeof op, "%s", argv[i]);
        char *a = strchr(op, ':');
        char *b = a ? strrchr(a + 1, ':') : NULL;
        if (!a || !b) {
            printf("ERR usage %s\n", argv[i]);
            continue;
        }
        *a = '\0';
        *b = '\0';
        long n = atol(b + 1);
        if (strcmp(op, "touch") == 0) {
            touch(a + 1, n);
        } else if (strcmp(op, "fill") == 0) {
            printf(fill(a + 1, n) == 0 ? "OK fill %s\n" : "ERR fill %s\n", a + 1);
        } else {
            printf("ERR usage %s\n", argv[i]);
        }
    }
    fflush(stdout);
    return 0;
}
