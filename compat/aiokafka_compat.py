#!/usr/bin/env python3
"""Runs aiokafka (asyncio Kafka client) against a running brook.

Usage: compat/aiokafka_compat.py [bootstrap]   (default 127.0.0.1:9092)
compat/install.sh puts the pinned aiokafka in compat/.deps/aiokafka; select it with PYTHONPATH.
Prints one matrix line per scenario; exit 0 all passed, 1 some failed, 2 aiokafka missing or the
broker unreachable. (Named aiokafka_compat.py so that it never shadows the aiokafka package.)
"""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from matrix import (IDEMPOTENT_N, IDEMPOTENT_PARTITIONS, RUN, TXN_BATCH, TXN_INPUT, TXN_OUTPUT_PARTITIONS,  # noqa: E402
                    Matrix, Record, bootstrap, check_idempotent, check_led, check_open_lso,
                    check_produced_consumed, check_transactional, idempotent_message, message, missing, split_between, txn_input,
                    txn_transform)

try:
    import aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import InvalidPartitionsError
except ImportError as e:
    missing("aiokafka", f"{e}; run compat/install.sh and set PYTHONPATH=compat/.deps/aiokafka")

CLIENT = "aiokafka"
BOOTSTRAP = bootstrap()
N = 3000
TOPIC_ALREADY_EXISTS = 36
matrix = Matrix(CLIENT)
topic = f"aiokafka-{RUN}"
group = f"aiokafka-group-{RUN}"
print(f"{CLIENT}: aiokafka {aiokafka.__version__} against {BOOTSTRAP}", flush=True)


async def reachable():
    client = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=10000)
    try:
        await asyncio.wait_for(client.start(), 15)
    finally:
        await client.close()


try:
    asyncio.run(reachable())
except Exception as e:
    print(f"{CLIENT}: broker at {BOOTSTRAP} unreachable: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(2)


class Admin:
    """An admin client per scenario: aiokafka's clients belong to the event loop that started them."""

    async def __aenter__(self):
        self.client = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="brook-compat")
        await self.client.start()
        return self.client

    async def __aexit__(self, *_):
        await self.client.close()


def create_errors(response):
    """CreateTopics answers carry per-topic error codes; aiokafka returns them without raising."""
    return {t[0]: t[1] for t in response.topic_errors}


async def create(admin, name, partitions, configs=None):
    errors = create_errors(await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})]))
    assert errors == {name: 0}, f"CreateTopics {name}: {errors}"


def topic_partitions(described):
    return {t["topic"]: [(p["partition"], p["leader"]) for p in t["partitions"]] for t in described}


async def wait_for(what, condition, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} within {seconds} s")


@matrix.scenario("admin")
async def _():
    t = f"{topic}-admin"
    async with Admin() as admin:
        await create(admin, t, 2, {"retention.ms": "3600000", "cleanup.policy": "compact"})
        assert t in await admin.list_topics(), "created topic listed"
        again = create_errors(await admin.create_topics([NewTopic(t, 1, 1)]))
        assert again == {t: TOPIC_ALREADY_EXISTS}, f"second create answered {again}"
        described = topic_partitions(await admin.describe_topics([t]))
        assert sorted(p for p, _ in described[t]) == [0, 1], described
        answer = (await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)]))[0]
        entries = {e[0]: e[1] for e in answer.resources[0][4]}
        assert (entries["retention.ms"], entries["cleanup.policy"]) == ("3600000", "compact"), entries
        deleted = await admin.delete_topics([t])
        assert [e[1] for e in deleted.topic_error_codes] == [0], deleted

        async def gone():
            return t not in await admin.list_topics()
        await wait_for(f"{t} gone from the topic list", gone)
    return "created with configs, TOPIC_ALREADY_EXISTS on the second create, described, deleted"


for codec in (None, "gzip"):  # gzip needs no extra library (lz4, snappy, zstd do)
    @matrix.scenario("produce-consume" + (f"-{codec}" if codec else ""))
    async def _(codec=codec):
        t = f"{topic}-{codec or 'none'}"
        partitions = 3
        async with Admin() as admin:
            await create(admin, t, partitions)
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", compression_type=codec,
                                    enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            sent = [await producer.send(t, key=k, value=v, headers=h) for k, v, h in map(message, range(N))]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(t, i) for i in range(partitions)]
            consumer.assign(tps)
            records = []
            deadline = time.time() + 60
            while len(records) < N and time.time() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(Record(m.partition, m.offset, m.key, m.value, list(m.headers)) for m in batch)
            ends = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()
        return check_produced_consumed(records, N, ends)


