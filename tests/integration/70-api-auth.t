#!/usr/bin/env bash
# Controller API authentication: the key matrix (none, wrong, off by the last byte, Bearer,
# X-API-Key), JSON errors, key rotation through the key file, keys from the flag and the
# environment, the endpoints that need no key, and the refusal to serve a non-loopback address
# without a key.
. "$(dirname "$0")/lib.sh"
. "$IT_ROOT/tests/tools/apitest.sh"
test_namespace api-auth

ORIG_KEY=$(key)
restore_key() {
	if [ "$(cat "$KEY_FILE" 2>/dev/null)" != "$ORIG_KEY" ]; then
		(
			umask 077
			printf '%s\n' "$ORIG_KEY" >"$KEY_FILE.tmp"
		)
		mv "$KEY_FILE.tmp" "$KEY_FILE"
	fi
}
trap '_cleanup_namespace; extra_controllers_stop; restore_key' EXIT

K=$ORIG_KEY
last=${K: -1}
[ "$last" = a ] && alt=b || alt=a
NEAR="${K%?}$alt"
U=$API/api/v1/tasks
fails0=$(metric tasked_api_auth_failures_total)

st() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

is "$(st "$U")" 401 "no key: 401"
hdrs=$(mktemp)
body=$(curl -s -D "$hdrs" "$U")
like "$body" '^\{"error":"Unauthorized","message":"[^"]+"\}$' "the refusal is a JSON {error, message} body"
like "$(tr -d '\r' <"$hdrs")" $'content-type: application/json' "... with content-type application/json"
like "$(tr -d '\r' <"$hdrs")" 'www-authenticate: Bearer' "... and a WWW-Authenticate: Bearer challenge"
rm -f "$hdrs"
is "$(st -H "X-API-Key: wrong" "$U")" 401 "a wrong key: 401"
is "$(st -H "X-API-Key: $NEAR" "$U")" 401 "a key differing only in the last byte (X-API-Key): 401"
is "$(st -H "Authorization: Bearer $NEAR" "$U")" 401 "a key differing only in the last byte (Bearer): 401"
is "$(st -H "X-API-Key: ${K}0" "$U")" 401 "the key plus one byte: 401"
is "$(st -H "X-API-Key: ${K%?}" "$U")" 401 "the key minus its last byte: 401"
is "$(st -H "Authorization: Basic $(printf 'x:%s' "$K" | base64 -w0)" "$U")" 401 "Basic auth is not a key: 401"
is "$(printf 'Authorization: Bearer %s\n' "$K" | st -H @- "$U")" 200 "Authorization: Bearer KEY: 200"
is "$(printf 'X-API-Key: %s\n' "$K" | st -H @- "$U")" 200 "X-API-Key: KEY: 200"
is "$(printf 'x-api-key: %s\n' "$K" | st -H @- "$U")" 200 "header names are case-insensitive"
fails1=$(metric tasked_api_auth_failures_total)
is "$((fails1 - fails0))" 8 "every refusal is counted in tasked_api_auth_failures_total"
if grep -qF -- "$K" "$STATE/controller.log" || grep -qF -- "$NEAR" "$STATE/controller.log"; then
	fail "the controller log never contains a key"
else
	pass "the controller log never contains a key"
fi

# No key needed for health and metrics (documented in docs/api.md).
is "$(st "$API/healthz")" 200 "/healthz needs no key"
is "$(st "$API/readyz")" 200 "/readyz needs no key"
is "$(st "$API/metrics")" 200 "/metrics needs no key"
like "$(curl -s -o /dev/null -w '%{content_type}' "$API/metrics")" '^text/plain; version=0.0.4' \
	"/metrics has the Prometheus text content type"

# Errors are JSON everywhere.
is "$(st "$API/api/v1/nope")" 401 "an unknown path without a key is 401 (no endpoint discovery)"
body=$(acurl "$API/api/v1/nope")
is "$body" '{"error":"NotFound","message":"no such endpoint"}' "an unknown path with the key: 404 JSON"
is "$(code "$API/api/v1/namespaces/Bad_NS/tasks")" 400 "an invalid namespace: 400"
like "$(acurl "$API/api/v1/tasks?limit=0")" '"error":"BadRequest"' "an invalid limit: 400 JSON"
is "$(code "$API/api/v1/tasks" -X POST -d '{}')" 405 "POST: 405"
like "$(acurl -X DELETE "$API/api/v1/tasks")" '"error":"MethodNotAllowed"' "DELETE: 405 JSON"

