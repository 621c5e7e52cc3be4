#!/usr/bin/env bash
# Builds librdkafka 2.12.1 from the rdkafka-sys crate's bundled source, outside the cargo registry
# (never inside it), cached under $RDK_BUILD_DIR (default target/librdkafka-suite): copies
# librdkafka/ out of the registry, ./configure, make libs. Re-runs skip finished steps.
#
# Sourced by compat/librdkafka.sh (which then builds the test-runner), it only defines
# rdk_build_libs and uses the caller's `say`. Run directly, it builds the libraries and then the
# examples named as arguments (e.g. `compat/librdkafka-build.sh rdkafka_performance`, as brook-bench's
# --rdkafka-performance does) and prints each built example's path on stdout, one a line.
# Exit status when run: 0 built, 1 a step failed (the tail of its log on stderr).

# rdk_build_libs BUILD_DIR: the copy, configure and make-libs steps; logs in BUILD_DIR/*.log.
rdk_build_libs() {
    local build_dir="$1" src tree="$1/librdkafka" jobs
    jobs="$(nproc 2>/dev/null || echo 2)"
    if [ ! -x "$tree/configure" ]; then
        src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/index.crates.io-*/rdkafka-sys-4.10.0+2.12.1/librdkafka 2>/dev/null | head -n1 || true)"
        if [ -z "$src" ]; then
            say "librdkafka source not found in the cargo registry (run 'cargo fetch' first)"
            return 1
        fi
        say "copying $src"
        mkdir -p "$build_dir"
        rm -rf "$tree.partial"
        cp -a "$src" "$tree.partial"
        mv "$tree.partial" "$tree"
    fi
    if [ ! -f "$tree/Makefile.config" ]; then
        say "configure"
        (cd "$tree" && ./configure >"$build_dir/configure.log" 2>&1) || { tail -20 "$build_dir/configure.log" >&2; return 1; }
    fi
    if [ ! -f "$tree/src/librdkafka.a" ] || [ ! -f "$tree/src-cpp/librdkafka++.a" ]; then
        say "make libs"
        make -C "$tree" -j"$jobs" libs >"$build_dir/libs.log" 2>&1 || { tail -20 "$build_dir/libs.log" >&2; return 1; }
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    BUILD_DIR="${RDK_BUILD_DIR:-$ROOT/target/librdkafka-suite}"
    say() { echo "librdkafka-build.sh: $*" >&2; }
    rdk_build_libs "$BUILD_DIR" || exit 1
    for example in "$@"; do
        case "$example" in
            */* | .* | "") say "not an example name: $example"; exit 1 ;;
        esac
        bin="$BUILD_DIR/librdkafka/examples/$example"
        if [ ! -x "$bin" ]; then
            say "make -C examples $example"
            make -C "$BUILD_DIR/librdkafka/examples" "$example" >"$BUILD_DIR/$example.log" 2>&1 || { tail -20 "$BUILD_DIR/$example.log" >&2; exit 1; }
        fi
        echo "$bin"
    done
fi
