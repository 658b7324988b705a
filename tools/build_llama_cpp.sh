#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-quantize, llama-imatrix, llama-perplexity, llama-bench, test-backend-ops)
# from the source tree vendored in the llama-cpp-python sdist, for side-by-side comparisons in tools/ scripts.
# Result: .llama.cpp/src (the source tree, with convert_hf_to_gguf.py) and .llama.cpp/build/bin (the tools).
# Usage: bash tools/build_llama_cpp.sh   (idempotent; about 15 minutes on 2 cores the first time)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.llama.cpp"
version=0.3.36
mkdir -p "$dest"
if [ ! -f "$dest/src/CMakeLists.txt" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$tmp"
  tar xzf "$tmp"/llama_cpp_python-"$version".tar.gz -C "$tmp"
  rm -rf "$dest/src"
  mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp" "$dest/src"
  rm -rf "$tmp"
fi
targets=(llama-quantize llama-imatrix llama-perplexity llama-bench test-backend-ops)
cmake -S "$dest/src" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$dest/build" -j "$(nproc)" --target "${targets[@]}"
ls "$dest/build/bin"
