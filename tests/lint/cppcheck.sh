#!/usr/bin/env bash
# cppcheck over the shipped C code at --enable=warning,portability (plus the default error
# class); any finding fails. jansson's iteration macros are given to it, since it does not read
# system headers. A false positive is silenced in place with `// cppcheck-suppress id` and a
# reason, never here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cppcheck -q --std=c11 --enable=warning,portability --error-exitcode=1 --inline-suppr \
	-D_GNU_SOURCE -DTASKED_VERSION='"0"' --include=tests/lint/cppcheck-defs.h \
	-Icommon -Icontroller -Irunner \
	common controller runner kubectl-tasked
