#!/usr/bin/env bash
# `make tsan`: the lifecycle, restart and API suites against a ThreadSanitizer build of the
# controller and the runner (build/tsan/bin). Any ThreadSanitizer report fails the run, whether
# or not the suites pass: each process writes its reports to build/tsan/reports/.
#
#   tests/tsan/run.sh [TEST.t ...]   (default: 40 50 71 72 74)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
reports=$root/build/tsan/reports
rm -rf "$reports"
mkdir -p "$reports"

if [ $# -gt 0 ]; then suites=("$@"); else
	suites=(tests/integration/40-lifecycle.t tests/integration/50-restarts.t
		tests/integration/71-api-rest.t tests/integration/72-api-events.t
		tests/integration/74-api-logs.t)
fi

# halt_on_error stays off so a report does not turn into a confusing test failure elsewhere;
# the reports are checked below instead. suppressions: tests/tsan/suppressions.txt says why
# each entry is there.
export TSAN_OPTIONS="log_path=$reports/tsan second_deadlock_stack=1 history_size=4 suppressions=$root/tests/tsan/suppressions.txt"
export TASKED_BIN_DIR=$root/build/tsan/bin
export TASKED_IT_DIR=${TASKED_IT_DIR:-$root/build/it-tsan}

status=0
tests/integration/run.sh "${suites[@]}" || status=$?

found=0
for f in "$reports"/tsan.*; do
	[ -f "$f" ] || continue
	if grep -q "WARNING: ThreadSanitizer" "$f"; then
		echo "==== ThreadSanitizer report ${f#"$root"/}"
		cat "$f"
		found=1
	fi
done
if [ "$found" -ne 0 ]; then
	echo "tsan: ThreadSanitizer reported problems (see above)" >&2
	exit 1
fi
echo "tsan: no ThreadSanitizer reports"
exit "$status"
