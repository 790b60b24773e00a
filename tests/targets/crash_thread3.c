// Four threads (main and three made in order): the third, `crasher`, writes through NULL.
#include <pthread.h>
#include <unistd.h>

volatile int go;
__attribute__((noinline)) void crasher_fault(int *p) { *p = 7; }
static void *idle(void *arg) { while (!go) usleep(1000); return arg; }
static void *crasher(void *arg) { usleep(20000); crasher_fault(NULL); return arg; }

int main(void) {
    pthread_t a, b, c;
    pthread_create(&a, NULL, idle, NULL);
    pthread_create(&b, NULL, crasher, NULL);
    pthread_create(&c, NULL, idle, NULL);
    pthread_join(b, NULL);
    go = 1;
    return 0;
}
