//! cflags: -g -O0 -shared -fPIC
// A tiny shared library that plugin_host dlopen()s at run time.
#include <stdio.h>
__attribute__((noinline)) int plugin_work(int x) { return x * 3 + 1; }
