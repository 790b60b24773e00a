// Calls through a function pointer to an unmapped address.
typedef int (*callback)(int);

__attribute__((noinline)) int dispatch(callback cb) { return cb(1) + 1; }

int main(void) {
    callback volatile cb = (callback)0xdeadbeefUL;
    return dispatch(cb);
}
