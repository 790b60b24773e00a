// dlopen()s the library named by argv[1] and calls its plugin_work(7); then dlclose()s it.
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: plugin_host LIB\n"); return 2; }
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    int (*work)(int) = (int (*)(int))dlsym(h, "plugin_work");
    printf("plugin_work(7)=%d\n", work(7));
    dlclose(h);
    return 0;
}
