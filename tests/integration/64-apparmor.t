#!/usr/bin/env bash
# The runner's AppArmor profile: compiled by the real apparmor_parser (-Q -K: parse and
# compile, no kernel needed), a syntax error is caught, and the rules say what the issue asks:
# n8n's /proc rule verbatim, no writes outside /tmp, no ptrace, no mount, only the network
# the runner needs. The chart's loader ships the same text.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/helm/lib.sh
. "$IT_ROOT/tests/helm/lib.sh"

PROFILE=$IT_ROOT/apparmor/tasked-runner
PARSER=$(command -v apparmor_parser || echo /usr/sbin/apparmor_parser)
[ -x "$PARSER" ] || {
	echo "Bail out! apparmor_parser is required (Debian: apparmor)"
	exit 255
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok "apparmor_parser -Q -K compiles apparmor/tasked-runner" "$PARSER" -Q -K "$PROFILE"

# Broken copies must not compile: the test can fail.
sed 's/^  network inet stream,$/  network inet stream/' "$PROFILE" >"$work/missing-comma"
nok "a profile with a missing comma is refused" "$PARSER" -Q -K "$work/missing-comma"
sed 's/^  \/tmp\/\*\* rwlk,$/  \/tmp\/** rwlkq,/' "$PROFILE" >"$work/bad-perm"
nok "a profile with an unknown permission is refused" "$PARSER" -Q -K "$work/bad-perm"
sed 's/^}$//' "$PROFILE" >"$work/unclosed"
nok "a profile without its closing brace is refused" "$PARSER" -Q -K "$work/unclosed"

# rules_of FILE: the rules, comments stripped, one per line.
rules_of() {
	sed -e 's/#include/@include/' -e 's/#.*$//' -e 's/@include/#include/' \
		-e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$1" | grep -v '^$'
}
# writable_of RULES: paths of allow rules with a write (w) or append (a) permission.
writable_of() {
	grep -Ev '^(audit )?deny ' <<<"$1" |
		sed -n -E 's/^(owner )?([/@][^ ]*) +([a-zA-Z]+),$/\2 \3/p' | awk '$2 ~ /[wa]/ { print $1 }'
}
rules=$(rules_of "$PROFILE")
# shellcheck disable=SC2317 # called through ok
has() { grep -qxF -- "$1" <<<"$rules"; }

ok "the profile is named tasked-runner (the chart's localhostProfile)" \
	grep -qx 'profile tasked-runner flags=(attach_disconnected,mediate_deleted) {' <<<"$rules"
ok "n8n's rule is there verbatim: audit deny @{PROC}/[0-9]*/{environ,mounts} rwl," \
	has 'audit deny @{PROC}/[0-9]*/{environ,mounts} rwl,'
ok "... and for /proc/PID/task/TID/ too" has 'audit deny @{PROC}/[0-9]*/task/[0-9]*/{environ,mounts,mountinfo,mountstats} rwl,'
for r in 'audit deny ptrace,' 'audit deny mount,' 'audit deny umount,' 'audit deny pivot_root,' \
	'deny capability,' 'deny network inet raw,' 'deny network inet6 raw,' 'deny network packet,' \
	'audit deny /tmp/** mx,'; do
	ok "it has: $r" has "$r"
done
is "$(grep -c '^ptrace\|^[a-z ]*ptrace ([a-z,]*)' <<<"$rules" || true)" 0 "no ptrace is allowed anywhere"
is "$(grep -Ec '^(owner )?capability' <<<"$rules" || true)" 0 "no capability is granted"
# The one allowed mount matches nothing (tests/vm/ shows a profile without it mediates no mount).
is "$(grep -E '^(audit )?(mount|remount|umount|pivot_root)' <<<"$rules" | grep -v '^audit deny ' || true)" \
	'mount fstype=tasked-never none -> /tasked-never/,' "the only mount rule that allows is one no mount matches"

# Every allow rule with a write (w) or append (a) permission is for /tmp or a null device.
writable=$(writable_of "$rules")
like "$writable" '^/dev/null$' "the write-rule scan sees /dev/null (rw)"
like "$writable" '^/tmp/\*\*$' "/tmp/** is writable"
is "$(grep -Evx '/tmp/\*\*|/dev/(null|zero|full|tty)' <<<"$writable" || true)" "" \
	"nothing else is writable (only /tmp/** and /dev/{null,zero,full,tty})"
sed 's|^  /etc/\*\* r,$|  /etc/** rw,|; s|^  /\*\* r,$|  /** r,\n  owner /home/** w,|' "$PROFILE" >"$work/writes"
is "$(writable_of "$(rules_of "$work/writes")" | grep -Evx '/tmp/\*\*|/dev/(null|zero|full|tty)' | tr '\n' ' ')" "/home/** " \
	"the scan catches a write rule outside /tmp (owner /home/** w added to a copy)"
is "$(grep -E '^(owner )?[/@][^ ]* +[a-z]*[iucpx]' <<<"$rules" | grep -E '^(owner )?/tmp' || true)" "" \
	"nothing under /tmp may be executed"

net=$(grep -E '^network' <<<"$rules" | sort)
is "$net" "$(printf '%s\n' 'network inet dgram,' 'network inet stream,' 'network inet6 dgram,' 'network inet6 stream,' 'network netlink raw,' | sort)" \
	"network: TCP and UDP over IPv4/IPv6 and a netlink route socket, nothing else"
is "$(grep -Ec '^(unix|network),?$' <<<"$rules" || true)" 0 "no blanket network or unix rule"

# The chart's loader carries exactly this profile.
cm=$(render loader tasked --show-only templates/apparmor-loader.yaml | to_json |
	jq -r '.[] | select(.kind == "ConfigMap") | .data["tasked-runner"]')
is "$cm" "$(cat "$PROFILE")" "the loader's ConfigMap holds apparmor/tasked-runner unchanged"
printf '%s\n' "$cm" >"$work/from-chart"
ok "... and that text compiles" "$PARSER" -Q -K "$work/from-chart"

done_testing
