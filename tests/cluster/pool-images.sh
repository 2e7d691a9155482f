#!/usr/bin/env bash
# Images for the RunnerPool node suite (tests/integration/node/60-pools.t), images the runner
# was not built for:
#   tasked-pool-busybox:test  FROM scratch with Debian's static busybox alone (/bin/busybox): no
#                             libc, no /etc/passwd
#   tasked-pool-debian:test   Debian bookworm from Debian's packages: debootstrap --variant=minbase
#                             plus python3, imported with `docker import` (a glibc, an
#                             /etc/passwd without 65532)
# The Debian root file system is built once and cached as a tarball in
# ${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}/pool-images (debootstrap needs root).
#
#   tests/cluster/pool-images.sh          builds both (Docker), prints their names
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() {
	echo "pool-images.sh: $*" >&2
	exit 1
}
cache=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}/pool-images
SUITE=bookworm
tarball=$cache/debian-$SUITE-minbase-python3.tar

[ -x /bin/busybox ] || die "/bin/busybox is missing (Debian: busybox-static)"
readelf -l /bin/busybox 2>/dev/null | grep -q INTERP && die "/bin/busybox is not static (Debian: busybox-static)"

ctx=$root/build/node-images/pool-busybox
rm -rf "$ctx"
mkdir -p "$ctx/bin"
install -m 0755 /bin/busybox "$ctx/bin/busybox"
printf 'FROM scratch\nCOPY bin/busybox /bin/busybox\n' >"$ctx/Dockerfile"
docker build -q -t tasked-pool-busybox:test "$ctx" >"$ctx.log" 2>&1 || {
	cat "$ctx.log" >&2
	die "building tasked-pool-busybox:test failed"
}

if [ ! -s "$tarball" ]; then
	command -v debootstrap >/dev/null || die "debootstrap is missing (Debian: debootstrap)"
	[ "$(id -u)" = 0 ] || die "debootstrap needs root"
	mkdir -p "$cache"
	work=$(mktemp -d "$cache/rootfs.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	echo "pool-images.sh: debootstrap $SUITE (minbase + python3), once; cached in $cache" >&2
	debootstrap --variant=minbase --include=python3 "$SUITE" "$work/root" >"$cache/debootstrap.log" 2>&1 || {
		tail -20 "$cache/debootstrap.log" >&2
		die "debootstrap failed (log: $cache/debootstrap.log)"
	}
	# Nothing the image does not need: apt's lists and caches.
	(cd "$work/root" && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*)
	tar -C "$work/root" --numeric-owner -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
fi
if ! docker image inspect tasked-pool-debian:test >/dev/null 2>&1 ||
	[ "$(docker image inspect -f '{{index .Config.Labels "tasked.tarball"}}' tasked-pool-debian:test 2>/dev/null)" != "$(stat -c %Y "$tarball")" ]; then
	docker import -c "LABEL tasked.tarball=$(stat -c %Y "$tarball")" "$tarball" tasked-pool-debian:test >/dev/null ||
		die "docker import of $tarball failed"
fi
echo tasked-pool-busybox:test tasked-pool-debian:test
