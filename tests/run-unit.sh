#!/usr/bin/env bash
# Runs unit test binaries given as arguments; sums their "N passed, N failed".
set -u
total_pass=0; total_fail=0
for bin in "$@"; do
	echo "== $(basename "$bin")"
	out=$("$bin" 2>&1); rc=$?
	line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
	# The modules' own log lines are noise unless something failed.
	if [ "$rc" -ne 0 ] || [ -z "$line" ] || [ "${line#*passed, }" != "0 failed" ]; then
		echo "$out" | grep -v '^ok ' | grep -v -E '^[0-9]+ passed, [0-9]+ failed$' || true
	fi
	if [ -z "$line" ]; then
		echo "FAIL $bin: crashed or printed no summary (exit $rc)"
		total_fail=$((total_fail + 1)); continue
	fi
	p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
	echo "   $line"
	total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && total_fail=$((total_fail + 1))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
