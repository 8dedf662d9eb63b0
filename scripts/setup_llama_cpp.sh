#!/usr/bin/env bash
# llama.cpp itself, as a test oracle: the PyPI package llama-cpp-python (pinned in
# scripts/requirements-llama-cpp.txt) in loam's venv, and the llama.cpp converter
# (convert_hf_to_gguf.py + its gguf-py) that its source vendors. Idempotent, per machine:
#   - PyPI ships llama-cpp-python only as source, so it is compiled once (CPU only, no
#     multimodal library; ~10 min of CPU, ~6 min on 2 idle cores) into a wheel cached in
#     $LOAM_HOME/wheels/<version>-<build options hash>/. The cache outlives the venv: a
#     reinstalled venv gets the cached wheel in seconds, never a rebuild.
#   - The source archive is kept there too, and its converter unpacked into
#     $LOAM_HOME/llama.cpp/<version>/ (scripts/oracle/fixtures_llama_cpp.py runs it).
# Called by scripts/setup.sh; a second run takes about a second.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/steps.sh"
source "$ROOT/scripts/env.sh"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
step "checking llama-cpp-python"

pin="$(grep -E '^llama-cpp-python==' "$ROOT/scripts/requirements-llama-cpp.txt")" \
  || die "no llama-cpp-python==VERSION line in scripts/requirements-llama-cpp.txt"
version="${pin#llama-cpp-python==}"
py="$LOAM_VENV/bin/python"

# CPU only; GGML_NATIVE=OFF builds ggml's portable x86-64 AVX2/FMA/F16C variant instead of
# -march=native, so a cached wheel still runs if $LOAM_HOME moves to another CPU. No
# multimodal library (LLAVA_BUILD), tools, tests, examples, server, OpenSSL or ccache.
cmake_args="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_CCACHE=OFF -DLLAMA_OPENSSL=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_SERVER=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF"
key="$(printf '%s\n%s\n' "$version" "$cmake_args" | sha256sum | cut -c1-12)"
cache="$LOAM_HOME/wheels/llama-cpp-python-$version-$key"
converter="$LOAM_HOME/llama.cpp/$version"

installed="$("$py" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)"
if [ "$installed" = "$version" ] && [ -f "$converter/convert_hf_to_gguf.py" ]; then
  say "llama-cpp-python $version up to date"
  exit 0
fi

mkdir -p "$cache"
sdist="$(ls "$cache"/llama_cpp_python-"$version".tar.gz 2>/dev/null || true)"
if [ -z "$sdist" ]; then
  say "downloading the llama-cpp-python $version source (~75 MB)"
  "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$cache" || die "pip download llama-cpp-python==$version failed"
  sdist="$cache/llama_cpp_python-$version.tar.gz"
  [ -f "$sdist" ] || die "pip download did not produce $sdist"
fi

wheel="$(ls "$cache"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$wheel" ]; then
  say "compiling llama-cpp-python $version (llama.cpp, CPU only; once per machine: ~10 min of CPU)"
  start=$SECONDS
  tmp="$cache/.build-$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$py" -m pip wheel --no-deps --wheel-dir "$tmp" "$sdist" > "$cache/build.log" 2>&1 \
    || { rm -rf "$tmp"; die "building llama-cpp-python failed; see $cache/build.log"; }
  mv "$tmp"/llama_cpp_python-*.whl "$cache"/ && rm -rf "$tmp"
  wheel="$(ls "$cache"/llama_cpp_python-"$version"-*.whl | head -n1)"
  say "built $(basename "$wheel") in $((SECONDS - start)) s"
fi

if [ "$installed" != "$version" ]; then
  say "installing $(basename "$wheel") into $LOAM_VENV"
  "$py" -m pip install --quiet --force-reinstall --no-deps "$wheel" \
    || die "pip install $wheel failed"
  # Its own dependencies (numpy, jinja2, typing-extensions are already there).
  "$py" -m pip install --quiet "diskcache>=5.6.1" || die "pip install diskcache failed"
fi

if [ ! -f "$converter/convert_hf_to_gguf.py" ]; then
  say "unpacking llama.cpp's converter into $converter"
  tmp="$converter.tmp-$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  top="llama_cpp_python-$version/vendor/llama.cpp"
  tar -xzf "$sdist" -C "$tmp" --strip-components=3 \
    "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py" "$top/LICENSE" \
    || { rm -rf "$tmp"; die "cannot unpack the converter from $sdist"; }
  rm -rf "$converter" && mv "$tmp" "$converter"
fi
say "llama-cpp-python $version ready"
