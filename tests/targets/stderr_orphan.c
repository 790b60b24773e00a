// The parent writes a line to stderr and exits; its forked child writes another line
// 0.2 s later, then creates the file argv[1]: proof that it lived through the write.
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (fork() == 0) {
        usleep(200000);
        const char *late = "late line from the child\n";
        if (write(2, late, strlen(late)) < 0)
            return 1;
        if (argc > 1)
            close(open(argv[1], O_CREAT | O_WRONLY, 0644));
        return 0;
    }
    const char *early = "early line from the parent\n";
    write(2, early, strlen(early));
    return 0;
}
