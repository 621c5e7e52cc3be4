#!/usr/bin/env node
// Runs kafkajs (pure JavaScript client) against a running brook and prints one matrix line per
// scenario. Usage: node compat/kafkajs/compat.js [bootstrap, default 127.0.0.1:9092]
// Needs `npm ci` in compat/kafkajs (compat/install.sh does it). Exit status: 0 all passed, 1 some
// failed, 2 kafkajs missing or the broker unreachable.
'use strict';

let kafkajs;
try {
  kafkajs = require('kafkajs');
} catch (e) {
  console.error(`kafkajs: not installed (${e.message}); run compat/install.sh`);
  process.exit(2);
}
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes, Partitioners } = kafkajs;
const crypto = require('crypto');

const BOOTSTRAP = process.argv[2] || '127.0.0.1:9092';
const RUN = process.env.COMPAT_RUN_ID || crypto.randomBytes(4).toString('hex');
const CLIENT = 'kafkajs';
const N = 3000;
const KEYS = 11;
const STEP_SECONDS = 120;
const topic = `kafkajs-${RUN}`;
const group = `kafkajs-group-${RUN}`;

// kafkajs logs through this; its errors go to stderr, so the matrix on stdout stays readable.
const kafka = new Kafka({
  clientId: 'brook-compat',
  brokers: [BOOTSTRAP],
  logLevel: logLevel.ERROR,
  retry: { retries: 5 },
  logCreator: () => ({ namespace, log }) => console.error(`[kafkajs ${namespace}] ${log.message}${log.error ? `: ${log.error}` : ''}`),
});

// Message i of a produce-consume run (the same data the Python scripts send, see compat/matrix.py).
function message(i) {
  const big = i % 500 === 499 ? 'y'.repeat(5000) : '';
  return {
    key: Buffer.from(`key-${i % KEYS}`),
    value: Buffer.from(`value-${i}-${'x'.repeat(i % 97)}${big}`),
    headers: { index: Buffer.from(String(i)), run: Buffer.from(RUN) },
  };
}
const indexOf = (value) => Number(value.toString().split('-')[1]);

function assert(condition, what) {
  if (!condition) throw new Error(what);
}

const sameBuffer = (a, b) => (a === null || a === undefined ? b === null : b !== null && Buffer.compare(a, b) === 0);

// Every message 0..n-1 exactly once with its key and headers; per partition, offsets dense from 0 up
// to the high watermark, messages in the order they were sent; a key never spans partitions.
function checkProducedConsumed(records, n, endOffsets) {
  const byPartition = new Map();
  for (const r of records) {
    if (!byPartition.has(r.partition)) byPartition.set(r.partition, []);
    byPartition.get(r.partition).push(r);
  }
  const seen = records.map((r) => indexOf(r.value)).sort((a, b) => a - b);
  assert(seen.length === n && seen.every((v, i) => v === i), `consumed ${records.length} records, ${new Set(seen).size} distinct of ${n}`);
  const keyPartitions = new Map();
  for (const [p, recs] of byPartition) {
    recs.sort((a, b) => a.offset - b.offset);
    assert(recs.every((r, i) => r.offset === i), `partition ${p}: offsets not dense from 0`);
    assert(endOffsets[p] === recs.length, `partition ${p}: high watermark ${endOffsets[p]}, read ${recs.length}`);
    const order = recs.map((r) => indexOf(r.value));
    assert(order.every((v, i) => i === 0 || order[i - 1] < v), `partition ${p}: out of send order`);
    for (const r of recs) {
      const want = message(indexOf(r.value));
      assert(sameBuffer(r.key, want.key) && sameBuffer(r.value, want.value), `partition ${p} offset ${r.offset}: key or value differs`);
      const names = Object.keys(r.headers);
      assert(names.join() === 'index,run' && names.every((h) => sameBuffer(r.headers[h], want.headers[h])),
        `partition ${p} offset ${r.offset}: headers ${JSON.stringify(r.headers)}`);
      const k = r.key.toString();
      if (!keyPartitions.has(k)) keyPartitions.set(k, new Set());
      keyPartitions.get(k).add(p);
    }
  }
  const spread = [...keyPartitions].filter(([, ps]) => ps.size > 1).map(([k]) => k);
  assert(spread.length === 0, `keys in more than one partition: ${spread}`);
  const counts = Object.fromEntries(Object.keys(endOffsets).map((p) => [p, (byPartition.get(Number(p)) || []).length]));
  for (const p of Object.keys(endOffsets)) assert(endOffsets[p] === counts[p], `partition ${p}: data never consumed`);
  return `${n} messages, keys+headers exact, per-partition counts ${JSON.stringify(counts)}`;
}

