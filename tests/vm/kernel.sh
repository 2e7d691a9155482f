#!/usr/bin/env bash
# Debian's own kernel for the AppArmor VM (tests/vm/apparmor.t): the package linux-image-amd64
# points at, downloaded with apt-get and unpacked into a cache outside the repository, never
# installed on this machine. Prints the path of its vmlinuz. Idempotent.
set -euo pipefail

cache=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}/vm
pkg_of() { apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'; }
pkg=$(pkg_of)
if [ -z "$pkg" ]; then
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq >&2
	pkg=$(pkg_of)
fi
[ -n "$pkg" ] || { echo "kernel.sh: apt knows no linux-image-amd64" >&2; exit 1; }
ver=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
out=$cache/${pkg}_$ver
vmlinuz=$(ls "$out"/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
if [ -n "$vmlinuz" ] && [ -s "$vmlinuz" ]; then
	echo "$vmlinuz"
	exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/dl.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt's sandbox user may not write here; the download is checked against the archive's
# signed hashes either way.
(cd "$work" && apt-get download -o APT::Sandbox::User=root "$pkg=$ver" >&2)
mkdir -p "$work/x"
# Only boot/ is needed (the modules stay in the package: the VM loads none).
dpkg-deb --fsys-tarfile "$work"/*.deb | tar -x -C "$work/x" ./boot
rm -rf "$out"
mv "$work/x" "$out"
ls "$out"/boot/vmlinuz-* | head -n 1
