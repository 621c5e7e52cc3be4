"""Shared by the Python compat scripts: the matrix lines, a time bound per scenario, the messages every
client produces and the exact checks on what comes back, so each client is held to the same outcome.

A scenario is a function; it returns a detail string (PASS) or raises (FAIL with the exception).
"""
import asyncio
import inspect
import os
import signal
import sys
import time
import uuid
from collections import namedtuple

# One consumed record, normalised across clients. headers: list of (str, bytes) in wire order.
Record = namedtuple("Record", "partition offset key value headers")

RUN = os.environ.get("COMPAT_RUN_ID") or uuid.uuid4().hex[:8]
KEYS = 11


def bootstrap():
    return sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"


def message(i):
    """Message i of a produce-consume run: a key shared by every 11th message, headers naming it."""
    key = b"key-%d" % (i % KEYS)
    value = b"value-%d-" % i + b"x" * (i % 97) + (b"y" * 5000 if i % 500 == 499 else b"")
    headers = [("index", b"%d" % i), ("run", RUN.encode())]
    return key, value, headers


def wait_for(what, condition, seconds=30):
    """Polls `condition` until it holds, failing the scenario with `what` after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds} s")


def split_between(owned, partitions):
    """True when two members' assignments (sets) cover all `partitions`, none owned twice."""
    return all(owned) and len(owned[0] | owned[1]) == partitions and not (owned[0] & owned[1])


def index_of(value):
    return int(value.split(b"-", 2)[1])


def check_produced_consumed(records, n, end_offsets):
    """Every message 0..n-1 exactly once with its key and headers; per partition, offsets dense from 0
    up to the high watermark and messages in the order they were sent; a key never spans partitions."""
    by_partition = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r)
    seen = sorted(index_of(r.value) for r in records)
    assert seen == list(range(n)), f"consumed {len(records)} records, {len(set(seen))} distinct of {n}"
    key_partitions = {}
    for p, recs in by_partition.items():
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {p}: offsets not dense from 0"
        assert end_offsets.get(p) == len(recs), f"partition {p}: high watermark {end_offsets.get(p)}, read {len(recs)}"
        order = [index_of(r.value) for r in recs]
        assert order == sorted(order), f"partition {p}: out of send order near {order[:5]}"
        for r in recs:
            key, value, headers = message(index_of(r.value))
            assert (r.key, r.value) == (key, value), f"partition {p} offset {r.offset}: key or value differs"
            assert list(r.headers) == headers, f"partition {p} offset {r.offset}: headers {r.headers}"
            key_partitions.setdefault(r.key, set()).add(p)
    spread = [k for k, ps in key_partitions.items() if len(ps) > 1]
    assert not spread, f"keys in more than one partition: {spread}"
    empty = {p: off for p, off in end_offsets.items() if p not in by_partition and off != 0}
    assert not empty, f"partitions with data never consumed: {empty}"
    counts = {p: len(by_partition.get(p, [])) for p in sorted(end_offsets)}
    return f"{n} messages, keys+headers exact, per-partition counts {counts}"


def check_led(partitions_by_topic):
    """{topic: [(partition, leader)]} of every topic: __consumer_offsets among them, each partition led."""
    assert "__consumer_offsets" in partitions_by_topic, f"__consumer_offsets missing: {sorted(partitions_by_topic)}"
    leaderless = [f"{t}-{p}" for t, ps in partitions_by_topic.items() for p, leader in ps if leader is None or leader < 0]
    assert not leaderless, f"{len(leaderless)} partitions without a leader, e.g. {leaderless[:3]}"
    empty = [t for t, ps in partitions_by_topic.items() if not ps]
    assert not empty, f"topics with no partitions: {empty}"
    total = sum(len(ps) for ps in partitions_by_topic.values())
    return f"{len(partitions_by_topic)} topics, {total} partitions, every one led"


# The idempotent scenario: message i goes to partition i % IDEMPOTENT_PARTITIONS, in small batches with
# several requests in flight, so it must land at offset i // IDEMPOTENT_PARTITIONS.
IDEMPOTENT_N = 2000
IDEMPOTENT_PARTITIONS = 2


def idempotent_message(i):
    return b"idem-%d-" % i + b"z" * (i % 53)


