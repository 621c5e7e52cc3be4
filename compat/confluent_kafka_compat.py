#!/usr/bin/env python3
"""Runs confluent-kafka (Python over the librdkafka it bundles) against a running brook.

Usage: compat/confluent_kafka_compat.py [bootstrap]   (default 127.0.0.1:9092)
compat/install.sh puts the pinned confluent-kafka in compat/.deps/confluent-kafka; select it with
PYTHONPATH. Prints one matrix line per scenario; exit 0 all passed, 1 some failed, 2 confluent-kafka
missing or the broker unreachable. (Named so that it never shadows the confluent_kafka package.)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from matrix import RUN, Matrix, Record, bootstrap, check_led, check_produced_consumed, message, missing, split_between, wait_for  # noqa: E402

try:
    import confluent_kafka
    from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                                 KafkaException, Producer, TopicCollection, TopicPartition)
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


matrix.finish()
