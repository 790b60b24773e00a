// A DLL exporting hit(): the live Windows suite breaks on it by export name.
//! cflags: -shared -O0 -g
__declspec(dllexport) int hit(int x) {
    return x + 1;
}