async function waitFor(what, condition, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} within ${seconds} s`);
}

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

async function endOffsets(admin, t) {
  return Object.fromEntries((await admin.fetchTopicOffsets(t)).map((o) => [o.partition, Number(o.high)]));
}

function producer() {
  // Idempotent (kafkajs wants one request in flight for it).
  return kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
}

async function create(admin, t, numPartitions, configEntries = []) {
  const created = await admin.createTopics({ topics: [{ topic: t, numPartitions, replicationFactor: 1, configEntries }], waitForLeaders: true });
  assert(created === true, `createTopics(${t}) answered ${created}`);
}

const scenarios = [];
const scenario = (name, fn) => scenarios.push({ name, fn });

scenario('admin', () => withAdmin(async (admin) => {
  const t = `${topic}-admin`;
  await create(admin, t, 2, [{ name: 'retention.ms', value: '3600000' }, { name: 'cleanup.policy', value: 'compact' }]);
  assert((await admin.listTopics()).includes(t), 'created topic listed');
  // kafkajs answers false, not an error, when every topic already exists (TOPIC_ALREADY_EXISTS).
  const again = await admin.createTopics({ topics: [{ topic: t, numPartitions: 1 }] });
  assert(again === false, `second create answered ${again}`);
  const md = await admin.fetchTopicMetadata({ topics: [t] });
  assert(JSON.stringify(md.topics[0].partitions.map((p) => p.partitionId).sort()) === '[0,1]', JSON.stringify(md));
  const described = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: t }], includeSynonyms: false });
  const entries = Object.fromEntries(described.resources[0].configEntries.map((e) => [e.configName, e.configValue]));
  assert(entries['retention.ms'] === '3600000' && entries['cleanup.policy'] === 'compact', JSON.stringify(entries));
  await admin.deleteTopics({ topics: [t], timeout: 30000 });
  await waitFor(`${t} gone from the topic list`, async () => !(await admin.listTopics()).includes(t));
  return 'created with configs, TOPIC_ALREADY_EXISTS on the second create, described, deleted';
}));

for (const codec of [null, 'gzip']) {
  scenario(codec ? `produce-consume-${codec}` : 'produce-consume', () => withAdmin(async (admin) => {
    const t = `${topic}-${codec || 'none'}`;
    await create(admin, t, 3);
    const p = producer();
    await p.connect();
    try {
      for (let start = 0; start < N; start += 500) {
        const messages = [];
        for (let i = start; i < Math.min(N, start + 500); i++) messages.push(message(i));
        await p.send({ topic: t, acks: -1, compression: codec ? CompressionTypes.GZIP : CompressionTypes.None, messages });
      }
    } finally {
      await p.disconnect();
    }
    // kafkajs reads only through a consumer group: a fresh group starting from the beginning.
    const consumer = kafka.consumer({ groupId: `${group}-reader-${codec || 'none'}` });
    const records = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [t], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message: m }) => {
          records.push({ partition, offset: Number(m.offset), key: m.key, value: m.value, headers: m.headers });
        },
      });
      await waitFor(`${N} messages consumed`, () => records.length >= N, 60);
    } finally {
      await consumer.disconnect();
    }
    return checkProducedConsumed(records, N, await endOffsets(admin, t));
  }));
}

scenario('consumer-group', () => withAdmin(async (admin) => {
  const t = `${topic}-group`;
  await create(admin, t, 4);
  const assignments = [null, null, null];
  const seen = new Map();
  const last = [new Map(), new Map()]; // member -> partition -> last offset read
  const members = [];
  const member = (index) => {
    const c = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
    c.on(c.events.GROUP_JOIN, (e) => { assignments[index] = e.payload.memberAssignment[t] || []; });
    return c;
  };
  try {
    for (const index of [0, 1]) {
      const c = member(index);
      members.push(c);
      await c.connect();
      await c.subscribe({ topics: [t], fromBeginning: true });
      await c.run({
        autoCommit: false,
        eachMessage: async ({ partition, message: msg }) => {
          const v = msg.value.toString();
          if (!seen.has(v)) seen.set(v, []);
          seen.get(v).push(index);
          last[index].set(partition, Number(msg.offset));
        },
      });
    }
    await waitFor('the two members splitting 4 partitions', () => {
      if (!assignments[0] || !assignments[1]) return false;
      const all = new Set([...assignments[0], ...assignments[1]]);
      return assignments[0].length && assignments[1].length && all.size === 4 && assignments[0].length + assignments[1].length === 4;
    }, 60);
    const split = assignments.slice(0, 2).map((a) => a.length).sort();
    const n = 400;
    const p = producer();
    await p.connect();
    try {
      const messages = [];
      for (let i = 0; i < n; i++) messages.push({ key: `k${i}`, value: `m${i}` });
      await p.send({ topic: t, acks: -1, messages });
    } finally {
      await p.disconnect();
    }
    await waitFor(`${n} distinct messages consumed`, () => seen.size >= n, 60);
    assert(seen.size === n, `consumed ${seen.size} distinct messages of ${n}`);
    assert([...seen.values()].every((v) => v.length === 1), 'a message was consumed twice');
    for (const index of [0, 1]) {
      await members[index].commitOffsets([...last[index]].map(([partition, offset]) => ({ topic: t, partition, offset: String(offset + 1) })));
    }
    for (const c of members.splice(0)) await c.disconnect();
    const ends = await endOffsets(admin, t);
    const q = producer();
    await q.connect();
    try {
      await q.send({ topic: t, acks: -1, messages: Array.from({ length: 10 }, (_, i) => ({ value: `after-${i}` })) });
    } finally {
      await q.disconnect();
    }
    const resumed = member(2);
    members.push(resumed);
    const later = [];
    await resumed.connect();
    await resumed.subscribe({ topics: [t], fromBeginning: true });
    await resumed.run({ autoCommit: false, eachMessage: async ({ message: msg }) => { later.push(msg.value.toString()); } });
    await waitFor('10 messages after the commit', () => later.length >= 10, 60);
    await resumed.disconnect();
    members.pop();
    const want = Array.from({ length: 10 }, (_, i) => `after-${i}`);
    assert(JSON.stringify(later.sort()) === JSON.stringify(want.sort()), `resumed at the wrong place: ${later.slice(0, 5)}`);
    const listed = (await admin.listGroups()).groups.map((g) => g.groupId);
    assert(listed.includes(group), `${group} not listed in ${listed}`);
    const fetched = await admin.fetchOffsets({ groupId: group, topics: [t] });
    const committed = Object.fromEntries(fetched[0].partitions.map((o) => [o.partition, Number(o.offset)]));
    assert(JSON.stringify(committed) === JSON.stringify(ends), `committed ${JSON.stringify(committed)}, log end offsets at the commit ${JSON.stringify(ends)}`);
    assert(Object.values(committed).reduce((a, b) => a + b, 0) === n, `committed offsets add up to ${JSON.stringify(committed)}, not ${n}`);
    return `split ${JSON.stringify(split)}, ${n} messages once each, committed ${JSON.stringify(committed)}, a new member resumed there`;
  } finally {
    for (const c of members) await c.disconnect().catch(() => {});
  }
}));

scenario('describe-all-after-commit', () => withAdmin(async (admin) => {
  const names = await admin.listTopics();
  assert(names.includes(`${topic}-group`) && names.includes('__consumer_offsets'), `topics listed: ${names}`);
  const md = await admin.fetchTopicMetadata(); // all topics
  const led = Object.fromEntries(md.topics.map((x) => [x.name, x.partitions.map((p) => [p.partitionId, p.leader])]));
  assert(JSON.stringify(Object.keys(led).sort()) === JSON.stringify([...names].sort()), `listed ${names}, described ${Object.keys(led)}`);
  const leaderless = Object.entries(led).flatMap(([name, ps]) => ps.filter(([, leader]) => leader === null || leader < 0).map(([p]) => `${name}-${p}`));
  assert(leaderless.length === 0, `${leaderless.length} partitions without a leader, e.g. ${leaderless.slice(0, 3)}`);
  const total = Object.values(led).reduce((a, ps) => a + ps.length, 0);
  const described = (await admin.describeGroups([group])).groups[0];
  assert(described.errorCode === 0 && described.state === 'Empty' && described.protocolType === 'consumer', JSON.stringify(described));
  return `${names.length} topics, ${total} partitions, every one led; group ${described.state}`;
}));

scenario('admin-alter-partitions', () => withAdmin(async (admin) => {
  const t = `${topic}-alter`;
  await create(admin, t, 1, [{ name: 'retention.ms', value: '3600000' }]);
  // kafkajs alters with AlterConfigs (the whole set of dynamic configs for the resource).
  await admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: t, configEntries: [{ name: 'retention.ms', value: '7200000' }, { name: 'cleanup.policy', value: 'compact,delete' }] }] });
  const described = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: t }], includeSynonyms: false });
  const entries = Object.fromEntries(described.resources[0].configEntries.map((e) => [e.configName, e.configValue]));
  assert(entries['retention.ms'] === '7200000' && entries['cleanup.policy'] === 'compact,delete', JSON.stringify(entries));
  await admin.createPartitions({ topicPartitions: [{ topic: t, count: 3 }] });
  let refused = null;
  try {
    await admin.createPartitions({ topicPartitions: [{ topic: t, count: 2 }] });
  } catch (e) {
    refused = e;
  }
  assert(refused && /INVALID_PARTITIONS|partitions/i.test(`${refused.type} ${refused.message}`), `shrinking to 2 partitions: ${refused}`);
  // Keys: a compacted topic refuses records without one (INVALID_RECORD), as Kafka does.
  await waitFor(`${t} showing 3 partitions`, async () => (await admin.fetchTopicMetadata({ topics: [t] })).topics[0].partitions.length === 3);
  const p = producer();
  await p.connect();
  try {
    await p.send({ topic: t, acks: -1, messages: Array.from({ length: 30 }, (_, i) => ({ partition: i % 3, key: `k${i}`, value: `v${i}` })) });
  } finally {
    await p.disconnect();
  }
  const ends = await endOffsets(admin, t);
  assert(JSON.stringify(ends) === '{"0":10,"1":10,"2":10}', `high watermarks ${JSON.stringify(ends)}`);
  await admin.deleteTopicRecords({ topic: t, partitions: [{ partition: 2, offset: '4' }] });
  const low = (await admin.fetchTopicOffsets(t)).find((o) => o.partition === 2).low;
  assert(Number(low) === 4, `low watermark after DeleteRecords: ${low}`);
  await admin.deleteTopics({ topics: [t], timeout: 30000 });
  return `altered, 1 -> 3 partitions, offsets ${JSON.stringify(ends)}, records deleted up to 4`;
}));

// The idempotent scenario (compat/matrix.py holds the Python twin): message i goes to partition i % 2 and
// must land at offset i / 2, once.
const IDEMPOTENT_N = 2000;
const IDEMPOTENT_PARTITIONS = 2;
const idempotentMessage = (i) => `idem-${i}-${'z'.repeat(i % 53)}`;

// The transactional scenario: 20 input records, consumed 10 per transaction; input `in-<i>` becomes
// `out-<i>` in output partition i % 2. The first transaction commits, the second aborts.
const TXN_BATCH = 10;
const TXN_INPUT = 2 * TXN_BATCH;
const TXN_OUTPUT_PARTITIONS = 2;
const txnTransform = (value) => {
  const i = Number(value.toString().split('-')[1]);
  return { partition: i % TXN_OUTPUT_PARTITIONS, value: `out-${i}` };
};
const tuples = (records) => records.map((r) => `${r.partition}:${r.offset}:${r.value}`).sort();

// Reads `t` from the start with a fresh group until every partition's consumed position (the last raw
// offset of a batch, aborted records and markers included, + 1) reaches its end offset:
// [{partition, offset, value}].
async function readAll(t, ends, readUncommitted) {
  const consumer = kafka.consumer({ groupId: `${group}-read-${t}-${readUncommitted ? 'uncommitted' : 'committed'}`, readUncommitted, maxWaitTimeInMs: 200 });
  const position = {};
  const out = [];
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    position[payload.partition] = Math.max(position[payload.partition] || 0, Number(payload.lastOffset) + 1);
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [t], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message: m }) => { out.push({ partition, offset: Number(m.offset), value: m.value.toString() }); },
    });
    await waitFor(`${readUncommitted ? 'read_uncommitted' : 'read_committed'} reading ${t} to ${JSON.stringify(ends)}`,
      () => Object.entries(ends).every(([p, end]) => (position[p] || 0) >= end), 60);
    return out;
  } finally {
    await consumer.disconnect();
  }
}

scenario('idempotent', () => withAdmin(async (admin) => {
  const t = `${topic}-idempotent`;
  await create(admin, t, IDEMPOTENT_PARTITIONS);
  // kafkajs reports the producer id InitProducerId assigned only in its debug log: a client of its own
  // captures that line and passes errors on as the main one does.
  const assigned = [];
  const logged = new Kafka({
    clientId: 'brook-compat-idempotent',
    brokers: [BOOTSTRAP],
    logLevel: logLevel.DEBUG,
    logCreator: () => ({ namespace, level, log }) => {
      if (log.message === 'Initialized producer id & epoch') assigned.push({ producerId: log.producerId, producerEpoch: log.producerEpoch });
      else if (level <= logLevel.ERROR) console.error(`[kafkajs ${namespace}] ${log.message}${log.error ? `: ${log.error}` : ''}`);
    },
  });
  const p = logged.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await p.connect();
  try {
    for (let start = 0; start < IDEMPOTENT_N; start += 100) {
      const messages = [];
      for (let i = start; i < Math.min(IDEMPOTENT_N, start + 100); i++) messages.push({ partition: i % IDEMPOTENT_PARTITIONS, value: idempotentMessage(i) });
      await p.send({ topic: t, acks: -1, messages });
    }
  } finally {
    await p.disconnect();
  }
  assert(assigned.length === 1 && assigned[0].producerId >= 0 && assigned[0].producerEpoch === 0, `producer ids assigned: ${JSON.stringify(assigned)}`);
  const ends = await endOffsets(admin, t);
  const want = {};
  for (let q = 0; q < IDEMPOTENT_PARTITIONS; q++) want[q] = Math.ceil((IDEMPOTENT_N - q) / IDEMPOTENT_PARTITIONS);
  assert(JSON.stringify(ends) === JSON.stringify(want), `high watermarks ${JSON.stringify(ends)}, expected ${JSON.stringify(want)}`);
  const records = await readAll(t, ends, true);
  const expected = Array.from({ length: IDEMPOTENT_N }, (_, i) => ({ partition: i % IDEMPOTENT_PARTITIONS, offset: Math.floor(i / IDEMPOTENT_PARTITIONS), value: idempotentMessage(i) }));
  const got = tuples(records);
  const missing = tuples(expected).filter((x) => !got.includes(x));
  assert(JSON.stringify(got) === JSON.stringify(tuples(expected)), `read ${records.length} records of ${IDEMPOTENT_N}; e.g. missing or moved: ${missing.slice(0, 3)}`);
  return `${IDEMPOTENT_N} messages once each, each at its send position in partitions ${JSON.stringify(Object.keys(ends))}; producer id ${assigned[0].producerId} epoch ${assigned[0].producerEpoch}`;
}));

scenario('transactional', () => withAdmin(async (admin) => {
  const tIn = `${topic}-txn-in`;
  const tOut = `${topic}-txn-out`;
  const g = `${group}-txn`;
  await create(admin, tIn, 1);
  await create(admin, tOut, TXN_OUTPUT_PARTITIONS);
  const p = producer();
  await p.connect();
  try {
    await p.send({ topic: tIn, acks: -1, messages: Array.from({ length: TXN_INPUT }, (_, i) => ({ key: `k${i}`, value: `in-${i}` })) });
  } finally {
    await p.disconnect();
  }

  // kafkajs consumes only through run(): the member buffers the input, and each transaction takes the
  // next TXN_BATCH records from it while the member stays in the group.
  const input = [];
  let openLso = null;
  const consumer = kafka.consumer({ groupId: g, maxWaitTimeInMs: 200 }); // read_committed by default
  const txnProducer = kafka.producer({ transactionalId: `${topic}-txn`, idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await consumer.connect();
  await txnProducer.connect(); // InitProducerId
  try {
    await consumer.subscribe({ topics: [tIn], fromBeginning: true });
    await consumer.run({ autoCommit: false, eachMessage: async ({ partition, message: m }) => { input.push({ partition, offset: Number(m.offset), key: m.key, value: m.value }); } });
    for (const commit of [true, false]) {
      await waitFor(`${TXN_BATCH} more input records`, () => input.length >= TXN_BATCH, 60);
      const batch = input.splice(0, TXN_BATCH);
      const txn = await txnProducer.transaction();
      try {
        await txn.send({ topic: tOut, acks: -1, messages: batch.map((m) => ({ key: m.key, ...txnTransform(m.value) })) });
        const last = batch[batch.length - 1];
        await txn.sendOffsets({ consumerGroupId: g, topics: [{ topic: tIn, partitions: [{ partition: last.partition, offset: String(last.offset + 1) }] }] });
      } catch (e) {
        await txn.abort();
        throw e;
      }
      if (commit) {
        // While the first transaction is open its records are in the log (send waited for the acks) but
        // above the last stable offset, which the admin's ListOffsets (read_committed in kafkajs) answers.
        openLso = await endOffsets(admin, tOut);
        const zero = Object.fromEntries(Array.from({ length: TXN_OUTPUT_PARTITIONS }, (_, q) => [q, 0]));
        assert(JSON.stringify(openLso) === JSON.stringify(zero), `ListOffsets read_committed ${JSON.stringify(openLso)} during the open transaction, expected ${JSON.stringify(zero)}`);
      }
      await (commit ? txn.commit() : txn.abort());
    }
  } finally {
    await txnProducer.disconnect();
    await consumer.disconnect();
  }
  const ends = await endOffsets(admin, tOut);
  const per = TXN_BATCH / TXN_OUTPUT_PARTITIONS;
  const wantEnds = Object.fromEntries(Array.from({ length: TXN_OUTPUT_PARTITIONS }, (_, q) => [q, 2 * per + 2]));
  assert(JSON.stringify(ends) === JSON.stringify(wantEnds), `high watermarks ${JSON.stringify(ends)}, expected ${JSON.stringify(wantEnds)} (records and two markers)`);
  // Two fresh groups, read at once (each join waits out the group's initial rebalance delay).
  const [committed, uncommitted] = await Promise.all([readAll(tOut, ends, false), readAll(tOut, ends, true)]);
  const wantCommitted = [];
  const wantAll = [];
  for (let i = 0; i < TXN_INPUT; i++) {
    const { partition, value } = txnTransform(Buffer.from(`in-${i}`));
    const offset = Math.floor((i % TXN_BATCH) / TXN_OUTPUT_PARTITIONS) + (i < TXN_BATCH ? 0 : per + 1); // past the COMMIT marker
    if (i < TXN_BATCH) wantCommitted.push({ partition, offset, value });
    wantAll.push({ partition, offset, value });
  }
  assert(JSON.stringify(tuples(committed)) === JSON.stringify(tuples(wantCommitted)), `read_committed saw ${tuples(committed)}, expected ${tuples(wantCommitted)}`);
  assert(JSON.stringify(tuples(uncommitted)) === JSON.stringify(tuples(wantAll)), `read_uncommitted saw ${tuples(uncommitted)}, expected ${tuples(wantAll)}`);
  const fetched = await admin.fetchOffsets({ groupId: g, topics: [tIn] });
  const groupOffset = Number(fetched[0].partitions.find((o) => o.partition === 0).offset);
  assert(groupOffset === TXN_BATCH, `the group committed input offset ${groupOffset}, expected ${TXN_BATCH}`);
  return `read_committed: the committed transaction's ${committed.length} records only (read_uncommitted ${uncommitted.length}, markers at [${per}, ${2 * per + 1}]); group offset ${groupOffset}; last stable offset ${JSON.stringify(openLso)} while open`;
}));

