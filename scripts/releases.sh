#!/usr/bin/env bash
# The pinned sglang releases, one a line, oldest first: one per requirements/sglang-X.txt.
# The one release list: setup.sh, matrix.py, gpu-test.sh and the tests read it from there.
cd "$(dirname "$0")/.."
for f in requirements/sglang-*.txt; do [ -f "$f" ] && { f=${f#requirements/sglang-}; echo "${f%.txt}"; }; done | sort -V
