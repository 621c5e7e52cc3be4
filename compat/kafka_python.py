#!/usr/bin/env python3
"""Runs kafka-python (an independent, pure-Python Kafka client), 2.x or 3.x, against a running brook.

Usage: compat/kafka_python.py [bootstrap]   (default 127.0.0.1:9092)
Which kafka-python runs is whichever `import kafka` finds: compat/install.sh puts 2.3.3 and 3.0.12
in compat/.deps/kafka-python-{2,3}; select one with PYTHONPATH. Prints one matrix line per scenario;
exit 0 all passed, 1 some failed, 2 kafka-python missing or the broker unreachable.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from matrix import (IDEMPOTENT_N, IDEMPOTENT_PARTITIONS, RUN, TXN_BATCH, TXN_INPUT, TXN_OUTPUT_PARTITIONS,  # noqa: E402
                    Matrix, Record, bootstrap, check_idempotent, check_led, check_open_lso,
                    check_produced_consumed, check_transactional, idempotent_message, message, missing, split_between, txn_input,
                    txn_transform, wait_for)

try:
    import kafka
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
    from kafka.errors import InvalidConfigurationError, InvalidPartitionsError, TopicAlreadyExistsError
except ImportError as e:
    missing("kafka-python", f"{e}; run compat/install.sh and set PYTHONPATH=compat/.deps/kafka-python-3")

V2 = kafka.__version__.startswith("2.")
CLIENT = f"kafka-python-{kafka.__version__.split('.')[0]}"
BOOTSTRAP = bootstrap()
N = 3000
matrix = Matrix(CLIENT)
print(f"{CLIENT}: kafka-python {kafka.__version__} against {BOOTSTRAP}", flush=True)
try:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="brook-compat")
except Exception as e:  # kafka-python 2 and 3 name the no-broker error differently
    print(f"{CLIENT}: broker at {BOOTSTRAP} unreachable: {e}", file=sys.stderr)
    sys.exit(2)
topic = f"kafka-python-{RUN}"
group = f"kafka-python-group-{RUN}"


def producer(**extra):
    # Each version's defaults: kafka-python 3 produces idempotently (KIP-679), 2.x does not.
    return KafkaProducer(bootstrap_servers=BOOTSTRAP, **extra)



def topic_partitions(described):
    """describe_topics' answer as {topic: [(partition, leader)]}; the two versions name fields differently."""
    out = {}
    for t in described:
        name = t.get("topic", t.get("name"))
        out[name] = [(p.get("partition", p.get("partition_index")), p.get("leader", p.get("leader_id")))
                     for p in t["partitions"]]
    return out


def topic_configs(name):
    resource = ConfigResource(ConfigResourceType.TOPIC, name)
    if V2:
        answer = admin.describe_configs([resource])[0]
        entries = answer.resources[0][4]
        return {e[0]: e[1] for e in entries}
    return {k: v["value"] for k, v in admin.describe_configs([resource], config_filter="all")["topic"][name].items()}


def committed_offsets():
    if V2:
        return admin.list_consumer_group_offsets(group)
    return admin.list_group_offsets({group: None})[group]


@matrix.scenario("admin")
def _():
    t = f"{topic}-admin"
    admin.create_topics([NewTopic(t, 2, 1, topic_configs={"retention.ms": "3600000", "cleanup.policy": "compact"})])
    assert t in admin.list_topics(), "created topic listed"
    try:
        admin.create_topics([NewTopic(t, 1, 1)])
        raise AssertionError("second create was accepted")
    except TopicAlreadyExistsError:
        pass
    described = topic_partitions(admin.describe_topics([t]))
    assert sorted(p for p, _ in described[t]) == [0, 1], described
    configs = topic_configs(t)
    assert (configs["retention.ms"], configs["cleanup.policy"]) == ("3600000", "compact"), configs
    admin.delete_topics([t])
    wait_for(f"{t} gone from the topic list", lambda: t not in admin.list_topics())
    return "created with configs, TOPIC_ALREADY_EXISTS on the second create, described, deleted"


