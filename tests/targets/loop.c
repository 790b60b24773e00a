// A loop calling hit(i) N times, then printing a decision and a global string.
// Usage: loop [N [X]]  — N calls of hit(0..N-1); prints decision for decide(X).
#include <stdio.h>
#include <stdlib.h>

long counter;
char message[64] = "hello from loop";
unsigned char buffer[16] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

__attribute__((noinline)) long hit(long i) { counter += i; return i * 2; }
__attribute__((noinline)) int decide(int x) { return x > 10; }
__attribute__((noinline)) long fact(long n) { return n <= 1 ? 1 : n * fact(n - 1); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10;
    long sum = 0;
    for (long i = 0; i < n; i++) sum += hit(i);
    printf("sum=%ld counter=%ld\n", sum, counter);
    printf("decision=%d\n", decide(argc > 2 ? atoi(argv[2]) : 5));
    printf("fact=%ld\n", fact(5));
    printf("message=%s\n", message);
    printf("buffer=%02x%02x%02x%02x\n", buffer[0], buffer[1], buffer[2], buffer[3]);
    return 0;
}
