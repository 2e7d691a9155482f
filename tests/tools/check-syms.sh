#!/usr/bin/env bash
# check-syms.sh OBJECT ALLOWLIST: fails, naming them, when OBJECT calls functions (has undefined
# symbols) that ALLOWLIST does not list. ALLOWLIST: one name a line, '#' starts a comment.
set -euo pipefail
obj=$1 allow=$2
[ -f "$obj" ] && [ -f "$allow" ] || { echo "check-syms: usage: $0 OBJECT ALLOWLIST" >&2; exit 2; }
allowed=$(sed 's/#.*//' "$allow" | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
used=$(nm -u "$obj" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
bad=$(comm -23 <(printf '%s\n' "$used") <(printf '%s\n' "$allowed") | sed '/^$/d')
if [ -n "$bad" ]; then
	echo "check-syms: $obj calls functions not in $allow (not known to be async-signal-safe):" >&2
	printf '  %s\n' $bad >&2
	exit 1
fi
