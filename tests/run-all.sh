#!/usr/bin/env bash
# make test: unit tests, then every tests/integration/test_*.py (and
# tests/sim/test_*.py), each of which prints "N passed, N failed".
# Ends with the grand total on its own line.
set -u
build=$1; shift
cd "$(dirname "$0")/.."
total_pass=0; total_fail=0
add() { # add "N passed, N failed" line
	local line=$1 p f
	p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
	total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}
out=$(tests/run-unit.sh "$@" 2>&1); echo "$out"
add "$(echo "$out" | tail -1)"
for t in tests/sim/test_*.py tests/integration/test_*.py; do
	[ -e "$t" ] || continue
	echo "== $t"
	log=$(mktemp); rc=0
	timeout 900 /usr/bin/python3 "$t" >"$log" 2>&1 || rc=$?
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	if [ -z "$line" ] || [ "$rc" -ne 0 ]; then cat "$log"; else grep -E '^(ok|FAIL|SKIP) ' "$log" | grep -v '^ok ' ; fi
	if [ -z "$line" ]; then
		echo "FAIL $t: no summary (exit $rc)"; total_fail=$((total_fail + 1))
	else
		echo "   $line"; add "$line"
		[ "$rc" -ne 0 ] && [ "${line#*passed, }" = "0 failed" ] && total_fail=$((total_fail + 1))
	fi
	rm -f "$log"
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
