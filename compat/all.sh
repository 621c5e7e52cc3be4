#!/usr/bin/env bash
# Runs every compat client (compat/install.sh's pinned ones, and kcat) one after another against a
# running brook and prints the whole matrix, then one summary line per client.
# Usage: compat/all.sh [bootstrap, default 127.0.0.1:9092]
# Exit status: 0 every scenario of every client passed, 1 otherwise (a missing client counts).
set -uo pipefail

COMPAT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BOOTSTRAP="${1:-127.0.0.1:9092}"
summary=()
status=0

run() { # <client> <command...>: runs one script, keeps its matrix on stdout, notes its exit status
    local client="$1"; shift
    "$@" "$BOOTSTRAP"
    local rc=$?
    case "$rc" in
        0) summary+=("$client: all passed") ;;
        2) summary+=("$client: MISSING or broker unreachable (see above)"); status=1 ;;
        *) summary+=("$client: FAILED (exit $rc)"); status=1 ;;
    esac
}

run kcat bash "$COMPAT/kcat.sh"
run kafka-python-3 env PYTHONPATH="$COMPAT/.deps/kafka-python-3" python3 "$COMPAT/kafka_python.py"
run kafka-python-2 env PYTHONPATH="$COMPAT/.deps/kafka-python-2" python3 "$COMPAT/kafka_python.py"
run aiokafka env PYTHONPATH="$COMPAT/.deps/aiokafka" python3 "$COMPAT/aiokafka_compat.py"
run confluent-kafka env PYTHONPATH="$COMPAT/.deps/confluent-kafka" python3 "$COMPAT/confluent_kafka_compat.py"
run kafkajs node "$COMPAT/kafkajs/compat.js"

echo "--- compat matrix against $BOOTSTRAP ---"
printf '%s\n' "${summary[@]}"
exit "$status"
