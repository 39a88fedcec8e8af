#!/usr/bin/env bash
# Build one of the real llama.cpp binaries once, CPU-only, and cache it outside the
# repo; print the binary's path. Does nothing but print the path when it is cached.
#
#   bash scripts/build_llama_cpp.sh ggml-rpc-server   # the RPC backend (tools/rpc)
#   bash scripts/build_llama_cpp.sh llama-server      # the HTTP server (tools/server)
#
# Source: the llama-cpp-python sdist on PyPI, which vendors llama.cpp under
# vendor/llama.cpp (the RPC server is tools/rpc, CMake target `ggml-rpc-server`; the
# HTTP server tools/server, target `llama-server`, built with GGML_RPC so that its
# --rpc host:port,... offloads to RPC backends).
# Pinned so every machine tests against the same protocol generation; override with
# SOLLOL_LLAMA_CPP_PYTHON_VERSION.
#
# CLI of the built binary (tools/rpc/rpc-server.cpp, checked with --help):
#   ggml-rpc-server [-H HOST] [-p PORT] [-t THREADS] [-d DEV1,DEV2] [-c]
#   -H/--host defaults to 127.0.0.1, -p/--port to 50052, -c enables a local file cache.
#
# llama-server's options used here (tools/server/README.md): --host, --port, -m MODEL,
# -c CTX, -np SLOTS, --metrics, --slots/--no-slots, --rpc HOST:PORT,..., -ngl N.
#
# On a 2-core machine, ggml-rpc-server: about 105 s from a cold pip cache (download
# and metadata ~50 s, configure and build ~55 s); llama-server: see bench/RESULTS.md.
# Afterwards nothing.
set -euo pipefail

target="${1:?which binary: ggml-rpc-server or llama-server}"
case "$target" in
ggml-rpc-server) server=OFF ;;
llama-server) server=ON ;;
*)
    echo "unknown target $target (ggml-rpc-server or llama-server)" >&2
    exit 2
    ;;
esac
version="${SOLLOL_LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache_dir="${SOLLOL_RPC_SERVER_CACHE:-$HOME/.cache/sollol}"
binary="$cache_dir/$target"

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$repo_root/.venv/bin/pip" ]]; then
    pip=("$repo_root/.venv/bin/pip")
else
    pip=(python3 -m pip)
fi

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/sollol-$target-build.XXXXXX")"
trap 'rm -rf "$work_dir"' EXIT

echo "Downloading llama-cpp-python==$version sdist..." >&2
# --no-binary for this package only: with :all: pip would also build its build
# backend's whole dependency chain from source just to read the sdist's metadata.
"${pip[@]}" download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$work_dir/sdist" >&2
tar -xzf "$work_dir"/sdist/llama_cpp_python-*.tar.gz -C "$work_dir"
source_dir="$(echo "$work_dir"/llama_cpp_python-*/vendor/llama.cpp)"

# Only the target and the CPU backend are compiled: LLAMA_BUILD_TOOLS (which needs
# LLAMA_BUILD_COMMON) adds tools/rpc when GGML_RPC is on (and tools/server with
# LLAMA_BUILD_SERVER), and building the single target skips the rest. GGML_NATIVE=OFF keeps the binary portable between machines of
# one kind; OpenSSL and OpenMP are turned off so no extra dev packages are needed.
# LLAMA_USE_PREBUILT_UI=OFF: otherwise the build reaches out to Hugging Face for
# llama-server's web UI (the tests need none, and nothing may leave loopback).
generator=()
if command -v ninja >/dev/null; then
    generator=(-G Ninja)
fi
echo "Configuring in $work_dir/build..." >&2
cmake -S "$source_dir" -B "$work_dir/build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_RPC=ON \
    -DGGML_NATIVE=OFF \
    -DGGML_OPENMP=OFF \
    -DGGML_BACKEND_DL=OFF \
    -DLLAMA_BUILD_COMMON=ON \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER="$server" \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_CURL=OFF >&2

echo "Building $target..." >&2
cmake --build "$work_dir/build" --target "$target" -j2 >&2

built="$(find "$work_dir/build" -type f -name "$target" -perm -u+x | head -n 1)"
if [[ -z "$built" ]]; then
    echo "build finished but no $target binary was found" >&2
    exit 1
fi

mkdir -p "$cache_dir"
# Copy then rename, so a half-copied file is never taken for a cached binary.
cp "$built" "$binary.tmp.$$"
mv "$binary.tmp.$$" "$binary"
echo "$binary"
