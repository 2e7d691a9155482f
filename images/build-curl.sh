#!/usr/bin/env bash
# Builds a static libcurl for HTTP(S) only from Debian's own curl source package (the same
# version and security patches as the system's libcurl), into the cache. The images link it so
# they do not carry Debian libcurl's dependency chain (GnuTLS, Kerberos, LDAP, SSH, RTMP, IDN,
# zstd, brotli), which alone would double the runner image. Each function gets a section of its
# own, so the controller's link places only the ones it runs first (bench/hot-text.sh) and
# --gc-sections drops the rest. Prints the install prefix.
set -euo pipefail

cache=${TASKED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tasked}
ver=$(dpkg-query -W -f='${Version}' libcurl4-openssl-dev 2>/dev/null || true)
[ -n "$ver" ] || { echo "build-curl: libcurl4-openssl-dev is not installed" >&2; exit 1; }
out=$cache/curl-fs-$ver
mkdir -p "$cache"
# One build at a time; a second caller waits and then finds it in the cache.
exec 9>"$cache/build-curl.lock"
flock 9
if [ -s "$out/lib/libcurl.a" ]; then
	echo "$out"
	exit 0
fi
for t in dpkg-source make cc; do
	command -v "$t" >/dev/null || { echo "build-curl: $t is required (Debian: dpkg-dev, make, gcc)" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/tasked-curl.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-curl: building a minimal static libcurl $ver (first time only)" >&2
# shellcheck source=images/debsrc.sh
. "$(dirname "${BASH_SOURCE[0]}")/debsrc.sh"
debsrc_init "$work"
(cd "$work" && apt-get "${aptopts[@]}" source --download-only "curl=$ver" >&2)
(cd "$work" && dpkg-source -x ./*.dsc src >&2)
cd "$work/src"
CFLAGS="-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fstack-clash-protection -fcf-protection -ffunction-sections -fdata-sections" ./configure --prefix="$out" --disable-shared --enable-static --with-openssl --with-zlib \
	--without-libidn2 --without-nghttp2 --without-brotli --without-zstd --without-libpsl \
	--without-librtmp --without-libssh2 --without-gssapi --without-libgsasl \
	--disable-ldap --disable-ldaps --disable-rtsp --disable-dict --disable-telnet --disable-tftp \
	--disable-pop3 --disable-imap --disable-smtp --disable-gopher --disable-mqtt --disable-smb \
	--disable-ftp --disable-file --disable-ntlm --disable-manual --disable-docs --disable-unix-sockets \
	--with-ca-bundle=/etc/ssl/certs/ca-certificates.crt >"$work/configure.log" 2>&1 ||
	{ tail -30 "$work/configure.log" >&2; exit 1; }
make -C lib -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
make -C lib install >/dev/null && make -C include install >/dev/null
echo "$out"
