#!/usr/bin/env bash
# `make lint`: formatting (clang-format, the files in tests/lint/format-files), banned calls
# (tests/lint/banned.pl), cppcheck (tests/lint/cppcheck.sh) and, when present, the function
# length check (tests/tools/funclen.sh), and our global symbols a static library also defines
# (tests/lint/symbols.sh). Every check runs; the status is 1 if any failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
status=0

tests/lint/format.sh || status=1

# Shipped code and the test tools; the unit tests may shell out (rm -rf, the probe).
mapfile -t src < <(git ls-files -- 'common/*.[ch]' 'controller/*.[ch]' 'runner/*.[ch]' 'images/*.c' \
	'kubectl-tasked/*.[ch]' 'bench/*.[ch]' 'tests/tools/*.c' 'tests/fuzz/*.c' 2>/dev/null ||
	ls common/*.[ch] controller/*.[ch] runner/*.[ch] images/*.c kubectl-tasked/*.c bench/*.[ch] tests/tools/*.c tests/fuzz/*.c)
if perl tests/lint/banned.pl "${src[@]}"; then
	echo "lint: banned calls: ${#src[@]} files ok"
else
	status=1
fi

if tests/lint/cppcheck.sh; then echo "lint: cppcheck ok"; else status=1; fi

tests/lint/symbols.sh || status=1

if [ -x tests/tools/funclen.sh ]; then
	if tests/tools/funclen.sh; then echo "lint: function length ok"; else status=1; fi
fi
exit "$status"
