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

pass() { total=$((total + 1)); printf 'kcat %-26s PASS\n' "$1"; }
fail() {
    total=$((total + 1)); failures=$((failures + 1))
    printf 'kcat %-26s FAIL  %s\n' "$1" "$2"
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

# 8. Keys and headers together: every message carries the same two headers (-H), read back with %h.
headed="kcat-headers-$RUN_ID"
gen_lines 1000 headed | awk '{ print "key-" (NR % 7) ":" $0 }' >"$WORK/headers.in"
awk -F: -v run="$RUN_ID" '{ k = $1; sub(/^[^:]*:/, ""); print k "|run=" run ",origin=kcat|" $0 }' \
    "$WORK/headers.in" >"$WORK/headers.expected"
if kc -P -t "$headed" -p 0 -K : -H "run=$RUN_ID" -H origin=kcat <"$WORK/headers.in" \
    && kc -C -t "$headed" -p 0 -o beginning -e -q -f '%k|%h|%s\n' >"$WORK/headers.out"; then
    same_bytes "keyed-headers" "$WORK/headers.expected" "$WORK/headers.out"
else
    fail "keyed-headers" "kcat exited non-zero"
fi

# 9. A balanced consumer group (-G): two members share two one-partition topics (kcat cannot
# create topics with more partitions; roundrobin gives each member one), each line is read once,
# offsets are committed on close, and a later member of the group reads exactly what came after.
group="kcat-group-$RUN_ID"
ga="kcat-group-a-$RUN_ID"
gb="kcat-group-b-$RUN_ID"
gen_lines 300 "$ga" >"$WORK/ga.in"
gen_lines 300 "$gb" >"$WORK/gb.in"
member() { # <output file>: a group member that leaves (committing) once its partitions are drained
    kc -G "$group" -X partition.assignment.strategy=roundrobin -X auto.offset.reset=earliest \
        -e -q -f '%t %p %o %s\n' "$ga" "$gb" >"$1"
}
if kc -P -t "$ga" -p 0 <"$WORK/ga.in" && kc -P -t "$gb" -p 0 <"$WORK/gb.in"; then
    member "$WORK/m1.out" & m1=$!
    member "$WORK/m2.out" & m2=$!
    if wait "$m1" && wait "$m2"; then
        split="$(for m in m1 m2; do cut -d' ' -f1 "$WORK/$m.out" | sort -u | tr '\n' ' '; echo; done)"
        cat "$WORK/m1.out" "$WORK/m2.out" | cut -d' ' -f4- | sort >"$WORK/group.got"
        sort "$WORK/ga.in" "$WORK/gb.in" >"$WORK/group.want"
        if [ "$(printf '%s\n' "$split" | grep -c '^kcat-group-[ab]-[^ ]* $')" -ne 2 ] \
            || [ "$(printf '%s' "$split" | sort -u | wc -l)" -ne 2 ]; then
            fail "group-balanced" "the members did not get one topic each: $(printf '%s' "$split" | tr '\n' '/')"
        elif ! cmp -s "$WORK/group.want" "$WORK/group.got"; then
            fail "group-balanced" "members read $(wc -l <"$WORK/group.got") lines, expected each of $(wc -l <"$WORK/group.want") once"
        else
            gen_lines 10 "$ga-after" >"$WORK/ga.after"
            gen_lines 10 "$gb-after" >"$WORK/gb.after"
            kc -P -t "$ga" -p 0 <"$WORK/ga.after" && kc -P -t "$gb" -p 0 <"$WORK/gb.after" || true
            if member "$WORK/m3.out"; then
                cut -d' ' -f4- "$WORK/m3.out" | sort >"$WORK/resumed.got"
                sort "$WORK/ga.after" "$WORK/gb.after" >"$WORK/resumed.want"
                if cmp -s "$WORK/resumed.want" "$WORK/resumed.got"; then
                    pass "group-balanced"
                else
                    fail "group-balanced" "a later member read $(wc -l <"$WORK/resumed.got") lines, not the 20 after the commit"
                fi
            else
                fail "group-balanced" "the later member exited non-zero"
            fi
        fi
    else
        fail "group-balanced" "a member exited non-zero"
    fi
else
    fail "group-balanced" "kcat -P exited non-zero"
fi

# 10. After the group committed: all topics' metadata (-L), __consumer_offsets included, with a
# leader and no error for every partition.
if kc -L >"$WORK/all.txt"; then
    bad="$(grep -E '^ +partition ' "$WORK/all.txt" | grep -Ev '^ +partition [0-9]+, leader [0-9]+, replicas: [0-9,]+, isrs: [0-9,]+$' || true)"
    partitions="$(grep -cE '^ +partition ' "$WORK/all.txt" || true)"
    if ! grep -q 'topic "__consumer_offsets" with' "$WORK/all.txt"; then
        fail "metadata-all-after-commit" "__consumer_offsets not listed"
    elif [ -n "$bad" ]; then
        fail "metadata-all-after-commit" "$(printf '%s\n' "$bad" | wc -l) of $partitions partitions without a leader or with an error, e.g. $(printf '%s\n' "$bad" | head -1 | sed 's/^ *//')"
    else
        pass "metadata-all-after-commit"
    fi
else
    fail "metadata-all-after-commit" "kcat -L exited non-zero"
fi

# 11. An idempotent producer: 10,000 lines in small batches (several in flight), read back byte for byte;
# tests/compat.rs checks on disk that every batch carries the producer id with dense sequence numbers.
gen_lines 10000 idempotent >"$WORK/idempotent.in"
round_trip "idempotent" "kcat-idempotent-$RUN_ID" "$WORK/idempotent.in" \
    -X enable.idempotence=true -X batch.size=4096 -X linger.ms=5

echo "kcat: $((total - failures))/$total scenarios passed against $BOOTSTRAP"
if [ "$failures" -ne 0 ]; then
    echo "--- librdkafka log (last 40 lines) ---" >&2
    tail -40 "$WORK/kcat.log" >&2 || true
    exit 1
fi
