#!/usr/bin/env bash
# clang-format over the files listed in tests/lint/format-files: --check (default) reports any
# difference, --fix rewrites them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mapfile -t fmt < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' tests/lint/format-files |
	while read -r g; do for f in $g; do [ -f "$f" ] && echo "$f"; done; done)
if [ "${1:---check}" = --fix ]; then
	exec clang-format -i "${fmt[@]}"
fi
if clang-format --dry-run -Werror "${fmt[@]}"; then
	echo "lint: format: ${#fmt[@]} files ok"
else
	echo "lint: format: run 'make format'" >&2
	exit 1
fi