function bounded(promise, seconds) {
  let timer;
  const expiry = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no outcome within ${seconds} s`)), seconds * 1000); });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

// A TCP connect only: kafkajs' own errors past this point are scenario failures, not "unreachable".
function reachable() {
  const [host, port] = [BOOTSTRAP.slice(0, BOOTSTRAP.lastIndexOf(':')), Number(BOOTSTRAP.slice(BOOTSTRAP.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const socket = require('net').connect({ host, port }, () => { socket.end(); resolve(); });
    socket.on('error', reject);
  });
}

async function main() {
  console.log(`${CLIENT}: kafkajs ${require('kafkajs/package.json').version} against ${BOOTSTRAP}`);
  try {
    await bounded(reachable(), 15);
  } catch (e) {
    console.error(`${CLIENT}: broker at ${BOOTSTRAP} unreachable: ${e.message}`);
    process.exit(2);
  }
  let passed = 0;
  for (const { name, fn } of scenarios) {
    let status = 'PASS';
    let detail;
    try {
      detail = await bounded(fn(), STEP_SECONDS);
      passed += 1;
    } catch (e) {
      status = 'FAIL';
      detail = `${e.name}: ${e.message}`;
    }
    console.log(`${CLIENT.padEnd(16)} ${name.padEnd(28)} ${status}  ${detail || ''}`);
  }
  console.log(`${CLIENT}: ${passed}/${scenarios.length} scenarios passed against ${BOOTSTRAP}`);
  process.exit(passed === scenarios.length ? 0 : 1);
}

main();
