#!/usr/bin/env bash
# Runs Debian's kcat (librdkafka 2.0.2 inside) against a running brook and prints one matrix line
# per scenario. Usage: compat/kcat.sh [bootstrap, default 127.0.0.1:9092]
# Exit status: 0 all scenarios passed, 1 some failed, 2 kcat missing or broker unreachable.
# Topics are named kcat-<scenario>-<run id> (KCAT_RUN_ID overrides the id) so reruns never collide.
set -euo pipefail

BOOTSTRAP="${1:-127.0.0.1:9092}"
RUN_ID="${KCAT_RUN_ID:-$(date +%s)-$$}"
KCAT="${KCAT:-kcat}"
STEP_TIMEOUT="${KCAT_STEP_TIMEOUT:-60}"

if ! command -v "$KCAT" >/dev/null 2>&1; then
    echo "kcat.sh: '$KCAT' not found; install it with: apt-get install kcat" >&2
    exit 2
fi

echo "kcat: $("$KCAT" -V 2>&1 | grep -o 'Version [^ ]* ([^)]*librdkafka [0-9.]*' | sed 's/(.*librdkafka/with librdkafka/' || true) against $BOOTSTRAP"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0
total=0

pass() { total=$((total + 1)); printf 'kcat %-20s PASS\n' "$1"; }
fail() {
    total=$((total + 1)); failures=$((failures + 1))
    printf 'kcat %-20s FAIL  %s\n' "$1" "$2"
}

# Every kcat call: this broker, IPv4, bounded in time, librdkafka chatter kept in a log file.
kc() { timeout "$STEP_TIMEOUT" "$KCAT" -b "$BOOTSTRAP" -X broker.address.family=v4 "$@" 2>>"$WORK/kcat.log"; }

# N deterministic lines of varied length (6 to ~4,200 bytes), many containing spaces.
gen_lines() {
    awk -v n="$1" -v tag="$2" 'BEGIN {
        alphabet = "abcdefghij klmnopqrstuvwxyz0123456789 ";
        for (i = 0; i < n; i++) {
            len = (i * 37) % 211;
            if (i % 1000 == 999) len += 4000;
            s = tag " line " i ":";
            for (j = 0; j < len; j++) s = s substr(alphabet, (i + j) % 38 + 1, 1);
            print s;
        }
    }'
}

# Compares expected and actual files byte for byte; on mismatch names the first difference.
same_bytes() {
    local name="$1" expected="$2" actual="$3"
    if cmp -s "$expected" "$actual"; then
        pass "$name"
    else
        local detail
        detail="$(cmp "$expected" "$actual" 2>&1 | head -1 || true)"
        fail "$name" "output differs: ${detail:-unknown} ($(wc -l <"$expected") lines expected, $(wc -l <"$actual") got)"
    fi
}

# Produces a file to partition 0 of a fresh topic and reads it back until the end of the partition.
round_trip() {
    local name="$1" topic="$2" input="$3"; shift 3
    if ! kc -P -t "$topic" -p 0 "$@" <"$input"; then
        fail "$name" "kcat -P exited non-zero (see librdkafka log below)"
        return
    fi
    if ! kc -C -t "$topic" -p 0 -o beginning -e -q >"$WORK/$name.out"; then
        fail "$name" "kcat -C exited non-zero"
        return
    fi
    same_bytes "$name" "$input" "$WORK/$name.out"
}

# 1. Metadata: the broker lists itself.
if kc -L >"$WORK/list.txt" && grep -q ' 1 brokers:' "$WORK/list.txt" \
    && grep -q "broker [0-9]* at " "$WORK/list.txt"; then
    pass "metadata-list"
else
    fail "metadata-list" "kcat -L did not list exactly one broker: $(head -c 300 "$WORK/list.txt" 2>/dev/null | tr '\n' ' ')"
    echo "kcat.sh: broker at $BOOTSTRAP unreachable or metadata broken; stopping" >&2
    cat "$WORK/kcat.log" >&2 || true
    exit 2
fi

# 2. 10,000 plain lines to a fresh (auto-created) topic and back.
plain="kcat-plain-$RUN_ID"
gen_lines 10000 plain >"$WORK/plain.in"
round_trip "produce-consume-10k" "$plain" "$WORK/plain.in"

# 3. The new topic shows up in metadata with one partition.
if kc -L -t "$plain" >"$WORK/topic.txt" && grep -q "topic \"$plain\" with 1 partitions" "$WORK/topic.txt"; then
    pass "metadata-topic"
else
    fail "metadata-topic" "$(tr '\n' ' ' <"$WORK/topic.txt" | head -c 300)"
fi

# 4. Consume from an explicit offset in the middle.
if kc -C -t "$plain" -p 0 -o 5000 -c 10 -q >"$WORK/mid.out"; then
    sed -n '5001,5010p' "$WORK/plain.in" >"$WORK/mid.expected"
    same_bytes "consume-from-offset" "$WORK/mid.expected" "$WORK/mid.out"
else
    fail "consume-from-offset" "kcat -C -o 5000 exited non-zero"
fi

# 5. ListOffsets: earliest (-2) and latest (-1) of the partition.
if kc -Q -t "$plain:0:-2" >"$WORK/q-early.txt" && kc -Q -t "$plain:0:-1" >"$WORK/q-late.txt" \
    && grep -q 'offset 0$' "$WORK/q-early.txt" && grep -q 'offset 10000$' "$WORK/q-late.txt"; then
    pass "query-offsets"
else
    fail "query-offsets" "earliest: $(cat "$WORK/q-early.txt" 2>/dev/null) latest: $(cat "$WORK/q-late.txt" 2>/dev/null)"
fi

# 6. Keys: key:value lines, read back with the key printed.
keyed="kcat-keyed-$RUN_ID"
gen_lines 2000 value | awk '{ print "key-" NR ":" $0 }' >"$WORK/keyed.in"
if kc -P -t "$keyed" -p 0 -K : <"$WORK/keyed.in" \
    && kc -C -t "$keyed" -p 0 -o beginning -e -q -f '%k:%s\n' >"$WORK/keyed.out"; then
    same_bytes "keyed" "$WORK/keyed.in" "$WORK/keyed.out"
else
    fail "keyed" "kcat exited non-zero"
fi

# 7. Each compression codec the client supports.
for codec in gzip snappy lz4 zstd; do
    gen_lines 3000 "$codec" >"$WORK/$codec.in"
    round_trip "compression-$codec" "kcat-$codec-$RUN_ID" "$WORK/$codec.in" -z "$codec"
done

echo "kcat: $((total - failures))/$total scenarios passed against $BOOTSTRAP"
if [ "$failures" -ne 0 ]; then
    echo "--- librdkafka log (last 40 lines) ---" >&2
    tail -40 "$WORK/kcat.log" >&2 || true
    exit 1
fi
