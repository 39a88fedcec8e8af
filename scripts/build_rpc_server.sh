#!/usr/bin/env bash
# Build the real llama.cpp `ggml-rpc-server` once and print its path (see
# build_llama_cpp.sh, which builds it and llama-server).
exec bash "$(dirname "${BASH_SOURCE[0]}")/build_llama_cpp.sh" ggml-rpc-server