for codec in (None, "gzip"):
    @matrix.scenario("produce-consume" + (f"-{codec}" if codec else ""))
    def _(codec=codec):
        t = f"{topic}-{codec or 'none'}"
        partitions = 3
        admin.create_topics([NewTopic(t, partitions, 1)])
        p = producer(acks="all", compression_type=codec, linger_ms=5)
        futures = [p.send(t, key=k, value=v, headers=h) for k, v, h in map(message, range(N))]
        p.flush()
        for f in futures:
            f.get(timeout=30)
        p.close()
        consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, auto_offset_reset="earliest")
        tps = [TopicPartition(t, i) for i in range(partitions)]
        consumer.assign(tps)
        records = []
        deadline = time.time() + 60
        while len(records) < N and time.time() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(Record(m.partition, m.offset, m.key, m.value, m.headers) for m in batch)
        ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        consumer.close()
        return check_produced_consumed(records, N, ends)


@matrix.scenario("consumer-group")
def _():
    t = f"{topic}-group"
    admin.create_topics([NewTopic(t, 4, 1)])

    def member():
        return KafkaConsumer(t, group_id=group, bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)

    members = [member(), member()]
    deadline = time.time() + 60
    # The topic is empty until both members hold partitions, so nothing is read before the rebalance ends.
    # Poll long enough for a whole rebalance (group.initial.rebalance.delay.ms is 3 s by default):
    # kafka-python abandons a join that outlasts its poll timeout and starts another.
    while time.time() < deadline:
        for c in members:
            c.poll(timeout_ms=4000)
        owned = [c.assignment() for c in members]
        if split_between(owned, 4):
            break
    else:
        raise AssertionError(f"the two members never split the partitions: {[c.assignment() for c in members]}")
    split = sorted(len(a) for a in owned)

    p = producer(acks="all")
    n = 400
    sent = [p.send(t, key=b"k%d" % i, value=b"m%d" % i) for i in range(n)]
    p.flush()
    per_partition = {}
    for f in sent:
        md = f.get(timeout=30)
        per_partition[md.partition] = per_partition.get(md.partition, 0) + 1
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
        p.send(t, value=b"after-%d" % i)
    p.flush()
    p.close()
    resumed = member()
    later = []
    while len(later) < 10 and time.time() < deadline:
        for records in resumed.poll(timeout_ms=100).values():
            later.extend(m.value for m in records)
    resumed.close()
    assert sorted(later) == sorted(b"after-%d" % i for i in range(10)), f"resumed at the wrong place: {later[:5]}"
    listed = admin.list_consumer_groups() if V2 else admin.list_groups()
    names = [g.get("group_id") if isinstance(g, dict) else g[0] for g in listed]
    assert group in names, f"{group} not listed in {listed}"
    committed = {tp.partition: o.offset for tp, o in committed_offsets().items() if tp.topic == t}
    assert committed == {part: per_partition.get(part, 0) for part in committed} and sum(committed.values()) == n, \
        f"committed {committed}, produced per partition {per_partition}"
    return f"split {split}, {n} messages once each, committed {committed}, a new member resumed there"


@matrix.scenario("describe-all-after-commit")
def _():
    # An all-topics Metadata, then every topic described: kafka-python 2.x asks for authorized operations.
    names = admin.list_topics()
    assert f"{topic}-group" in names and "__consumer_offsets" in names, f"topics listed: {sorted(names)}"
    led = topic_partitions(admin.describe_topics())
    assert set(led) == set(names), f"listed {sorted(names)}, described {sorted(led)}"
    detail = check_led(led)
    if V2:
        info = admin.describe_consumer_groups([group], include_authorized_operations=True)[0]
        state, protocol_type = info.state, info.protocol_type
    else:
        info = admin.describe_groups([group], include_authorized_operations=True)[group]
        state, protocol_type = info["group_state"], info["protocol_type"]
    assert (state, protocol_type) == ("Empty", "consumer"), info
    return f"{detail}; group {state}"


