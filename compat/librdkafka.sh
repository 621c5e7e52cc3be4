#!/usr/bin/env bash
# Runs librdkafka's own regression suite (tests/test-runner from the rdkafka-sys crate's bundled
# librdkafka 2.12.1) against a brook it starts itself, and prints one line per test:
#   <test> PASS|FAIL|SKIP <seconds>s
# (tests run sub-test by sub-test print <test>:<sub-test> lines, N/A with the reason for those that
# cannot apply to brook yet), then exactly "librdkafka: N passed, N failed" (", N skipped" when some
# were skipped, ", N sub-tests not applicable" when some were left out).
# Exit status: 0 every selected test passed (or skipped itself), 1 some failed, 2 setup failed.
#
# Build (cached under $RDK_BUILD_DIR, re-runs skip finished steps): compat/librdkafka-build.sh
# copies librdkafka/ out of the cargo registry (never builds inside it), ./configure, make libs;
# then the test-runner with rapidjson (apt-get install rapidjson-dev). 2-5 minutes on 2 cores the
# first time.
#
# Each test number runs in its own test-runner invocation ("-L -K": no mock-cluster or known-flaky
# tests; never -Q, which makes every SUB_TEST pass without running it), with
# TEST_KAFKA_VERSION=4.0.0: brook, like Kafka 4, keeps only message format v2, and this makes the
# suite skip the sub-tests of older formats while still running every 3.x/4.0 one. 4.1.0 would
# change nothing: librdkafka 2.12.1's tests gate no behaviour on a version above 4.0.
#
# Environment:
#   RDK_TESTS        test numbers to run, space separated (default: the list below); librdkafka's own
#                    SUBTESTS=<substring> passes through and picks sub-tests (e.g. SUBTESTS=do_test_DeleteTopics)
#   RDK_JOBS         tests run at once against the shared broker (default 2)
#   RDK_TEST_TIMEOUT seconds one test number may take before it is killed and failed (default 1200)
#   RDK_BUILD_DIR    build directory (default target/librdkafka-suite)
#   RDK_BROOK        brook binary (default target/debug/brook, built with cargo if missing; not
#                    BROOK_*, which brook itself reads as configuration)
#   RDK_KEEP_LOGS    directory to keep every test's output and the brokers' logs in
#   RDK_CLUSTER      3: every scenario's broker is a cluster of three combined brooks (issue 15) with
#                    default.replication.factor=3, and test.conf bootstraps through all three; RDK_TESTS then
#                    defaults to CLUSTER_TESTS below and the idempotent variants run only when
#                    RDK_IDEMPOTENT_TESTS names them (each scenario costs three processes)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Broker tests of the core, offsets, groups, admin and compression sets (issue 12), then those of the
# idempotent and transactional producer (issue 14). Tests that cannot apply to brook yet are in the README's
# "not applicable yet" list, not here.
DEFAULT_TESTS="0001 0002 0003 0005 0007 0008 0011 0012 0013 0014 0015 0016 0017 0018 0019 0020
0021 0022 0026 0029 0030 0031 0033 0034 0035 0036 0038 0039 0040 0041 0042 0044 0045 0048 0050
0051 0052 0053 0054 0056 0057 0059 0060 0063 0064 0065 0067 0069 0070 0073 0077 0081 0082 0083 0084
0085 0089 0091 0093 0099 0102 0110 0112 0113 0114 0118 0122 0123 0125 0127 0130 0132 0140
0061 0086 0090 0094 0103 0129 0137"
# Tests run a second time with every producer idempotent (the runner's -P, as librdkafka's `make
# idempotent_seq`): the core, offsets, groups and admin sets that produce. Consumer-only tests (0089, 0113) and
# those that are idempotent or transactional already are left out.
IDEMPOTENT_TESTS="${RDK_IDEMPOTENT_TESTS-0001 0002 0003 0005 0007 0008 0011 0012 0013 0014 0015 0016 0017 0018
0019 0020 0021 0022 0026 0029 0030 0031 0033 0034 0035 0036 0038 0039 0040 0041 0042 0044 0045 0048 0050 0051
0052 0053 0054 0056 0057 0059 0060 0063 0064 0065 0067 0069 0070 0073 0077 0081 0082 0083 0084 0085 0091
0093 0099 0102 0110 0112 0114 0118 0122 0123 0125 0127 0130 0132 0140}"
# Tests whose variants need a broker with auto.create.topics.enable=false (TEST_SCENARIO=noautocreate);
# their other variants run against the default broker.
NOAUTOCREATE_TESTS="0045 0107 0111"

