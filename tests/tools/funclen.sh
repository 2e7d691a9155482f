#!/usr/bin/env bash
# Lists C functions longer than a limit (default 150 lines, FUNCLEN_MAX overrides) in the given
# directories (or files) and exits 1 when there is one. A function may be longer when a comment
# within the three lines above its definition contains "funclen:" followed by the reason.
#
#   tests/tools/funclen.sh [DIR|FILE...]      (default: controller runner)
#
# A definition is a line starting in column 0 with a name and "(" that is not a declaration, and
# its body ends at the first "}" in column 0 (the project's style).
set -euo pipefail

max=${FUNCLEN_MAX:-150}
if [ $# -eq 0 ]; then
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	set -- controller runner
fi

files=()
for d in "$@"; do
	if [ -d "$d" ]; then
		while IFS= read -r f; do files+=("$f"); done < <(find "$d" -maxdepth 1 -name '*.c' | sort)
	else
		files+=("$d")
	fi
done
[ ${#files[@]} -gt 0 ] || exit 0

awk -v max="$max" '
FNR == 1 { infn = 0; p1 = p2 = p3 = "" }
{
	if (!infn && $0 ~ /^[A-Za-z_][A-Za-z0-9_ \*]*[ \*]?[A-Za-z_][A-Za-z0-9_]*\(/ && $0 !~ /;[ \t]*$/ &&
	    $0 !~ /^(typedef|struct [a-z_]+ \{|enum|#)/) {
		infn = 1; start = FNR; name = $0; sub(/\(.*/, "", name); sub(/.*[ \*]/, "", name)
		excused = (p1 p2 p3) ~ /funclen:/
	}
	if (infn && $0 ~ /^}/) {
		infn = 0; n = FNR - start + 1
		if (n > max && !excused) { printf "%s:%d: %s is %d lines (limit %d)\n", FILENAME, start, name, n, max; bad = 1 }
	}
	p3 = p2; p2 = p1; p1 = $0
}
END { exit bad ? 1 : 0 }
' "${files[@]}"
