#!/usr/bin/env bash
# Builds static libssl and libcrypto from Debian's openssl source package with every function and
# object in a section of its own (-ffunction-sections -fdata-sections), into the cache, for the
# image links. Debian's libcrypto.a puts each file's code in one section, so placing the code the
# controller runs together (images/controller-hot.ld) had to take whole files: 1.2 MiB of
# libcrypto's code for the functions that ran. Per function, only those are placed first, and
# --gc-sections drops the functions nothing calls. Prints the install prefix.
#
# The source is the newest 3.0 release Debian's archive serves (its security updates included):
# the release installed as libssl-dev may no longer be served as source. 3.0.x keeps one ABI, so
# the objects built against Debian's headers (libwebsockets, libcurl) link with it.
set -euo pipefail

cache=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}
mkdir -p "$cache"
# One build at a time; a second caller waits and then finds it in the cache.
exec 9>"$cache/build-openssl.lock"
flock 9
for d in "$cache"/openssl-fs-*; do
	if [ -s "$d/lib/libcrypto.a" ] && [ -s "$d/lib/libssl.a" ]; then
		echo "$d"
		exit 0
	fi
done
for t in dpkg-source make cc perl; do
	command -v "$t" >/dev/null || { echo "build-openssl: $t is required (Debian: dpkg-dev, make, gcc, perl)" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/tasked-openssl.XXXXXX")
trap 'rm -rf "$work"' EXIT
# shellcheck source=images/debsrc.sh
. "$(dirname "${BASH_SOURCE[0]}")/debsrc.sh"
debsrc_init "$work"
# Newest first; a version a suite lists may not be downloadable (seen: the security suite's).
dsc=
for v in $(apt-cache "${aptopts[@]}" showsrc openssl 2>/dev/null | sed -n 's/^Version: //p' | sort -rV -u); do
	if (cd "$work" && apt-get "${aptopts[@]}" source --download-only "openssl=$v" >&2); then
		dsc=$(ls "$work"/openssl_*.dsc)
		break
	fi
	rm -f "$work"/openssl_*
done
[ -n "$dsc" ] || { echo "build-openssl: no openssl source package could be downloaded" >&2; exit 1; }
ver=$(sed -n 's/^Version: //p' "$dsc")
case "$ver" in 3.0.*) ;; *)
	echo "build-openssl: Debian serves openssl $ver, not a 3.0 release (the ABI Debian's libssl-dev has)" >&2
	exit 1
	;;
esac
out=$cache/openssl-fs-$ver
echo "build-openssl: building static libssl and libcrypto $ver with a section per function (first time only)" >&2
(cd "$work" && dpkg-source -x "$dsc" src >&2)
cd "$work/src"
# Debian's configuration (debian/rules) without the shared libraries and the tests: the same
# algorithms and entry points, so what libcurl and libwebsockets were built against is there.
./Configure linux-x86_64 --prefix="$out" --libdir=lib --openssldir=/usr/lib/ssl \
	no-shared no-tests no-idea no-mdc2 no-rc5 no-zlib no-ssl3 no-ssl3-method enable-rfc3779 \
	enable-cms no-capieng no-rdrand enable-ec_nistp_64_gcc_128 \
	-D_FORTIFY_SOURCE=2 -fstack-protector-strong -fstack-clash-protection -fcf-protection \
	-ffunction-sections -fdata-sections >"$work/configure.log" 2>&1 ||
	{ tail -30 "$work/configure.log" >&2; exit 1; }
make -j"$(nproc)" build_libs >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
mkdir -p "$out.tmp/lib"
cp libssl.a libcrypto.a "$out.tmp/lib/"
echo "$ver" >"$out.tmp/VERSION"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
