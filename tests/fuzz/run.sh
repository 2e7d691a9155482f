#!/usr/bin/env bash
# Runs each libFuzzer target for FUZZ_SECONDS (default 60) with clang, growing the corpus in
# tests/fuzz/corpus/<target>. New inputs worth keeping can be committed; `make test` replays them.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-60}
flags="-std=gnu17 -D_GNU_SOURCE -Icommon -Icontroller -Irunner -g -O1 -fsanitize=fuzzer,address,undefined"
libs=$(pkg-config --libs libcurl jansson yaml-0.1 libwebsockets libseccomp openssl zlib)
cflags=$(pkg-config --cflags libcurl jansson yaml-0.1 libwebsockets libseccomp openssl zlib)
lib_src=$(ls common/*.c; ls controller/*.c runner/*.c | grep -v '/main.c$')
mkdir -p build/fuzz
for t in tests/fuzz/fuzz_*.c; do
	name=$(basename "$t" .c); name=${name#fuzz_}
	clang $flags $cflags -DTASKED_VERSION='"fuzz"' -o "build/fuzz/$name" "$t" $lib_src $libs -lpthread
	mkdir -p "tests/fuzz/corpus/$name"
	"build/fuzz/$name" -max_total_time="$secs" -max_len=65536 "tests/fuzz/corpus/$name"
done
