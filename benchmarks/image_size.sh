#!/bin/sh
# The size of deploy/Dockerfile's image, edge (no extras) and full, measured without a
# Docker engine: the same file system is built with debootstrap and chroot, and `du`
# gives what `docker image ls` calls the image's size (its layers, uncompressed).
#
#   1. debian:bookworm-slim, as its maintainers make it: debootstrap's minbase variant,
#      then their "slim" rules (no manuals, no translations, no documents but the
#      copyright files; apt's lists and caches removed).
#   2. The Dockerfile's base stage: `deploy/image.sh base` in that root file system.
#   3. The wheels stage: `pip wheel` of this checkout with the extras, here on the host,
#      whose Python must be the image's (3.11).
#   4. The final stage: `deploy/image.sh install WHEELS` in a copy of step 2's tree.
#
# Needs root, debootstrap (apt-get install debootstrap) and Debian's mirror; about four
# minutes. Writes benchmarks/results/image_size.json.
#
#   sudo sh benchmarks/image_size.sh [PYTHON]    # PYTHON: the host's, default .venv/bin/python
set -eu

root_dir=$(cd "$(dirname "$0")/.." && pwd)
python="${1:-$root_dir/.venv/bin/python}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work=$(mktemp -d /tmp/modelwire-image-XXXXXX)
trap 'rm -rf "$work"' EXIT

megabytes() { du -sxk "$1" | awk '{printf "%.1f", $1 / 1024}'; }

debootstrap --variant=minbase bookworm "$work/slim" "$mirror" >"$work/debootstrap.log"
# The slim rules, for what dpkg installs from now on and for what is already there.
cat >"$work/slim/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
find "$work/slim/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$work/slim/usr/share/doc" -mindepth 1 -type d -empty -delete
for folder in groff info linda lintian/overrides locale man; do
    rm -rf "$work/slim/usr/share/$folder"/*
done
rm -rf "$work/slim/var/lib/apt/lists"/* "$work/slim/var/cache/apt"/*
slim=$(megabytes "$work/slim")

cp /etc/resolv.conf "$work/slim/etc/resolv.conf"
cp "$root_dir/deploy/image.sh" "$work/slim/image.sh"
chroot "$work/slim" sh /image.sh base >"$work/base.log"
rm "$work/slim/image.sh"
: >"$work/slim/etc/resolv.conf"
base=$(megabytes "$work/slim")

image_python=$(chroot "$work/slim" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
host_python=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$image_python" != "$host_python" ]; then
    echo "the image has Python $image_python, $python is $host_python: the wheels would not fit" >&2
    exit 1
fi

sizes=""
for extras in "" full; do
    name=${extras:-edge}
    wheels="$work/wheels-$name"
    "$python" -m pip wheel -q --wheel-dir "$wheels" "$root_dir${extras:+[$extras]}"
    cp -a "$work/slim" "$work/$name"
    cp -a "$wheels" "$work/$name/wheels"
    cp "$root_dir/deploy/image.sh" "$work/$name/image.sh"
    chroot "$work/$name" env EXTRAS="$extras" sh /image.sh install /wheels >"$work/$name.log"
    rm -rf "$work/$name/wheels" "$work/$name/image.sh"
    # ONNX Runtime warns that /proc is not mounted; only the exit status matters here.
    chroot "$work/$name" /opt/modelwire/bin/python -c 'import modelwire.assembly' 2>/dev/null
    sizes="$sizes\"$name\": $(megabytes "$work/$name"), \"${name}_wheels_mb\": $(megabytes "$wheels"), "
    rm -rf "$work/$name"
done

commit=$(git -C "$root_dir" rev-parse --short HEAD)
cat >"$root_dir/benchmarks/results/image_size.json" <<EOF
{"commit": "$commit", "date": "$(date +%Y-%m-%d)", "machine": "$(uname -m), Debian bookworm, Python $image_python",
 "sizes_mb": {"debian_bookworm_slim": $slim, "base": $base, ${sizes%, }}}
EOF
cat "$root_dir/benchmarks/results/image_size.json"
