#!/usr/bin/env bash
# make lint: banned functions (STYLE.md habit 9) and clang-format drift.
set -u
cd "$(dirname "$0")/.."
rc=0
files=$(git ls-files 'agent/*.[ch]' 'common/*.[ch]' 'k8s/*.[ch]' 'tests/unit/*.[ch]' 'tests/fuzz/*.[ch]')
banned='\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|gets|strerror|rand|srand)\s*\('
if grep -nE "$banned" $files | grep -v 'lint: allow'; then
	echo "lint: banned function used (see STYLE.md habit 9)"
	rc=1
fi
if command -v clang-format >/dev/null && [ -f .clang-format ]; then
	for f in $files; do
		if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
			echo "lint: $f is not clang-formatted"
			rc=1
		fi
	done
fi
[ $rc -eq 0 ] && echo "lint: ok"
exit $rc
