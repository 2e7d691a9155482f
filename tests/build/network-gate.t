#!/usr/bin/env bash
# images/network-gate.c (the init container of container-task pods without network) on the
# host's loopback: it passes only after consecutive rounds in which nothing connects, never
# while a target accepts (then it fails at its bound, the reason in its message), and fails
# without any target. No DNS, no node: the kernel's loopback is the network.
set -u
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
tmp=$(mktemp -d)
lpid=
trap '[ -n "$lpid" ] && kill "$lpid" 2>/dev/null; rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

$CC -std=gnu17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$tmp/gate" images/network-gate.c
ok $? "images/network-gate.c builds with -Wall -Wextra -Werror"

# A free port (nothing listens: refused) and a listener (accepts), in the background.
python3 -c '
import socket, sys
c = socket.socket(); c.bind(("127.0.0.1", 0)); cp = c.getsockname()[1]; c.close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(128)
open(sys.argv[1] + ".tmp", "w").write("%d %d\n" % (cp, s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    a, _ = s.accept(); a.close()
' "$tmp/ports" &
lpid=$!
for _ in $(seq 50); do [ -s "$tmp/ports" ] && break; sleep 0.1; done
read -r closed open <"$tmp/ports"

t0=$(date +%s%N)
out=$("$tmp/gate" "127.0.0.1:$closed" 2>&1)
ok $? "a refused target: the gate passes ($out)"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "$([ "$ms" -ge 100 ] && [ "$ms" -lt 2000 ] && echo 0 || echo 1)" "... after two rounds 100 ms apart, not at once ($ms ms)"

out=$("$tmp/gate" --timeout-ms 800 "127.0.0.1:$closed" "127.0.0.1:$open" 2>&1)
r=$?
ok "$([ "$r" = 1 ] && echo 0 || echo 1)" "one target still accepting: the gate fails at its bound (exit $r)"
case "$out" in *"not in force after 800 ms: 127.0.0.1:$open was still reachable"*) r=0 ;; *) r=1 ;; esac
ok "$r" "... naming the reachable address ($out)"

out=$(env -i "$tmp/gate" --timeout-ms 500 2>&1)
r=$?
# env -i: no KUBERNETES_SERVICE_HOST; the host's resolv.conf may still name a nameserver.
if grep -q '^nameserver [0-9.]*$' /etc/resolv.conf 2>/dev/null; then
	ok "$([ "$r" != 2 ] && echo 0 || echo 1)" "no service address: the nameservers of /etc/resolv.conf are probed (exit $r)"
else
	ok "$([ "$r" = 1 ] && echo 0 || echo 1)" "no target at all: the gate fails ($out)"
fi
out=$(KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$open "$tmp/gate" --timeout-ms 500 2>&1)
r=$?
case "$out" in *"127.0.0.1:$open was still reachable"*) ;; *) r=9 ;; esac
ok "$([ "$r" = 1 ] && echo 0 || echo 1)" "the kubernetes Service from \$KUBERNETES_SERVICE_HOST/_PORT is a target ($out)"
for bad in 'example.com:443' '127.0.0.1:0' '127.0.0.1:99999' '1.2.3.4' '--rounds 0' '--timeout-ms x'; do
	# shellcheck disable=SC2086 # the option and its value split
	"$tmp/gate" $bad >/dev/null 2>&1
	ok "$([ $? = 2 ] && echo 0 || echo 1)" "refused: $bad (exit 2; names are never resolved)"
done
echo "1..$n"
