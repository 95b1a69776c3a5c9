#!/bin/sh
# The steps that make the container image, run inside its Debian root file system:
#
#   image.sh base            Debian's Python and venv, nothing else (the first layer)
#   image.sh install WHEELS  /opt/modelwire from the wheels in WHEELS, with no index, with
#                            the extras in $EXTRAS; then the user the server runs as
#
# deploy/Dockerfile runs both; benchmarks/image_size.sh runs the same two in a root file
# system built without a Docker engine, to measure the image.
set -eu

case "${1:-}" in
base)
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    ;;
install)
    wheels="$2"
    extras="${EXTRAS:-}"
    python3 -m venv /opt/modelwire
    /opt/modelwire/bin/pip install --no-cache-dir --no-index --find-links "$wheels" \
        "modelwire${extras:+[$extras]}"
    useradd --system --uid 10001 --user-group --home-dir /var/lib/modelwire --create-home modelwire
    ;;
*)
    echo "usage: image.sh base | image.sh install WHEELS" >&2
    exit 2
    ;;
esac
