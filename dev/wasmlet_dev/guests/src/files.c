/* files: runs filesystem operations given as arguments and reports each one on stdout.
 *
 * Each argument is one operation; each prints exactly one line, "OK <op> <path>[: detail]" or
 * "ERR <op> <path>: <strerror>", so a test can assert on what the sandbox allowed:
 *   read:PATH          read the file and print its first line
 *   write:PATH=TEXT    create or truncate the file and write TEXT
 *   list:PATH          list the directory's entries
 *   mkdir:PATH         create a directory
 *   unlink:PATH        delete a file
 * With no arguments it runs a default scenario against the preopens /in (read-only) and /out.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void op_read(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("ERR read %s: %s\n", path, strerror(errno));
        return;
    }
    char line[256] = "";
    if (!fgets(line, sizeof line, f)) {
        line[0] = '\0';
    }
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    printf("OK read %s: %s\n", path, line);
}

static void op_write(const char *spec) {
    char path[512];
    const char *eq = strchr(spec, '=');
    const char *text = eq ? eq + 1 : "";
    size_t len = eq ? (size_t)(eq - spec) : strlen(spec);
    if (len >= sizeof path) {
        len = sizeof path - 1;
    }
    memcpy(path, spec, len);
    path[len] = '\0';
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("ERR write %s: %s\n", path, strerror(errno));
        return;
    }
    int failed = fputs(text, f) < 0;
    failed |= fclose(f) != 0;
    if (failed) {
        printf("ERR write %s: %s\n", path, strerror(errno));
        return;
    }
    printf("OK write %s\n", path);
}

static void op_list(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        printf("ERR list %s: %s\n", path, strerror(errno));
        return;
    }
    printf("OK list %s:", path);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            printf(" %s", e->d_name);
        }
    }
    printf("\n");
    closedir(d);
}

static void op_mkdir(const char *path) {
    if (mkdir(path, 0755) != 0) {
        printf("ERR mkdir %s: %s\n", path, strerror(errno));
        return;
    }
    printf("OK mkdir %s\n", path);
}

static void op_unlink(const char *path) {
    if (unlink(path) != 0) {
        printf("ERR unlink %s: %s\n", path, strerror(errno));
        return;
    }
    printf("OK unlink %s\n", path);
}

static void run(const char *op) {
    const char *colon = strchr(op, ':');
    if (!colon) {
        printf("ERR usage %s: expected OP:PATH\n", op);
        return;
    }
    size_t n = (size_t)(colon - op);
    const char *arg = colon + 1;
    if (n == 4 && strncmp(op, "read", n) == 0) {
        op_read(arg);
    } else if (n == 5 && strncmp(op, "write", n) == 0) {
        op_write(arg);
    } else if (n == 4 && strncmp(op, "list", n) == 0) {
        op_list(arg);
    } else if (n == 5 && strncmp(op, "mkdir", n) == 0) {
        op_mkdir(arg);
    } else if (n == 6 && strncmp(op, "unlink", n) == 0) {
        op_unlink(arg);
    } else {
        printf("ERR usage %s: unknown operation\n", op);
    }
}

int main(int argc, char **argv) {
    static const char *scenario[] = {
        "read:/in/input.txt",
        "write:/out/output.txt=written by wasm",
        "write:/in/denied.txt=should not exist",
        "read:/in/../../../etc/passwd",
        "read:../../../etc/passwd",
        "read:/etc/passwd",
    };
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            run(argv[i]);
        }
    } else {
        for (size_t i = 0; i < sizeof scenario / sizeof *scenario; i++) {
            run(scenario[i]);
        }
    }
    fflush(stdout);
    return 0;
}