# Rotation: the key file is re-read when it changes.
NEW=$(openssl rand -hex 32)
(
	umask 077
	printf '%s\n' "$NEW" >"$KEY_FILE.tmp"
)
mv "$KEY_FILE.tmp" "$KEY_FILE"
is "$(printf 'X-API-Key: %s\n' "$NEW" | st -H @- "$U")" 200 "after rotating the key file the new key works"
is "$(printf 'X-API-Key: %s\n' "$K" | st -H @- "$U")" 401 "... and the old key is refused"
: >"$KEY_FILE.empty"
cp "$KEY_FILE.empty" "$KEY_FILE"
rm -f "$KEY_FILE.empty"
is "$(printf 'X-API-Key: %s\n' "$NEW" | st -H @- "$U")" 200 "an emptied key file keeps the last key (never opens the API)"
is "$(st "$U")" 401 "... and no key is still refused"
restore_key
is "$(printf 'X-API-Key: %s\n' "$K" | st -H @- "$U")" 200 "rotating back restores the original key"

# Keys from the flag and the environment, on controllers of their own.
extra_controller flagkey "$TEST_NS" --api-key flag-key-123
wait_for 20 curl -sf "http://127.0.0.1:$EXTRA_API_PORT/healthz"
is "$(st -H "Authorization: Bearer flag-key-123" "http://127.0.0.1:$EXTRA_API_PORT/api/v1/tasks")" 200 \
	"--api-key: the flag's key works"
is "$(st -H "Authorization: Bearer flag-key-12" "http://127.0.0.1:$EXTRA_API_PORT/api/v1/tasks")" 401 \
	"--api-key: a shorter key is refused"
TASKED_API_KEY=env-key-456 extra_controller envkey "$TEST_NS"
wait_for 20 curl -sf "http://127.0.0.1:$EXTRA_API_PORT/healthz"
is "$(st -H "X-API-Key: env-key-456" "http://127.0.0.1:$EXTRA_API_PORT/api/v1/tasks")" 200 \
	"TASKED_API_KEY: the environment's key works"
is "$(st "http://127.0.0.1:$EXTRA_API_PORT/api/v1/tasks")" 401 "TASKED_API_KEY: no key is refused"
extra_controllers_stop

# A key file that yields no key refuses to start rather than serve an open API.
nok "a missing --api-key-file stops the controller" \
	timeout 20 "$CONTROLLER" --kubeconfig "$STATE/kubeconfig" --namespace "$TEST_NS" \
	--listen "127.0.0.1:$(free_port)" --broker-listen "127.0.0.1:$(free_port)" \
	--runner-token-file "$STATE/runner-token" --api-key-file "$STATE/no-such-key"
like "$NOK_OUTPUT" 'API key file is missing' "... saying why"

# No key on a non-loopback address: refused unless --insecure-no-auth.
run_check() {
	"$CONTROLLER" --kubeconfig "$STATE/kubeconfig" --runner-token-file "$STATE/runner-token" --check-config "$@"
}
nok "--listen 0.0.0.0 without a key is refused" env -u TASKED_API_KEY "$CONTROLLER" \
	--kubeconfig "$STATE/kubeconfig" --runner-token-file "$STATE/runner-token" --check-config --listen 0.0.0.0:18080
like "$NOK_OUTPUT" 'refusing to serve the API on 0.0.0.0:18080 without an API key' "... with a clear message"
ok "--insecure-no-auth allows it" env -u TASKED_API_KEY "$CONTROLLER" --kubeconfig "$STATE/kubeconfig" \
	--runner-token-file "$STATE/runner-token" --check-config --listen 0.0.0.0:18080 --insecure-no-auth
ok "a key (--api-key-file) allows it" run_check --listen 0.0.0.0:18080 --api-key-file "$KEY_FILE"
ok "a key (TASKED_API_KEY) allows it" env TASKED_API_KEY=x "$CONTROLLER" --kubeconfig "$STATE/kubeconfig" \
	--runner-token-file "$STATE/runner-token" --check-config --listen 0.0.0.0:18080
ok "loopback needs no key" env -u TASKED_API_KEY "$CONTROLLER" --kubeconfig "$STATE/kubeconfig" \
	--runner-token-file "$STATE/runner-token" --check-config --listen 127.0.0.1:18080

done_testing