def check_idempotent(records, ends):
    """Every message exactly once, at offset i // partitions of partition i % partitions: no duplicate
    and no reordering across the in-flight batches, offsets dense up to the high watermark."""
    n, parts = IDEMPOTENT_N, IDEMPOTENT_PARTITIONS
    got = sorted((r.partition, r.offset, r.value) for r in records)
    want = sorted((i % parts, i // parts, idempotent_message(i)) for i in range(n))
    if got != want:
        wrong = [w for w in want if w not in set(got)][:3]
        raise AssertionError(f"read {len(records)} records of {n}; e.g. missing or moved: {wrong}")
    want_ends = {p: len(range(p, n, parts)) for p in range(parts)}
    assert ends == want_ends, f"high watermarks {ends}, expected {want_ends}"
    return f"{n} messages once each, each at its send position in partitions {sorted(ends)}"


# The transactional scenario: TXN_INPUT messages in one input partition are consumed TXN_BATCH at a time;
# input i becomes output `out-<i>` in partition i % TXN_OUTPUT_PARTITIONS. The first transaction (inputs
# 0..9) commits, the second (10..19) aborts, each sending the consumed offsets to the group.
TXN_BATCH = 10
TXN_INPUT = 2 * TXN_BATCH
TXN_OUTPUT_PARTITIONS = 2


def txn_input(i):
    return b"k%d" % i, b"in-%d" % i


def txn_transform(value):
    """The output record (partition, value) of an input value `in-<i>`."""
    i = int(value.split(b"-")[1])
    return i % TXN_OUTPUT_PARTITIONS, b"out-%d" % i


def check_open_lso(read_committed, read_uncommitted):
    """ListOffsets latest of the output partitions while the first transaction is open and its records are
    in the log: read_committed answers the last stable offset, below them (0); read_uncommitted the high
    watermark past them."""
    per = TXN_BATCH // TXN_OUTPUT_PARTITIONS
    want = ({p: 0 for p in range(TXN_OUTPUT_PARTITIONS)}, {p: per for p in range(TXN_OUTPUT_PARTITIONS)})
    got = (read_committed, read_uncommitted)
    assert got == want, f"latest offsets (read_committed, read_uncommitted) {got} during the open transaction, expected {want}"
    return f"last stable offset {read_committed} while open"


def check_transactional(committed, uncommitted, ends, group_offset):
    """`committed`: (partition, offset, value) a read_committed consumer read; `uncommitted`: the same read
    with read_uncommitted; `ends`: high watermarks per output partition; `group_offset`: the group's
    committed offset of the input partition afterwards.

    Per output partition the log holds the committed transaction's records, its COMMIT marker, the aborted
    one's records and its ABORT marker: read_committed sees exactly the first run, read_uncommitted both,
    the markers never; the group's offset is where the committed transaction left it."""
    parts, per = TXN_OUTPUT_PARTITIONS, TXN_BATCH // TXN_OUTPUT_PARTITIONS
    want_committed, want_all = [], []
    for p in range(parts):
        first = [b"out-%d" % i for i in range(TXN_BATCH) if i % parts == p]
        second = [b"out-%d" % i for i in range(TXN_BATCH, TXN_INPUT) if i % parts == p]
        want_committed += [(p, o, v) for o, v in enumerate(first)]
        want_all += [(p, o, v) for o, v in enumerate(first)] + [(p, per + 1 + o, v) for o, v in enumerate(second)]
    assert sorted(committed) == want_committed, f"read_committed saw {sorted(committed)}, expected {want_committed}"
    assert sorted(uncommitted) == want_all, f"read_uncommitted saw {sorted(uncommitted)}, expected {want_all}"
    want_ends = {p: 2 * per + 2 for p in range(parts)}
    assert ends == want_ends, f"high watermarks {ends}, expected {want_ends} (records and two markers)"
    assert group_offset == TXN_BATCH, f"the group committed input offset {group_offset}, expected {TXN_BATCH}"
    return (f"read_committed: the committed transaction's {len(committed)} records only "
            f"(read_uncommitted {len(uncommitted)}, markers at {[per, 2 * per + 1]}); group offset {group_offset}")


class StepTimeout(Exception):
    pass


class Matrix:
    """Collects one result per scenario and prints them as `<client> <scenario> PASS|FAIL <detail>`."""

    def __init__(self, client):
        self.client = client
        self.results = []

    def scenario(self, name, timeout=120):
        def run(fn):
            try:
                if inspect.iscoroutinefunction(fn):
                    detail = asyncio.run(asyncio.wait_for(fn(), timeout))
                else:
                    def expire(*_):
                        raise StepTimeout(f"no outcome within {timeout} s")
                    signal.signal(signal.SIGALRM, expire)
                    signal.alarm(timeout)
                    try:
                        detail = fn()
                    finally:
                        signal.alarm(0)
                self.results.append((name, "PASS", detail or ""))
            except BaseException as e:  # report every failure (timeouts included), keep going
                if isinstance(e, KeyboardInterrupt):
                    raise
                self.results.append((name, "FAIL", f"{type(e).__name__}: {e}"))
            self.emit(self.results[-1])
            return fn
        return run

    def emit(self, result):
        name, status, detail = result
        print(f"{self.client:<16} {name:<28} {status}  {detail}", flush=True)

    def finish(self):
        """Prints the summary and leaves with 0 (all passed) or 1; os._exit, so a client's leftover
        threads (a timed-out step) cannot hold the process open."""
        passed = sum(1 for _, status, _ in self.results if status == "PASS")
        print(f"{self.client}: {passed}/{len(self.results)} scenarios passed against {bootstrap()}", flush=True)
        sys.stderr.flush()
        os._exit(0 if passed == len(self.results) else 1)


def missing(client, hint):
    """The client is not importable: exit 2, as the matrix convention says."""
    print(f"{client}: not installed ({hint})", file=sys.stderr)
    sys.exit(2)
