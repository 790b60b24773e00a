// Opens files two ways, for the file-opens recipe.
// Usage: lib_files PATH1 PATH2 — open(PATH1) then fopen(PATH2); prints what each returned.
//! cflags: -g -O0 -fno-builtin
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *first = argc > 1 ? argv[1] : "/etc/hostname";
    const char *second = argc > 2 ? argv[2] : "/nonexistent/file";
    int fd = open(first, O_RDONLY);
    FILE *f = fopen(second, "r");
    printf("open=%d fopen=%s\n", fd, f ? "ok" : "null");
    if (fd >= 0) close(fd);
    if (f) fclose(f);
    return 0;
}
