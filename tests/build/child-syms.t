#!/usr/bin/env bash
# The build's async-signal-safety check of runner/child.c (Makefile: child.syms-ok) passes on
# the real file and fails when the same file calls malloc, printf or a pthread function.
set -u
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
FLAGS="-std=gnu17 -D_GNU_SOURCE -Icommon -Irunner -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE -O2"
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

$CC $FLAGS -c runner/child.c -o "$tmp/child.o"
tests/tools/check-syms.sh "$tmp/child.o" runner/child.allow 2>"$tmp/err"
ok $? "runner/child.c passes the check"

for call in 'return malloc(n)' 'printf("%d", n)' 'pthread_mutex_lock(&m)'; do
	cat >"$tmp/bad.h" <<EOT
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
void *child_selftest_bad(int n);
void *child_selftest_bad(int n) { static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER; (void)m; $call; return 0; }
EOT
	$CC $FLAGS -include "$tmp/bad.h" -c runner/child.c -o "$tmp/bad.o"
	tests/tools/check-syms.sh "$tmp/bad.o" runner/child.allow 2>"$tmp/err"
	r=$?
	fn=${call%%(*}; fn=${fn#return }
	[ "$r" = 1 ] && grep -Eq "^  (__)?${fn}(_chk)?\$" "$tmp/err"
	ok $? "child.c calling $call fails the check and names $fn"
done
echo "1..$n"