# Tests run one sub-test function at a time (SUBTESTS=<function>:), so that every applicable sub-test
# runs even when another one fails (0081 stops at its first failing sub-test), and the sub-tests listed
# here as not applicable are left out with their reason. The functions come from the test's source, so a
# sub-test that a newer librdkafka adds is run, not silently skipped.
SPLIT_TESTS="0081"
declare -A NOT_APPLICABLE=(
    [0081:do_test_CreateAcls]="ACLs need an authorizer (security issue); Kafka without one answers SECURITY_DISABLED"
    [0081:do_test_DescribeAcls]="ACLs need an authorizer (security issue); Kafka without one answers SECURITY_DISABLED"
    [0081:do_test_DeleteAcls]="ACLs need an authorizer (security issue); Kafka without one answers SECURITY_DISABLED"
    [0081:do_test_UserScramCredentials]="SCRAM credentials need SASL/SCRAM (security issue)"
)

# The sub-test functions of test $1 (every do_test_* that starts a SUB_TEST), one a line.
subtest_functions() {
    local src
    src="$(ls "$TESTS_DIR/$1"-*.c 2>/dev/null | head -n1)"
    [ -n "$src" ] || return 0
    awk '/^(static (void|int) )?do_test_[A-Za-z_0-9]+\(/ { match($0, /do_test_[A-Za-z_0-9]+/); fn = substr($0, RSTART, RLENGTH) }
         /SUB_TEST/ { if (fn != "") print fn }' "$src" | sort -u
}

# The slowest tests (seconds measured on 2 cores: 0113 ~650, 0089 ~100, 0081/0033/0091/0026 ~70) start
# first, so the others fill the second runner around them and the whole run stays near sum/2.
LONG_FIRST="0113 0077 0089 0103 0081 0033 0091 0026 0030 0094 0137 0045 0102 0122"

# RDK_CLUSTER=3: the tests that need or exercise several brokers (0107 and 0111 topic admin and
# metadata, 0081 admin with RF = broker count, 0008 acks -1/0/1 on RF 3, 0101 fetch from a follower in
# the consumer's rack: each node is broker.rack=RACK<id>) plus the core produce/consume, offsets and
# groups set.
CLUSTER_TESTS="0001 0002 0003 0004 0005 0007 0008 0011 0012 0013 0014 0015 0017 0018 0019 0020 0021 0022
0026 0029 0030 0031 0033 0034 0035 0036 0038 0039 0040 0041 0042 0044 0048 0050 0051 0053 0054 0056 0057
0059 0060 0063 0064 0065 0067 0069 0070 0073 0081 0082 0083 0084 0085 0091 0093 0099 0101 0102 0107 0111 0112
0113 0114 0118 0122 0123 0125 0127 0130 0132 0140"
CLUSTER="${RDK_CLUSTER:-1}"
case "$CLUSTER" in 1|3) ;; *) echo "librdkafka.sh: RDK_CLUSTER must be 1 or 3" >&2; exit 2 ;; esac
if [ "$CLUSTER" = 3 ]; then
    DEFAULT_TESTS="$CLUSTER_TESTS"
    IDEMPOTENT_TESTS="${RDK_IDEMPOTENT_TESTS-}"
fi
TESTS_TO_RUN="${RDK_TESTS:-$DEFAULT_TESTS}"
JOBS="${RDK_JOBS:-2}"
TEST_TIMEOUT="${RDK_TEST_TIMEOUT:-1200}"
BUILD_DIR="${RDK_BUILD_DIR:-$ROOT/target/librdkafka-suite}"
BROOK="${RDK_BROOK:-$ROOT/target/debug/brook}"
KAFKA_VERSION=4.0.0

say() { echo "librdkafka.sh: $*" >&2; }

# ---- build (cached) ----
# shellcheck source=compat/librdkafka-build.sh
. "$ROOT/compat/librdkafka-build.sh"
# 0103 creates every topic with replication factor 3, which one broker refuses as Kafka does
# (INVALID_REPLICATION_FACTOR): until brook runs as a cluster (issue 15) its copy of the test asks for the
# broker's default (-1, KIP-464) instead. Nothing else of the test changes. Idempotent; returns 0 when the file
# was changed (the test-runner must be rebuilt).
patch_single_broker_tests() {
    local file="$1/tests/0103-transactions.c"
    grep -q 'test_create_topic_wait_exists(.*, 3, 5000)' "$file" || return 1
    sed -i 's/\(test_create_topic_wait_exists(.*\), 3, 5000)/\1, -1, 5000)/' "$file"
}