@matrix.scenario("consumer-group")
async def _():
    t = f"{topic}-group"
    async with Admin() as admin:
        await create(admin, t, 4)

    def member():
        return AIOKafkaConsumer(t, group_id=group, bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)

    members = [member(), member()]
    for c in members:
        await c.start()
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            await asyncio.gather(*(c.getmany(timeout_ms=200) for c in members))
            owned = [c.assignment() for c in members]
            if split_between(owned, 4):
                break
        else:
            raise AssertionError(f"the two members never split the partitions: {[c.assignment() for c in members]}")
        split = sorted(len(a) for a in owned)
        n = 400
        sent = await asyncio.gather(*[await producer.send(t, key=b"k%d" % i, value=b"m%d" % i) for i in range(n)])
        per_partition = {}
        for md in sent:
            per_partition[md.partition] = per_partition.get(md.partition, 0) + 1
        seen = {}
        while len(seen) < n and time.time() < deadline:
            polled = await asyncio.gather(*(c.getmany(timeout_ms=100) for c in members))
            for index, batches in enumerate(polled):
                for batch in batches.values():
                    for m in batch:
                        seen.setdefault(m.value, []).append(index)
        assert len(seen) == n, f"consumed {len(seen)} distinct messages of {n}"
        assert all(len(v) == 1 for v in seen.values()), "a message was consumed twice"
        for c in members:
            await c.commit()
    finally:
        for c in members:
            await c.stop()
    try:
        await asyncio.gather(*[await producer.send(t, value=b"after-%d" % i) for i in range(10)])
    finally:
        await producer.stop()
    resumed = member()
    await resumed.start()
    later = []
    try:
        while len(later) < 10 and time.time() < deadline:
            for batch in (await resumed.getmany(timeout_ms=100)).values():
                later.extend(m.value for m in batch)
    finally:
        await resumed.stop()
    assert sorted(later) == sorted(b"after-%d" % i for i in range(10)), f"resumed at the wrong place: {later[:5]}"
    async with Admin() as admin:
        listed = [g[0] for g in await admin.list_consumer_groups()]
        assert group in listed, f"{group} not listed in {listed}"
        offsets = await admin.list_consumer_group_offsets(group)
    committed = {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == t}
    assert committed == {p: per_partition.get(p, 0) for p in committed} and sum(committed.values()) == n, \
        f"committed {committed}, produced per partition {per_partition}"
    return f"split {split}, {n} messages once each, committed {committed}, a new member resumed there"


@matrix.scenario("describe-all-after-commit")
async def _():
    async with Admin() as admin:
        names = await admin.list_topics()
        assert f"{topic}-group" in names and "__consumer_offsets" in names, f"topics listed: {sorted(names)}"
        led = topic_partitions(await admin.describe_topics())
        assert set(led) == set(names), f"listed {sorted(names)}, described {sorted(led)}"
        detail = check_led(led)
        answer = (await admin.describe_consumer_groups([group], include_authorized_operations=True))[0]
    error_code, group_id, state, protocol_type = answer.groups[0][:4]
    assert (error_code, group_id, state, protocol_type) == (0, group, "Empty", "consumer"), answer
    return f"{detail}; group {state}"


@matrix.scenario("admin-alter-partitions")
async def _():
    t = f"{topic}-alter"
    async with Admin() as admin:
        await create(admin, t, 1, {"retention.ms": "3600000"})
        # aiokafka alters with AlterConfigs: the whole set of dynamic configs for the resource.
        altered = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={
            "retention.ms": "7200000", "cleanup.policy": "compact,delete"})])
        assert [r[0] for r in altered[0].resources] == [0], altered
        answer = (await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)]))[0]
        entries = {e[0]: e[1] for e in answer.resources[0][4]}
        assert (entries["retention.ms"], entries["cleanup.policy"]) == ("7200000", "compact,delete"), entries
        grown = await admin.create_partitions({t: NewPartitions(3)})
        assert [e[1] for e in grown.topic_errors] == [0], grown
        try:
            await admin.create_partitions({t: NewPartitions(2)})
            raise AssertionError("shrinking to 2 partitions was accepted")
        except InvalidPartitionsError:
            pass

        async def three():
            return len(topic_partitions(await admin.describe_topics([t]))[t]) == 3
        await wait_for(f"{t} showing 3 partitions", three)
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
        await producer.start()
        try:  # keys: a compacted topic refuses records without one, as Kafka does
            await asyncio.gather(*[await producer.send(t, key=b"k%d" % i, value=b"v%d" % i, partition=i % 3)
                                   for i in range(30)])
        finally:
            await producer.stop()
        low = await admin.delete_records({TopicPartition(t, 2): RecordsToDelete(4)})
        assert low == {TopicPartition(t, 2): 4}, f"DeleteRecords answered {low}"
        cluster = await admin.describe_cluster()
        assert len(cluster["brokers"]) == 1, cluster
        deleted = await admin.delete_topics([t])
        assert [e[1] for e in deleted.topic_error_codes] == [0], deleted
    return "altered, 1 -> 3 partitions (shrink refused), records deleted up to 4"

