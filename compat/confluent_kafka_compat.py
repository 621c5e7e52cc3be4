#!/usr/bin/env python3
"""Runs confluent-kafka (Python over the librdkafka it bundles) against a running brook.

Usage: compat/confluent_kafka_compat.py [bootstrap]   (default 127.0.0.1:9092)
compat/install.sh puts the pinned confluent-kafka in compat/.deps/confluent-kafka; select it with
PYTHONPATH. Prints one matrix line per scenario; exit 0 all passed, 1 some failed, 2 confluent-kafka
missing or the broker unreachable. (Named so that it never shadows the confluent_kafka package.)
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from matrix import (IDEMPOTENT_N, IDEMPOTENT_PARTITIONS, RUN, TXN_BATCH, TXN_INPUT, TXN_OUTPUT_PARTITIONS,  # noqa: E402
                    Matrix, Record, bootstrap, check_idempotent, check_led, check_open_lso,
                    check_produced_consumed, check_transactional, idempotent_message, message, missing, split_between, txn_input,
                    txn_transform, wait_for)

try:
    import confluent_kafka
    from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, IsolationLevel,
                                 KafkaError, KafkaException, Producer, TopicCollection, TopicPartition)
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                       NewTopic, OffsetSpec, ResourceType)
except ImportError as e:
    missing("confluent-kafka", f"{e}; run compat/install.sh and set PYTHONPATH=compat/.deps/confluent-kafka")

CLIENT = "confluent-kafka"
BOOTSTRAP = bootstrap()
N = 3000
matrix = Matrix(CLIENT)
topic = f"confluent-kafka-{RUN}"
group = f"confluent-kafka-group-{RUN}"
COMMON = {"bootstrap.servers": BOOTSTRAP, "broker.address.family": "v4"}
print(f"{CLIENT}: confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}) "
      f"against {BOOTSTRAP}", flush=True)
try:  # quietly: librdkafka logs every failed connect
    AdminClient({**COMMON, "log_level": 0}).list_topics(timeout=15)
except KafkaException as e:
    print(f"{CLIENT}: broker at {BOOTSTRAP} unreachable: {e}", file=sys.stderr)
    sys.exit(2)
admin = AdminClient(dict(COMMON))


def producer(**extra):
    # Idempotent, as most production configs set it (librdkafka's default is off).
    return Producer({**COMMON, "enable.idempotence": True, "acks": "all", **extra})


def consumer(**extra):
    return Consumer({**COMMON, "enable.auto.commit": False, "auto.offset.reset": "earliest", **extra})


def create(name, partitions, config=None):
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                  config=config or {})])[name].result(timeout=30)



def produce_all(p, t, items):
    """Produces (key, value, headers) items and waits for every delivery report; returns their partitions."""
    delivered, failed = [], []

    def report(err, msg):
        (failed if err else delivered).append(err or msg.partition())
    for key, value, headers in items:
        while True:
            try:
                p.produce(t, key=key, value=value, headers=headers, on_delivery=report)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                p.poll(0.1)
    remaining = p.flush(30)
    assert remaining == 0 and not failed, f"{remaining} undelivered, errors {failed[:3]}"
    return delivered


@matrix.scenario("admin")
def _():
    t = f"{topic}-admin"
    create(t, 2, {"retention.ms": "3600000", "cleanup.policy": "compact"})
    assert t in admin.list_topics(timeout=10).topics, "created topic listed"
    try:
        create(t, 1)
        raise AssertionError("second create was accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, e
    described = admin.describe_topics(TopicCollection([t]))[t].result(timeout=30)
    assert sorted(p.id for p in described.partitions) == [0, 1], described
    resource = ConfigResource(ResourceType.TOPIC, t)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert (configs["retention.ms"].value, configs["cleanup.policy"].value) == ("3600000", "compact"), configs
    admin.delete_topics([t])[t].result(timeout=30)
    wait_for(f"{t} gone from the topic list", lambda: t not in admin.list_topics(timeout=10).topics)
    return "created with configs, TOPIC_ALREADY_EXISTS on the second create, described, deleted"


for codec in ("none", "zstd"):
    @matrix.scenario("produce-consume" + ("" if codec == "none" else f"-{codec}"))
    def _(codec=codec):
        t = f"{topic}-{codec}"
        partitions = 3
        create(t, partitions)
        p = producer(**{"compression.type": codec, "linger.ms": 5})
        produce_all(p, t, map(message, range(N)))
        c = consumer(**{"group.id": f"{group}-reader"})
        try:
            c.assign([TopicPartition(t, i, 0) for i in range(partitions)])
            records = []
            deadline = time.time() + 60
            while len(records) < N and time.time() < deadline:
                for m in c.consume(num_messages=500, timeout=0.5):
                    assert m.error() is None, m.error()
                    records.append(Record(m.partition(), m.offset(), m.key(), m.value(), m.headers() or []))
            ends = {i: c.get_watermark_offsets(TopicPartition(t, i), timeout=10)[1] for i in range(partitions)}
        finally:
            c.close()
        return check_produced_consumed(records, N, ends)


@matrix.scenario("consumer-group")
def _():
    t = f"{topic}-group"
    create(t, 4)

    def member():
        c = consumer(**{"group.id": group, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
        c.subscribe([t])
        return c

    members = [member(), member()]
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            for c in members:
                assert not c.consume(num_messages=1, timeout=0.2), "a message before anything was produced"
            owned = [set(c.assignment()) for c in members]
            if split_between(owned, 4):
                break
        else:
            raise AssertionError(f"the two members never split the partitions: {[c.assignment() for c in members]}")
        split = sorted(len(a) for a in owned)
        n = 400
        per_partition = {}
        for part in produce_all(producer(), t, ((b"k%d" % i, b"m%d" % i, None) for i in range(n))):
            per_partition[part] = per_partition.get(part, 0) + 1
        seen = {}
        while len(seen) < n and time.time() < deadline:
            for index, c in enumerate(members):
                for m in c.consume(num_messages=100, timeout=0.1):
                    assert m.error() is None, m.error()
                    seen.setdefault(m.value(), []).append(index)
        assert len(seen) == n, f"consumed {len(seen)} distinct messages of {n}"
        assert all(len(v) == 1 for v in seen.values()), "a message was consumed twice"
        for c in members:
            c.commit(asynchronous=False)
    finally:
        for c in members:
            c.close()
    produce_all(producer(), t, ((None, b"after-%d" % i, None) for i in range(10)))
    resumed = member()
    later = []
    try:
        while len(later) < 10 and time.time() < deadline:
            later.extend(m.value() for m in resumed.consume(num_messages=100, timeout=0.1) if m.error() is None)
    finally:
        resumed.close()
    assert sorted(later) == sorted(b"after-%d" % i for i in range(10)), f"resumed at the wrong place: {later[:5]}"
    listed = [g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid]
    assert group in listed, f"{group} not listed in {listed}"
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    committed = {tp.partition: tp.offset for tp in offsets.topic_partitions if tp.topic == t}
    assert committed == {p: per_partition.get(p, 0) for p in committed} and sum(committed.values()) == n, \
        f"committed {committed}, produced per partition {per_partition}"
    return f"split {split}, {n} messages once each, committed {committed}, a new member resumed there"


@matrix.scenario("describe-all-after-commit")
def _():
    names = list(admin.list_topics(timeout=30).topics)
    assert f"{topic}-group" in names and "__consumer_offsets" in names, f"topics listed: {sorted(names)}"
    futures = admin.describe_topics(TopicCollection(names), include_authorized_operations=True)
    led = {}
    for name, future in futures.items():
        d = future.result(timeout=30)
        led[name] = [(p.id, p.leader.id if p.leader is not None else None) for p in d.partitions]
    detail = check_led(led)
    described = admin.describe_consumer_groups([group], include_authorized_operations=True)[group].result(timeout=30)
    assert described.state == ConsumerGroupState.EMPTY and not described.is_simple_consumer_group, described
    return f"{detail}; group {described.state.name}"


@matrix.scenario("admin-alter-partitions")
def _():
    t = f"{topic}-alter"
    create(t, 1, {"retention.ms": "3600000", "cleanup.policy": "compact"})
    resource = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    plain = ConfigResource(ResourceType.TOPIC, t)
    configs = admin.describe_configs([plain])[plain].result(timeout=30)
    assert (configs["retention.ms"].value, configs["cleanup.policy"].value) == ("7200000", "compact,delete"), configs
    admin.create_partitions([NewPartitions(t, 3)])[t].result(timeout=30)
    try:
        admin.create_partitions([NewPartitions(t, 2)])[t].result(timeout=30)
        raise AssertionError("shrinking to 2 partitions was accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_PARTITIONS, e
    wait_for(f"{t} showing 3 partitions", lambda: len(admin.list_topics(t, timeout=10).topics[t].partitions) == 3)
    assert len(produce_all(producer(), t, ((b"k", b"v%d" % i, None) for i in range(50)))) == 50
    c = consumer(**{"group.id": f"{group}-watermarks"})
    try:
        ends = {i: c.get_watermark_offsets(TopicPartition(t, i), timeout=10)[1] for i in range(3)}
    finally:
        c.close()
    specs = {TopicPartition(t, i): OffsetSpec.latest() for i in range(3)}
    latest = {tp.partition: f.result(timeout=30).offset for tp, f in admin.list_offsets(specs).items()}
    assert latest == ends and sum(ends.values()) == 50, f"ListOffsets latest {latest}, watermarks {ends}"
    busiest = max(ends, key=ends.get)
    deleted = admin.delete_records([TopicPartition(t, busiest, 10)])
    low = list(deleted.values())[0].result(timeout=30).low_watermark
    earliest = admin.list_offsets({TopicPartition(t, busiest): OffsetSpec.earliest()})
    first = list(earliest.values())[0].result(timeout=30).offset
    assert (low, first) == (10, 10), f"DeleteRecords low watermark {low}, earliest now {first}"
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert len(cluster.nodes) == 1 and cluster.controller is not None, cluster
    admin.delete_topics([t])[t].result(timeout=30)
    return f"altered incrementally, 1 -> 3 partitions, offsets {ends}, records deleted up to 10"

def read_all(t, partitions, isolation):
    """Every record of `t` from the start, read until the consumer's position reaches the end offset of each
    partition (the last stable offset for read_committed): ([(partition, offset, value)], {partition: end})."""
    c = consumer(**{"group.id": f"{group}-{isolation}", "isolation.level": isolation})
    try:
        tps = [TopicPartition(t, i, 0) for i in range(partitions)]
        c.assign(tps)
        ends = {i: c.get_watermark_offsets(TopicPartition(t, i), timeout=10)[1] for i in range(partitions)}
        out = []
        deadline = time.time() + 30

        def behind():
            return [tp.partition for tp in c.position(tps) if tp.offset < ends[tp.partition]]
        while behind():
            assert time.time() < deadline, f"{isolation} consumer stuck at {c.position(tps)}, ends {ends}"
            for m in c.consume(num_messages=100, timeout=0.2):
                assert m.error() is None, m.error()
                out.append((m.partition(), m.offset(), m.value()))
        return out, ends
    finally:
        c.close()


@matrix.scenario("idempotent")
def _():
    t = f"{topic}-idempotent"
    create(t, IDEMPOTENT_PARTITIONS)
    eos = []
    # Small batches, 5 requests in flight (librdkafka's most with idempotence); the statistics report the
    # producer id and epoch InitProducerId assigned.
    p = producer(**{"batch.size": 1024, "linger.ms": 2, "max.in.flight.requests.per.connection": 5,
                    "statistics.interval.ms": 100, "stats_cb": lambda s: eos.append(json.loads(s).get("eos", {}))})
    delivered, failed = [], []
    for i in range(IDEMPOTENT_N):
        while True:
            try:
                p.produce(t, value=idempotent_message(i), partition=i % IDEMPOTENT_PARTITIONS,
                          on_delivery=lambda err, msg: (failed if err else delivered).append(err or msg))
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(30) == 0 and not failed and len(delivered) == IDEMPOTENT_N, f"{len(delivered)} delivered, {failed[:3]}"
    wait_for("a statistics report", lambda: p.poll(0.1) is not None and eos, 10)
    state = eos[-1]
    assert state.get("idemp_state") == "Assigned" and state.get("producer_id", -1) >= 0 and \
        state.get("producer_epoch") == 0, f"eos statistics {state}"
    records, ends = read_all(t, IDEMPOTENT_PARTITIONS, "read_uncommitted")
    detail = check_idempotent([Record(pt, o, None, v, []) for pt, o, v in records], ends)
    return f"{detail}; producer id {state['producer_id']} epoch {state['producer_epoch']} ({state['idemp_state']})"


def latest_offsets(t, isolation):
    specs = {TopicPartition(t, i): OffsetSpec.latest() for i in range(TXN_OUTPUT_PARTITIONS)}
    answer = admin.list_offsets(specs, isolation_level=isolation)
    return {tp.partition: f.result(timeout=30).offset for tp, f in answer.items()}


@matrix.scenario("transactional")
def _():
    t_in, t_out, g = f"{topic}-txn-in", f"{topic}-txn-out", f"{group}-txn"
    create(t_in, 1)
    create(t_out, TXN_OUTPUT_PARTITIONS)
    produce_all(producer(), t_in, (txn_input(i) + (None,) for i in range(TXN_INPUT)))

    c = consumer(**{"group.id": g, "isolation.level": "read_committed"})
    c.subscribe([t_in])
    txn = Producer({**COMMON, "transactional.id": f"{topic}-txn"})
    open_lso = None
    try:
        txn.init_transactions(30)
        for commit in (True, False):
            batch = []
            deadline = time.time() + 60
            while len(batch) < TXN_BATCH:
                assert time.time() < deadline, f"consumed {len(batch)} of {TXN_BATCH} input records"
                for m in c.consume(num_messages=TXN_BATCH - len(batch), timeout=0.5):
                    assert m.error() is None, m.error()
                    batch.append(m)
            txn.begin_transaction()
            for m in batch:
                partition, value = txn_transform(m.value())
                txn.produce(t_out, key=m.key(), value=value, partition=partition)
            last = batch[-1]
            txn.send_offsets_to_transaction([TopicPartition(t_in, last.partition(), last.offset() + 1)],
                                            c.consumer_group_metadata(), 30)
            assert txn.flush(30) == 0  # the aborted records, too, reach the log: an abort drops records not yet sent
            if commit:  # while the first transaction is open, its records are above the last stable offset
                open_lso = check_open_lso(latest_offsets(t_out, IsolationLevel.READ_COMMITTED),
                                          latest_offsets(t_out, IsolationLevel.READ_UNCOMMITTED))
            (txn.commit_transaction if commit else txn.abort_transaction)(30)
    finally:
        c.close()
    committed, ends = read_all(t_out, TXN_OUTPUT_PARTITIONS, "read_committed")
    uncommitted, _ = read_all(t_out, TXN_OUTPUT_PARTITIONS, "read_uncommitted")
    stable = latest_offsets(t_out, IsolationLevel.READ_COMMITTED)
    assert stable == ends, f"ListOffsets read_committed {stable} after both transactions, high watermarks {ends}"
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)], require_stable=True)[g].result(timeout=30)
    group_offset = {tp.partition: tp.offset for tp in offsets.topic_partitions if tp.topic == t_in}
    detail = check_transactional(committed, uncommitted, ends, group_offset.get(0))
    return f"{detail}; {open_lso}"


matrix.finish()
