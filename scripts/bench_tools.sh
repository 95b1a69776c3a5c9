#!/usr/bin/env bash
# The tools `make bench` needs beside the Python packages: h2load (Debian's
# nghttp2-client), the C load generator of the server-bound rows; debootstrap, which
# builds the container image's file system for benchmarks/image_size.sh; and valgrind,
# whose instruction counts benchmarks/instructions.sh reads. As root on
# Debian/Ubuntu without them, installs them; otherwise says what is missing.
set -euo pipefail
missing=()
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v valgrind >/dev/null || missing+=(valgrind)
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (Debian packages)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; }
    exit 0
fi
echo "the benchmarks need the Debian packages: ${missing[*]}" >&2
exit 1
