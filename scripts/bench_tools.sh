#!/usr/bin/env bash
# The tools `make bench` needs beside the Python packages: h2load (Debian's
# nghttp2-client), the C load generator of the server-bound rows. As root on
# Debian/Ubuntu without it, installs it; otherwise says what is missing.
set -euo pipefail
command -v h2load >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing h2load (Debian package nghttp2-client)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >&2; }
    exit 0
fi
echo "the benchmarks need h2load: install the Debian package nghttp2-client" >&2
exit 1
