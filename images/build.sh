#!/usr/bin/env bash
# `make images`: builds the tasked-controller and tasked-runner images FROM scratch with the
# local Docker engine (no registry, no base image to pull).
#
#   images/build.sh [runner] [controller]      (default: both)
#
# For each image, the build context build/images/NAME/rootfs gets:
#   /usr/local/bin/tasked-NAME          bin/tasked-NAME, stripped
#   the libraries ldd lists for it      at the paths ldd names (copied, symlinks resolved)
#   the program interpreter             e.g. /lib64/ld-linux-x86-64.so.2
#   /etc/ssl/certs/ca-certificates.crt  the CA bundle
#   /etc/passwd, /etc/group             root (0) and nobody (65532), nothing else
# then `docker build -f images/NAME.Dockerfile`. Sizes (uncompressed as `docker images` shows
# them, and gzip-compressed as a registry stores them) go to build/images/sizes.txt.
#
# Environment:
#   TASKED_IMAGE_PREFIX  image name prefix (default "tasked-": tasked-runner, tasked-controller)
#   TASKED_IMAGE_TAG     tag (default: the VERSION file)
#   TASKED_CA_BUNDLE     CA bundle to copy (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() {
	echo "images/build.sh: $*" >&2
	exit 1
}

PREFIX=${TASKED_IMAGE_PREFIX:-tasked-}
TAG=${TASKED_IMAGE_TAG:-$(cat "$root/VERSION" 2>/dev/null || echo 0.0.0)}
CA=${TASKED_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

command -v docker >/dev/null || die "docker is required (Debian: docker.io), with a running engine"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (is dockerd running, may you use its socket?)"
for t in ldd readelf strip gzip; do
	command -v "$t" >/dev/null || die "$t is required (Debian: libc-bin, binutils, gzip)"
done
[ -s "$CA" ] || die "no CA bundle at $CA (Debian: ca-certificates; or set TASKED_CA_BUNDLE)"

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(runner controller)

revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
	created=$(git -C "$root" log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null ||
		echo 1970-01-01T00:00:00Z)
fi

# copy_file SRC DEST MODE: SRC (symlinks resolved) to DEST inside the rootfs.
copy_file() {
	mkdir -p "$(dirname "$2")"
	cp -L "$1" "$2"
	chmod "$3" "$2"
}

# assemble NAME: build/images/NAME/rootfs from bin/tasked-NAME.
assemble() {
	local name=$1 bin ctx=$root/build/images/$1 rootfs interp lib
	# TASKED_IMAGE_BIN: where the binaries come from (`make images` links them against a
	# minimal static libcurl in build/image-bin; plain bin/ works too, just bigger).
	bin=${TASKED_IMAGE_BIN:-$root/bin}
	case "$bin" in /*) ;; *) bin=$root/$bin ;; esac
	bin=$bin/tasked-$1
	[ -x "$bin" ] || die "$bin is missing: build it first with 'make images' (or 'make')"
	rootfs=$ctx/rootfs
	rm -rf "$ctx" "$ctx.log"
	mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs"

	strip --strip-all -o "$rootfs/usr/local/bin/tasked-$name" "$bin"
	chmod 0755 "$rootfs/usr/local/bin/tasked-$name"

	# The interpreter the kernel loads, from the ELF header (not guessed).
	interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
	if [ -n "$interp" ]; then
		copy_file "$interp" "$rootfs$interp" 0755
	fi
	# Every shared library the loader resolves, at the path it resolved it from; "not found"
	# is an error, not something to find out at run time.
	if ldd "$bin" | grep -q 'not found'; then
		ldd "$bin" >&2
		die "bin/tasked-$name has unresolved libraries"
	fi
	while read -r lib; do
		[ -n "$lib" ] || continue
		copy_file "$lib" "$rootfs$lib" 0755
	done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')

	copy_file "$CA" "$rootfs/etc/ssl/certs/ca-certificates.crt" 0644
	# nobody is 65532 (as in distroless), not Debian's 65534. No home, no login shell exists.
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65532:65532:nobody:/nonexistent:/sbin/nologin\n' \
		>"$rootfs/etc/passwd"
	printf 'root:x:0:\nnobody:x:65532:\n' >"$rootfs/etc/group"
	chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
	[ "$name" != runner ] || bundle "$bin" "$rootfs" "${interp:-}"
	find "$rootfs" -type d -exec chmod 0755 {} +
}

# bundle BIN ROOTFS INTERP: the self-contained runner a RunnerPool injects into images it was
# not built for (docs/pools.md). /usr/lib/tasked-bundle holds, flat: the runner, glibc's loader
# and every library ldd lists, and the CA bundle; the pool's runner container starts it as
# `ld-linux-x86-64.so.2 --library-path DIR DIR/tasked-runner`, so nothing of the image's own
# libc (or its absence) is used. The image's own paths for those files become relative
# symlinks into it, so the image carries each file once (/usr/lib is where the runner's
# AppArmor profile lets it map and run libraries). /usr/local/bin/tasked-install (static) is
# the init container that copies the bundle into the pod's emptyDir (no shell, no cp here);
# /usr/local/bin/tasked-network-gate (static) the one that waits for a task pod's deny-all.
bundle() {
	local bin=$1 rootfs=$2 interp=$3 dir=$2/usr/lib/tasked-bundle lib
	[ -n "$interp" ] || die "the runner has no program interpreter: a static runner needs no bundle"
	command -v "${CC:-cc}" >/dev/null || die "a C compiler is required for tasked-install"
	mkdir -p "$dir"
	into_bundle "$rootfs/usr/local/bin/tasked-runner" "$dir/tasked-runner"
	into_bundle "$rootfs$interp" "$dir/$(basename "$interp")"
	while read -r lib; do
		[ -n "$lib" ] || continue
		into_bundle "$rootfs$lib" "$dir/$(basename "$lib")"
	done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
	into_bundle "$rootfs/etc/ssl/certs/ca-certificates.crt" "$dir/ca-certificates.crt"
	"${CC:-cc}" -static -O2 -Wall -Wextra -Werror -o "$rootfs/usr/local/bin/tasked-install" \
		"$root/images/bundle-install.c"
	strip --strip-all "$rootfs/usr/local/bin/tasked-install"
	chmod 0755 "$rootfs/usr/local/bin/tasked-install"
	# The init container of container-task pods without network (images/network-gate.c).
	"${CC:-cc}" -static -O2 -Wall -Wextra -Werror -o "$rootfs/usr/local/bin/tasked-network-gate" \
		"$root/images/network-gate.c"
	strip --strip-all "$rootfs/usr/local/bin/tasked-network-gate"
	chmod 0755 "$rootfs/usr/local/bin/tasked-network-gate"
}

# into_bundle FILE DEST: moves FILE to DEST and leaves a relative symlink to it at FILE.
into_bundle() {
	[ -f "$1" ] && [ ! -L "$1" ] || die "$1 is not a regular file"
	[ ! -e "$2" ] || die "two files named $(basename "$2") for the bundle"
	mv "$1" "$2"
	ln -sr "$2" "$1"
}

sizes=$root/build/images/sizes.txt
mkdir -p "$root/build/images"
touch "$sizes"
for name in "${names[@]}"; do
	case "$name" in runner | controller) ;; *) die "unknown image '$name' (runner or controller)" ;; esac
	assemble "$name"
	image=$PREFIX$name:$TAG
	echo "images/build.sh: building $image" >&2
	old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
	# The log is shown only on failure (the engine's notes about its builder are noise here).
	if ! docker build -f "$root/images/$name.Dockerfile" -t "$image" \
		--build-arg "VERSION=$TAG" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
		"$root/build/images/$name" >"$root/build/images/$name.log" 2>&1; then
		cat "$root/build/images/$name.log" >&2
		die "docker build of $image failed (log above, also in build/images/$name.log)"
	fi
	# A rebuild leaves the previous image untagged: remove it unless something still uses it.
	if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
		docker image rm "$old_id" >/dev/null 2>&1 || true
	fi
	raw=$(docker image inspect -f '{{.Size}}' "$image")
	gz=$(docker save "$image" | gzip -6 | wc -c)
	# one line per image: NAME UNCOMPRESSED_BYTES GZIP_BYTES
	grep -v "^$image " "$sizes" >"$sizes.tmp" || true
	printf '%s %s %s\n' "$image" "$raw" "$gz" >>"$sizes.tmp"
	mv "$sizes.tmp" "$sizes"
	awk -v i="$image" -v r="$raw" -v g="$gz" \
		'BEGIN { printf "%s: %.1f MB uncompressed, %.1f MB compressed (gzip)\n", i, r / 1e6, g / 1e6 }'
done
