#!/usr/bin/env bash
# Global symbols of our objects that a linked library also defines. The image binaries link the
# libraries statically, where such a clash is a link error at best and the wrong function at
# worst (common/utf8.c's utf8_encode once met jansson's). Needs the objects of `make all`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
libdir=$(${CC:-cc} -print-multiarch 2>/dev/null || true)
libdir=/usr/lib/${libdir:-x86_64-linux-gnu}
syms() { nm -g --defined-only "$@" 2>/dev/null | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sort -u; }
# Interposed on purpose (common/wsguard.h): a weak SSL_read for dynamic links; the static image
# links with -Wl,--wrap=SSL_read instead, so libssl's own definition stays the real one.
ours=$(syms build/rel/common/*.o build/rel/controller/*.o build/rel/runner/*.o | grep -vx 'SSL_read' || true)
[ -n "$ours" ] || { echo "lint: symbols: no objects in build/rel (run make all first)" >&2; exit 1; }
libs=()
for l in jansson yaml websockets cap seccomp ssl crypto z curl; do
	[ -f "$libdir/lib$l.a" ] && libs+=("$libdir/lib$l.a")
done
clash=$(comm -12 <(echo "$ours") <(syms "${libs[@]}"))
if [ -n "$clash" ]; then
	echo "lint: symbols also defined by a library (give them a module prefix):" >&2
	echo "$clash" | sed 's/^/  /' >&2
	exit 1
fi
echo "lint: symbols: ${#libs[@]} static libraries, no clash"