build_suite() {
    local tree="$BUILD_DIR/librdkafka" jobs
    jobs="$(nproc 2>/dev/null || echo 2)"
    rdk_build_libs "$BUILD_DIR" || return 1
    if patch_single_broker_tests "$tree"; then
        say "0103 asks for the broker's default replication factor"
        rm -f "$tree/tests/test-runner"
    fi
    if [ ! -x "$tree/tests/test-runner" ]; then
        if [ ! -f /usr/include/rapidjson/document.h ]; then
            say "rapidjson-dev is missing (apt-get install rapidjson-dev)"
            return 1
        fi
        say "make -C tests build"
        CPPFLAGS=-DWITH_RAPIDJSON=1 make -C "$tree/tests" -j"$jobs" build >"$BUILD_DIR/tests.log" 2>&1 || { tail -20 "$BUILD_DIR/tests.log" >&2; return 1; }
    fi
}

build_suite || exit 2
TESTS_DIR="$BUILD_DIR/librdkafka/tests"

if [ ! -x "$BROOK" ]; then
    say "building brook"
    (cd "$ROOT" && cargo build --locked --bin brook) || exit 2
fi
# The kafka-topics.sh stand-in imports kafka-python 3 from where compat/install.sh puts it (an absolute
# path: the test-runner runs it from its own directory), else from wherever python3 finds one.
KAFKA_PYTHON_DIR="$ROOT/compat/.deps/kafka-python-3"
if [ -d "$KAFKA_PYTHON_DIR/kafka" ]; then
    export PYTHONPATH="$KAFKA_PYTHON_DIR${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! python3 -c 'import kafka' 2>/dev/null; then
    say "kafka-python is missing (the kafka-topics.sh stand-in needs it): compat/install.sh"
    exit 2
fi

