//! cflags: -g -O0 -x c++ -fno-exceptions
// C++ linkage names for the demangler: a namespaced function, a const method and an
// operator whose name holds the `!` of `mod!sym`.
namespace geo {
__attribute__((noinline)) int area(int w, int h) { return w * h; }
struct Box {
    int w, h;
    __attribute__((noinline)) int perimeter() const { return 2 * (w + h); }
    __attribute__((noinline)) bool operator!() const { return w == 0 || h == 0; }
};
}  // namespace geo

int main() {
    geo::Box b{3, 4};
    return geo::area(b.w, b.h) + b.perimeter() == 26 && !!b ? 0 : 1;
}