async def latest_offsets(t, partitions, isolation_level):
    """ListOffsets latest with `isolation_level`, as a consumer with it asks: {partition: offset}."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, isolation_level=isolation_level)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, i) for i in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def read_all(t, partitions, isolation_level):
    """Every record of `t` from the start, read until the consumer's position reaches the end offset of each
    partition (the last stable offset for read_committed): ([(partition, offset, value)], {partition: end})."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level=isolation_level)
    await consumer.start()
    try:
        tps = [TopicPartition(t, i) for i in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out = []
        deadline = time.time() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.time() < deadline, f"{isolation_level} consumer stuck below {ends}"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                out.extend((m.partition, m.offset, m.value) for m in batch)
        return out, {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


@matrix.scenario("idempotent")
async def _():
    t = f"{topic}-idempotent"
    async with Admin() as admin:
        await create(admin, t, IDEMPOTENT_PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True,
                                max_batch_size=1024, linger_ms=2)
    await producer.start()
    try:
        sent = [await producer.send(t, value=idempotent_message(i), partition=i % IDEMPOTENT_PARTITIONS)
                for i in range(IDEMPOTENT_N)]
        await asyncio.gather(*sent)
        # aiokafka keeps the id InitProducerId assigned in its transaction manager (internal).
        pid, epoch = producer._txn_manager.producer_id, producer._txn_manager.producer_epoch
    finally:
        await producer.stop()
    assert pid >= 0 and epoch == 0, f"producer id {pid} epoch {epoch}"
    records, ends = await read_all(t, IDEMPOTENT_PARTITIONS, "read_uncommitted")
    detail = check_idempotent([Record(pt, o, None, v, []) for pt, o, v in records], ends)
    return f"{detail}; producer id {pid} epoch {epoch}"


@matrix.scenario("transactional")
async def _():
    t_in, t_out, g = f"{topic}-txn-in", f"{topic}-txn-out", f"{group}-txn"
    async with Admin() as admin:
        await create(admin, t_in, 1)
        await create(admin, t_out, TXN_OUTPUT_PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(t_in, key=k, value=v) for k, v in map(txn_input, range(TXN_INPUT))])
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(t_in, group_id=g, bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    txn = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{topic}-txn")
    await consumer.start()
    try:
        await txn.start()  # InitProducerId
        for commit in (True, False):
            batch = []
            deadline = time.time() + 60
            while len(batch) < TXN_BATCH:
                assert time.time() < deadline, f"consumed {len(batch)} of {TXN_BATCH} input records"
                for records in (await consumer.getmany(timeout_ms=500, max_records=TXN_BATCH - len(batch))).values():
                    batch.extend(records)
            await txn.begin_transaction()
            for m in batch:
                partition, value = txn_transform(m.value)
                await txn.send(t_out, key=m.key, value=value, partition=partition)
            last = batch[-1]
            # aiokafka sends the group id only (TxnOffsetCommit without the member's generation).
            await txn.send_offsets_to_transaction({TopicPartition(t_in, last.partition): last.offset + 1}, g)
            await txn.flush()  # the aborted records, too, reach the log: an abort drops records not yet sent
            if commit:  # while the first transaction is open, its records are above the last stable offset
                open_lso = check_open_lso(await latest_offsets(t_out, TXN_OUTPUT_PARTITIONS, "read_committed"),
                                          await latest_offsets(t_out, TXN_OUTPUT_PARTITIONS, "read_uncommitted"))
            await (txn.commit_transaction() if commit else txn.abort_transaction())
    finally:
        await txn.stop()
        await consumer.stop()
    committed, ends = await read_all(t_out, TXN_OUTPUT_PARTITIONS, "read_committed")
    uncommitted, _ = await read_all(t_out, TXN_OUTPUT_PARTITIONS, "read_uncommitted")
    async with Admin() as admin:
        offsets = await admin.list_consumer_group_offsets(g)
    return f"{check_transactional(committed, uncommitted, ends, offsets[TopicPartition(t_in, 0)].offset)}; {open_lso}"


matrix.finish()