# ---- brokers ----
WORK="$(mktemp -d)"
BROKER_PIDS=()
cleanup() {
    local pid
    for pid in "${BROKER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BROKER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${RDK_KEEP_LOGS:-}" ]; then
        mkdir -p "$RDK_KEEP_LOGS"
        cp -a "$WORK"/*.log "$RDK_KEEP_LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn_broker NAME [--override k=v]...: starts brook on an ephemeral port with its own data dir. Not called
# in a subshell, so that BROKER_PIDS reaches the cleanup trap.
spawn_broker() {
    local name="$1"
    shift
    mkdir -p "$WORK/data-$name"
    # num.partitions=4: the suite's trivup scenarios create topics with 4 partitions by default,
    # and some tests rely on auto-created topics having several.
    RUST_LOG="${RUST_LOG:-info,openraft=warn}" "$BROOK" \
        --override "listeners=PLAINTEXT://127.0.0.1:0" \
        --override "log.dirs=$WORK/data-$name" \
        --override "num.partitions=4" \
        "$@" >"$WORK/brook-$name.log" 2>&1 &
    BROKER_PIDS+=("$!")
}

# await_broker NAME PID: sets BROKER_ADDR to the address broker NAME (process PID) listens on, once it does.
await_broker() {
    local name="$1" pid="$2" log="$WORK/brook-$1.log" addr deadline
    BROKER_ADDR=""
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
        addr="$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$log" | head -n1)"
        if [ -n "$addr" ]; then
            BROKER_ADDR="$addr"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    say "brook ($name) did not start:"
    tail -20 "$log" >&2
    return 1
}

# start_broker NAME [--override k=v]...: one brook; sets BROKER_ADDR once it listens.
start_broker() {
    spawn_broker "$@"
    await_broker "$1" "${BROKER_PIDS[-1]}"
}

# N distinct free TCP ports on 127.0.0.1, one per line (bound together, then released: the controller ports
# must be known before any node starts, and one bind after another may be handed the port just released).
free_ports() {
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# start_cluster NAME [--override k=v]...: three combined brooks (process.roles=broker,controller) forming one
# metadata quorum, each with its own data dir, an ephemeral client port and a controller port picked up front;
# sets BROKER_ADDR to the three client addresses (comma separated) once all three are registered and unfenced.
start_cluster() {
    local name="$1" voters="" i addrs="" deadline
    shift
    local ports=() picked
    mapfile -t picked < <(free_ports 3)
    for i in 1 2 3; do
        ports[$i]="${picked[$((i - 1))]}"
        voters="${voters:+$voters,}$i@127.0.0.1:${ports[$i]}"
    done
    local pids=()
    # All three at once: a node listens for clients only once the quorum agreed on the cluster id.
    for i in 1 2 3; do
        spawn_broker "$name-$i" \
            --override "process.roles=broker,controller" \
            --override "node.id=$i" \
            --override "controller.quorum.voters=$voters" \
            --override "controller.listener.names=CONTROLLER" \
            --override "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:${ports[$i]}" \
            --override "default.replication.factor=3" \
            --override "offsets.topic.replication.factor=3" \
            --override "transaction.state.log.replication.factor=3" \
            --override "transaction.state.log.min.isr=2" \
            --override "broker.rack=RACK$i" \
            --override "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector" \
            "$@"
        pids[$i]="${BROKER_PIDS[-1]}"
    done
    for i in 1 2 3; do
        await_broker "$name-$i" "${pids[$i]}" || return 1
        addrs="${addrs:+$addrs,}$BROKER_ADDR"
    done
    BROKER_ADDR="$addrs"
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if python3 - "$addrs" <<'PY' 2>/dev/null
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1].split(","), request_timeout_ms=5000)
sys.exit(0 if len(admin.describe_cluster()["brokers"]) == 3 else 1)
PY
        then
            return 0
        fi
        sleep 0.5
    done
    say "the $name cluster did not list three brokers within 60s"
    return 1
}

# start_scenario NAME [--override k=v]...: one brook, or a cluster of three under RDK_CLUSTER=3.
start_scenario() {
    if [ "$CLUSTER" = 3 ]; then start_cluster "$@"; else start_broker "$@"; fi
}

write_conf() { # write_conf FILE BOOTSTRAP
    cat >"$1" <<EOF
bootstrap.servers=$2
broker.address.family=v4
EOF
}

start_scenario default || exit 2
DEFAULT_ADDR="$BROKER_ADDR"
write_conf "$WORK/test-default.conf" "$DEFAULT_ADDR"
NOAUTO_ADDR=""
for t in $TESTS_TO_RUN; do
    case " $NOAUTOCREATE_TESTS " in *" $t "*)
        if [ -z "$NOAUTO_ADDR" ]; then
            start_scenario noautocreate --override auto.create.topics.enable=false || exit 2
            NOAUTO_ADDR="$BROKER_ADDR"
            write_conf "$WORK/test-noautocreate.conf" "$NOAUTO_ADDR"
        fi
    esac
done
# The idempotent variants get a brook of their own: tests such as 0132 use fixed group ids, and a test's
# two variants may run at the same time.
IDEMPOTENT_ADDR=""
for t in $TESTS_TO_RUN; do
    case " $(echo $IDEMPOTENT_TESTS) " in *" $t "*)
        start_scenario idempotent || exit 2
        IDEMPOTENT_ADDR="$BROKER_ADDR"
        write_conf "$WORK/test-idempotent.conf" "$IDEMPOTENT_ADDR"
        break
    esac
done
KIND=""
[ "$CLUSTER" = 3 ] && KIND=" (three-node clusters)"
say "brook$KIND $DEFAULT_ADDR${NOAUTO_ADDR:+ (noautocreate: $NOAUTO_ADDR)}${IDEMPOTENT_ADDR:+ (idempotent: $IDEMPOTENT_ADDR)}, $JOBS at once, TEST_KAFKA_VERSION=$KAFKA_VERSION"

# ---- tests ----
# run_one TEST SCENARIO: one test-runner invocation; writes $WORK/<test>-<scenario>.{log,rc,secs}.
run_one() {
    local t="$1" scenario="$2" sub="${3:-}" addr out start rc
    out="$WORK/$t-$scenario${sub:+-$sub}"
    case "$scenario" in
        noautocreate) addr="$NOAUTO_ADDR" ;;
        idempotent) addr="$IDEMPOTENT_ADDR" ;;
        *) addr="$DEFAULT_ADDR" ;;
    esac
    local flags=""
    [ "$scenario" = idempotent ] && flags="-P"
    start=$SECONDS
    rc=0
    (
        cd "$TESTS_DIR"
        if [ -n "$sub" ]; then export SUBTESTS="$sub:"; fi
        RDKAFKA_TEST_CONF="$WORK/test-$scenario.conf" \
            TESTS="$t" TEST_SCENARIO="${scenario/idempotent/default}" TEST_KAFKA_VERSION="$KAFKA_VERSION" \
            KAFKA_PATH="$ROOT/compat/kafka-bin" BROKERS="$addr" \
            LD_LIBRARY_PATH="../src:../src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
            timeout -k 10 "$TEST_TIMEOUT" ./test-runner -L -K $flags
    ) >"$out.log" 2>&1 || rc=$?
    echo "$rc" >"$out.rc"
    echo $((SECONDS - start)) >"$out.secs"
}

# The states test-runner gives the variants of one test number in its closing table.
states_of() { sed 's/\x1b\[[0-9;]*m//g' "$1" | sed -n 's/^| *\([0-9][0-9][0-9][0-9]_[^ ]*\) *| *\([A-Z]*\) *|.*/\2/p'; }

