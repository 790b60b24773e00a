// Loads hitlib.dll, calls hit() argv[1] times (default 5), bumping an exported
// counter each time, says so with OutputDebugStringA, exits with the sum.
//! cflags: -O0 -g
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

__declspec(dllexport) volatile int counter;
__declspec(dllexport) volatile int neighbour;   /* same page as counter, never watched */

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 5;
    HMODULE lib = LoadLibraryA("hitlib.dll");
    if (!lib) return 100;
    int (*hit)(int) = (int (*)(int))GetProcAddress(lib, "hit");
    if (!hit) return 101;
    int sum = 0;
    for (int i = 0; i < n; i++) {
        neighbour += 1;
        sum += hit(i);
        counter += 1;
    }
    char text[64];
    snprintf(text, sizeof text, "hits done: %d", counter);
    OutputDebugStringA(text);
    FreeLibrary(lib);
    return sum;
}
