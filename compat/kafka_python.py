#!/usr/bin/env python3
"""Runs kafka-python (an independent, pure-Python Kafka client) against a running brook.

Usage: compat/kafka_python.py [bootstrap]   (default 127.0.0.1:9092)
Prints one matrix line per scenario and exits non-zero if any fails.
"""
import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import InvalidConfigurationError, InvalidPartitionsError, TopicAlreadyExistsError

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
RUN = uuid.uuid4().hex[:8]
PARTITIONS = 3
N = 3000
results = []


def scenario(name):
    def wrap(fn):
        try:
            detail = fn() or ""
            results.append((name, "PASS", detail))
        except Exception as e:  # report every failure, keep going
            results.append((name, "FAIL", f"{type(e).__name__}: {e}"))
        return fn
    return wrap


admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="brook-compat")
topic = f"kafka-python-{RUN}"


@scenario("admin: create topic, list, duplicate refused")
def _():
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    assert topic in admin.list_topics(), "created topic listed"
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    except TopicAlreadyExistsError:
        return "TOPIC_ALREADY_EXISTS on the second create"
    raise AssertionError("second create was accepted")


def expected(i):
    return (b"key-%d" % (i % 11), b"value-%d-" % i + b"x" * (i % 97))


for codec in (None, "gzip"):
    @scenario(f"produce {N} keyed messages, acks=all, compression={codec}, consume back exactly")
    def _(codec=codec):
        t = f"{topic}-{codec or 'none'}"
        admin.create_topics([NewTopic(t, PARTITIONS, 1)])
        # Idempotent producers (InitProducerId) are not supported yet.
        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", compression_type=codec,
                                 enable_idempotence=False, linger_ms=5)
        futures = [producer.send(t, key=k, value=v) for k, v in map(expected, range(N))]
        producer.flush()
        offsets = {}
        for f in futures:
            md = f.get(timeout=30)
            offsets.setdefault(md.partition, []).append(md.offset)
        for p, offs in offsets.items():
            assert offs == list(range(len(offs))), f"partition {p}: offsets dense from 0"
        consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                                 consumer_timeout_ms=5000, auto_offset_reset="earliest")
        consumer.assign([TopicPartition(t, p) for p in range(PARTITIONS)])
        got = sorted((m.key, m.value) for m in consumer)
        consumer.close()
        want = sorted(map(expected, range(N)))
        assert got == want, f"consumed {len(got)} messages, expected {len(want)}, contents differ"
        return f"{N} messages over {len(offsets)} partitions"


@scenario("group: two consumers share 4 partitions, each message once, commits resume the group")
def _():
    t = f"{topic}-group"
    group = f"kafka-python-group-{RUN}"
    admin.create_topics([NewTopic(t, 4, 1)])

    def member():
        return KafkaConsumer(t, group_id=group, bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=10000,
                             heartbeat_interval_ms=500)

    members = [member(), member()]
    deadline = time.time() + 60
    # The topic is empty until both members hold partitions, so nothing is read before the rebalance ends.
    # Poll long enough for a whole rebalance (group.initial.rebalance.delay.ms is 3 s by default):
    # kafka-python abandons a join that outlasts its poll timeout and starts another.
    while time.time() < deadline:
        for c in members:
            c.poll(timeout_ms=4000)
        owned = [c.assignment() for c in members]
        if all(owned) and len(owned[0] | owned[1]) == 4 and not (owned[0] & owned[1]):
            break
    else:
        raise AssertionError(f"the two members never split the partitions: {[c.assignment() for c in members]}")
    split = sorted(len(a) for a in owned)

    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=False)
    n = 400
    for i in range(n):
        producer.send(t, key=b"k%d" % i, value=b"m%d" % i)
    producer.flush()
    seen = {}
    while len(seen) < n and time.time() < deadline:
        for index, c in enumerate(members):
            for records in c.poll(timeout_ms=100).values():
                for m in records:
                    seen.setdefault(m.value, []).append(index)
    assert len(seen) == n, f"consumed {len(seen)} distinct messages of {n}"
    assert all(len(v) == 1 for v in seen.values()), "a message was consumed twice"
    for c in members:
        c.commit()
        c.close()

    for i in range(10):
        producer.send(t, value=b"after-%d" % i)
    producer.flush()
    resumed = member()
    later = []
    while len(later) < 10 and time.time() < deadline:
        for records in resumed.poll(timeout_ms=100).values():
            later.extend(m.value for m in records)
    resumed.close()
    assert sorted(later) == sorted(b"after-%d" % i for i in range(10)), f"resumed at the wrong place: {later[:5]}"
    listed = admin.list_groups()
    names = [g.get("group_id") if isinstance(g, dict) else g[0] for g in listed]
    assert group in names, f"{group} not listed in {listed}"
    committed = admin.list_group_offsets({group: None})
    offsets = committed.get(group, committed) if isinstance(committed, dict) else committed
    total = sum(o.offset for o in offsets.values())
    assert total == n, f"committed offsets add up to {total}, not {n}: {committed}"
    return f"split {split}, {n} messages once each, resumed at the committed offsets"