passed=0
failed=0
skipped=0
not_applicable=0
report() { # report TEST SCENARIO [SUBTEST]
    local t="$1" scenario="$2" sub="${3:-}" out rc secs states result label
    out="$WORK/$t-$scenario${sub:+-$sub}"
    rc="$(cat "$out.rc")"
    secs="$(cat "$out.secs")"
    states="$(states_of "$out.log" | sort -u | tr '\n' ' ')"
    label="$t"
    [ "$scenario" = default ] || label="$t/$scenario"
    [ -z "$sub" ] || label="$t:${sub#do_test_}"
    if [ "$rc" -ne 0 ] || [[ "$states" == *FAILED* ]]; then
        result=FAIL
    elif [ -n "$sub" ] && ! grep -aq "\[ $sub:[0-9]*.*: PASS" "$out.log"; then
        if grep -aq "\[ $sub:[0-9]*.*: SKIP" "$out.log"; then
            result=SKIP # it skipped itself (e.g. "Test requires authorization to be setup")
        else
            result=FAIL # it ran no sub-test (renamed or gated off): nothing was checked
        fi
    elif [[ "$states" == *PASSED* ]]; then
        result=PASS
    else
        result=SKIP # every variant skipped itself (e.g. not applicable to this broker version)
    fi
    printf '%-48s %s %4ds\n' "$label" "$result" "$secs"
    case "$result" in
        PASS) passed=$((passed + 1)) ;;
        SKIP) skipped=$((skipped + 1)) ;;
        FAIL)
            failed=$((failed + 1))
            [ "$rc" -eq 124 ] && echo "  (killed after ${TEST_TIMEOUT}s)"
            echo "  ---- tail of $label's output ----"
            sed 's/\x1b\[[0-9;]*m//g' "$out.log" | tail -n 40 | sed 's/^/  /'
            ;;
    esac
}

# A simple job pool: at most $JOBS runs at once, each reported as soon as it finishes.
declare -A running=()
wait_one() {
    local pid
    while :; do
        for pid in "${!running[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                wait "$pid" 2>/dev/null || true
                report ${running[$pid]}
                unset "running[$pid]"
                return
            fi
        done
        sleep 0.5
    done
}

ordered=""
for t in $LONG_FIRST; do
    case " $(echo $TESTS_TO_RUN) " in *" $t "*) ordered="$ordered $t" ;; esac
done
for t in $TESTS_TO_RUN; do
    case " $LONG_FIRST " in *" $t "*) ;; *) ordered="$ordered $t" ;; esac
done

suite_start=$SECONDS
for t in $ordered; do
    scenarios=default
    case " $NOAUTOCREATE_TESTS " in *" $t "*) scenarios="default noautocreate" ;; esac
    case " $(echo $IDEMPOTENT_TESTS) " in *" $t "*) scenarios="$scenarios idempotent" ;; esac
    subs=""
    case " $SPLIT_TESTS " in *" $t "*)
        # A SUBTESTS given by the caller picks the sub-tests itself.
        if [ -z "${SUBTESTS:-}" ]; then subs="$(subtest_functions "$t")"; fi
    esac
    for scenario in $scenarios; do
        for sub in ${subs:-""}; do
            if [ -n "$sub" ] && [ -n "${NOT_APPLICABLE[$t:$sub]:-}" ]; then
                printf '%-48s N/A   (%s)\n' "$t:${sub#do_test_}" "${NOT_APPLICABLE[$t:$sub]}"
                not_applicable=$((not_applicable + 1))
                continue
            fi
            while [ "${#running[@]}" -ge "$JOBS" ]; do wait_one; done
            run_one "$t" "$scenario" "$sub" 2>/dev/null & # (bash would report a runner killed by a signal here)
            running[$!]="$t $scenario $sub"
        done
    done
done
while [ "${#running[@]}" -gt 0 ]; do wait_one; done

summary="librdkafka: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
[ "$not_applicable" -gt 0 ] && summary="$summary, $not_applicable sub-tests not applicable"
say "suite took $((SECONDS - suite_start))s"
echo "$summary"
[ "$failed" -eq 0 ]