@matrix.scenario("admin-alter-partitions")
def _():
    t = f"{topic}-alter"
    admin.create_topics([NewTopic(t, 1, 1, topic_configs={"retention.ms": "3600000", "cleanup.policy": "compact"})])
    if V2:  # AlterConfigs: the whole set of dynamic configs for the resource; errors come back as codes
        answer = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={
            "retention.ms": "7200000", "cleanup.policy": "compact,delete"})])
        assert [r[0] for r in answer.resources] == [0], answer
        refused = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": "soon"})])
        assert [r[0] for r in refused.resources] == [InvalidConfigurationError.errno], refused
    else:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)], config_filter="all")["topic"][t]
        assert described["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG", described["retention.ms"]
        assert described["segment.bytes"]["config_source"] == "DEFAULT_CONFIG", described["segment.bytes"]
        # kafka-python 3 alters incrementally when the broker offers IncrementalAlterConfigs.
        altered = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={
            "retention.ms": "7200000", "cleanup.policy": ("APPEND", "delete")})])
        assert altered["topic"][t] == "OK", altered
        refused = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": "soon"})])
        assert "InvalidConfiguration" in refused["topic"][t], refused
    modified = topic_configs(t)
    assert (modified["retention.ms"], modified["cleanup.policy"]) == ("7200000", "compact,delete"), modified

    admin.create_partitions({t: NewPartitions(3)})
    wait_for(f"{t} showing 3 partitions", lambda: len(admin.describe_topics([t])[0]["partitions"]) == 3)
    try:
        admin.create_partitions({t: NewPartitions(2)})
        raise AssertionError("shrinking to 2 partitions was accepted")
    except InvalidPartitionsError:
        pass
    p = producer()
    md = p.send(t, key=b"k", value=b"to partition 2", partition=2).get(timeout=30)
    p.close()
    assert (md.partition, md.offset) == (2, 0), md

    cluster = admin.describe_cluster()
    assert len(cluster["brokers"]) == 1 and cluster["controller_id"] == cluster["brokers"][0]["node_id" if V2 else "broker_id"], cluster
    if not V2:  # kafka-python 2.x returns DescribeLogDirs raw and cannot filter it by topic
        dirs = admin.describe_log_dirs([t])
        sizes = {p["partition_index"]: p["partition_size"]
                 for d in dirs[0]["log_dirs"] for tp in d["topics"] if tp["name"] == t for p in tp["partitions"]}
        assert sorted(sizes) == [0, 1, 2] and sizes[2] > 0, dirs
    try:
        admin.create_topics([NewTopic(f"{t}-bad", 1, 1, topic_configs={"retention.ms": "-5"})])
        raise AssertionError("retention.ms=-5 was accepted")
    except InvalidConfigurationError:
        pass
    admin.delete_topics([t])
    return f"altered{'' if V2 else ' incrementally'}, 1 -> 3 partitions (shrink refused), cluster {cluster['cluster_id']}"