@scenario("admin: topic configs, alter (incremental), create partitions, describe cluster and log dirs")
def _():
    t = f"{topic}-admin"
    admin.create_topics([NewTopic(t, 1, 1, topic_configs={"retention.ms": "3600000",
                                                          "cleanup.policy": "compact"})])
    resource = ConfigResource(ConfigResourceType.TOPIC, t)
    described = admin.describe_configs([resource], config_filter="all")["topic"][t]
    assert described["retention.ms"]["value"] == "3600000", described["retention.ms"]
    assert described["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG", described["retention.ms"]
    assert described["segment.bytes"]["config_source"] == "DEFAULT_CONFIG", described["segment.bytes"]

    # kafka-python 3 alters incrementally when the broker offers IncrementalAlterConfigs.
    altered = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                                  configs={"retention.ms": "7200000",
                                                           "cleanup.policy": ("APPEND", "delete")})])
    assert altered["topic"][t] == "OK", altered
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)])["topic"][t]
    assert modified["retention.ms"]["value"] == "7200000", modified
    assert modified["cleanup.policy"]["value"] == "compact,delete", modified["cleanup.policy"]
    refused = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                                  configs={"retention.ms": "soon"})])
    assert "InvalidConfiguration" in refused["topic"][t], refused

    admin.create_partitions({t: 3})
    deadline = time.time() + 30
    while time.time() < deadline:
        described_topics = admin.describe_topics([t])
        if len(described_topics[0]["partitions"]) == 3:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"{t} never showed 3 partitions")
    try:
        admin.create_partitions({t: 2})
        raise AssertionError("shrinking to 2 partitions was accepted")
    except InvalidPartitionsError:
        pass
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=False)
    md = producer.send(t, key=b"k", value=b"to partition 2", partition=2).get(timeout=30)
    producer.close()
    assert (md.partition, md.offset) == (2, 0), md

    cluster = admin.describe_cluster()
    assert len(cluster["brokers"]) == 1 and cluster["controller_id"] == cluster["brokers"][0]["broker_id"], cluster
    dirs = admin.describe_log_dirs([t])
    sizes = {p["partition_index"]: p["partition_size"]
             for d in dirs[0]["log_dirs"] for tp in d["topics"] if tp["name"] == t for p in tp["partitions"]}
    assert sorted(sizes) == [0, 1, 2] and sizes[2] > 0, dirs
    try:
        admin.create_topics([NewTopic(f"{t}-bad", 1, 1, topic_configs={"retention.ms": "-5"})])
        raise AssertionError("retention.ms=-5 was accepted")
    except InvalidConfigurationError:
        pass
    return f"configs described and altered, 1 -> 3 partitions, cluster {cluster['cluster_id']}"


@scenario("delete topic")
def _():
    admin.delete_topics([topic])
    assert topic not in admin.list_topics(), "deleted topic still listed"


admin.close()
width = max(len(name) for name, _, _ in results)
for name, status, detail in results:
    print(f"kafka-python  {name:<{width}}  {status}  {detail}")
sys.exit(0 if all(status == "PASS" for _, status, _ in results) else 1)
