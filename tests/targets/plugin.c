//! cflags: -g -O0 -shared -fPIC
// A tiny shared library that plugin_host dlopen()s at run time.
#include <stdio.h>
int plugin_calls;      // a global in the library, for memory breakpoints
__attribute__((noinline)) int plugin_work(int x) { plugin_calls++; return x * 3 + 1; }