def latest_offsets(t, partitions, isolation_level):
    """ListOffsets latest with `isolation_level`, as a consumer with it asks: {partition: offset}."""
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, isolation_level=isolation_level)
    try:
        ends = consumer.end_offsets([TopicPartition(t, i) for i in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


def read_all(t, partitions, isolation_level):
    """Every record of `t` from the start, read until the consumer's position reaches the end offset (for
    read_committed, the last stable offset) of each partition: [(partition, offset, value)]."""
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level=isolation_level)
    try:
        tps = [TopicPartition(t, i) for i in range(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        out = []
        deadline = time.time() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.time() < deadline, f"{isolation_level} consumer stuck at {[consumer.position(tp) for tp in tps]} of {ends}"
            for batch in consumer.poll(timeout_ms=200).values():
                out.extend((m.partition, m.offset, m.value) for m in batch)
        return out, {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


@matrix.scenario("idempotent")
def _():
    t = f"{topic}-idempotent"
    admin.create_topics([NewTopic(t, IDEMPOTENT_PARTITIONS, 1)])
    # Small batches, up to 5 requests in flight per connection (sequence numbers keep them in order); 2.x
    # allows an idempotent producer only one.
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all", batch_size=1024, linger_ms=2,
                      max_in_flight_requests_per_connection=1 if V2 else 5)
    futures = [p.send(t, value=idempotent_message(i), partition=i % IDEMPOTENT_PARTITIONS) for i in range(IDEMPOTENT_N)]
    p.flush()
    for f in futures:
        f.get(timeout=30)
    # kafka-python keeps the id InitProducerId assigned in its transaction manager (internal).
    pid = p._transaction_manager.producer_id_and_epoch
    p.close()
    assert pid.producer_id >= 0 and pid.epoch == 0, f"producer id and epoch {pid}"
    records, ends = read_all(t, IDEMPOTENT_PARTITIONS, "read_uncommitted")
    detail = check_idempotent([Record(pt, o, None, v, []) for pt, o, v in records], ends)
    return f"{detail}; producer id {pid.producer_id} epoch {pid.epoch}"


@matrix.scenario("transactional")
def _():
    t_in, t_out, g = f"{topic}-txn-in", f"{topic}-txn-out", f"{group}-txn"
    admin.create_topics([NewTopic(t_in, 1, 1), NewTopic(t_out, TXN_OUTPUT_PARTITIONS, 1)])
    p = producer(acks="all")
    for i in range(TXN_INPUT):
        key, value = txn_input(i)
        p.send(t_in, key=key, value=value).get(timeout=30)
    p.close()

    consumer = KafkaConsumer(t_in, group_id=g, bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level="read_committed",
                             max_poll_records=TXN_BATCH)
    txn = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{topic}-txn", acks="all")
    try:
        txn.init_transactions()
        for commit in (True, False):
            batch = []
            deadline = time.time() + 60
            while len(batch) < TXN_BATCH:
                assert time.time() < deadline, f"consumed {len(batch)} of {TXN_BATCH} input records"
                for records in consumer.poll(timeout_ms=500, max_records=TXN_BATCH - len(batch)).values():
                    batch.extend(records)
            txn.begin_transaction()
            for m in batch:
                partition, value = txn_transform(m.value)
                txn.send(t_out, key=m.key, value=value, partition=partition)
            last = batch[-1]
            # The member's metadata lets the coordinator check it (KIP-447); kafka-python 2.x sends the group id.
            group_metadata = consumer.group_metadata() if hasattr(consumer, "group_metadata") else g
            txn.send_offsets_to_transaction({TopicPartition(t_in, last.partition): OffsetAndMetadata(last.offset + 1, "", -1)},
                                            group_metadata)
            txn.flush()  # the aborted records, too, reach the log: an abort drops records not yet sent
            if commit:  # while the first transaction is open, its records are above the last stable offset
                open_lso = check_open_lso(latest_offsets(t_out, TXN_OUTPUT_PARTITIONS, "read_committed"),
                                          latest_offsets(t_out, TXN_OUTPUT_PARTITIONS, "read_uncommitted"))
            (txn.commit_transaction if commit else txn.abort_transaction)()
    finally:
        txn.close()
        consumer.close()
    committed, ends = read_all(t_out, TXN_OUTPUT_PARTITIONS, "read_committed")
    uncommitted, _ = read_all(t_out, TXN_OUTPUT_PARTITIONS, "read_uncommitted")
    offsets = admin.list_consumer_group_offsets(g) if V2 else admin.list_group_offsets({g: None})[g]
    return f"{check_transactional(committed, uncommitted, ends, offsets[TopicPartition(t_in, 0)].offset)}; {open_lso}"


admin.close()
matrix.finish()
