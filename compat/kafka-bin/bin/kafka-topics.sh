#!/usr/bin/env python3
"""Stand-in for Apache Kafka's bin/kafka-topics.sh, through the Admin API (kafka-python 3.0.12).

librdkafka's regression suite shells out to "$KAFKA_PATH/bin/kafka-topics.sh" (0045, 0052, ...);
compat/librdkafka.sh points KAFKA_PATH at compat/kafka-bin. Supports what the suite calls:
--create/--delete/--alter/--describe/--list with --topic, --partitions, --replication-factor,
--config k=v (repeatable), --if-exists/--if-not-exists and --bootstrap-server.
Exit status: 0 success, 1 the broker refused the request (error printed), 2 bad usage.
"""

import argparse
import sys

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError


def parse_args(argv):
    p = argparse.ArgumentParser(prog="kafka-topics.sh", description=__doc__.splitlines()[0])
    action = p.add_mutually_exclusive_group(required=True)
    for name in ("create", "delete", "alter", "describe", "list"):
        action.add_argument(f"--{name}", action="store_true")
    p.add_argument("--bootstrap-server", required=True)
    p.add_argument("--topic")
    p.add_argument("--partitions", type=int)
    p.add_argument("--replication-factor", type=int)
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--if-exists", action="store_true")
    p.add_argument("--if-not-exists", action="store_true")
    args = p.parse_args(argv)
    if (args.create or args.delete or args.alter) and not args.topic:
        p.error("--topic is required with --create, --delete and --alter")
    if args.alter and args.partitions is None:
        p.error("--alter needs --partitions (Kafka 4's kafka-topics.sh alters configs no more)")
    return args


def parse_configs(pairs):
    configs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"kafka-topics.sh: bad --config '{pair}', expected KEY=VALUE")
        configs[key] = value
    return configs


def describe(admin, topics):
    for topic in admin.describe_topics(topics):
        name = topic["name"]
        code = topic["error_code"]
        if code:
            print(f"Error describing topic {name}: error code {code}", file=sys.stderr)
            return 1
        partitions = sorted(topic["partitions"], key=lambda p: p["partition_index"])
        replication = len(partitions[0]["replica_nodes"]) if partitions else 0
        resource = ConfigResource(ConfigResourceType.TOPIC, name)
        # Only the topic's overrides, as kafka-topics.sh shows them.
        overrides = admin.describe_configs([resource]).get("topic", {}).get(name, {})
        configs = [f"{key}={entry.get('value')}" for key, entry in sorted(overrides.items())]
        print(
            f"Topic: {name}\tPartitionCount: {len(partitions)}\t"
            f"ReplicationFactor: {replication}\tConfigs: {','.join(configs)}"
        )
        for p in partitions:
            print(
                f"\tTopic: {name}\tPartition: {p['partition_index']}\tLeader: {p['leader_id']}\t"
                f"Replicas: {','.join(map(str, p['replica_nodes']))}\t"
                f"Isr: {','.join(map(str, p['isr_nodes']))}"
            )
    return 0


def run(args):
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap_server, client_id="kafka-topics-standin")
    try:
        if args.list:
            for name in sorted(admin.list_topics()):
                print(name)
            return 0
        if args.describe:
            topics = [args.topic] if args.topic else sorted(admin.list_topics())
            return describe(admin, topics)
        if args.create:
            topic = NewTopic(
                args.topic,
                num_partitions=args.partitions if args.partitions is not None else -1,
                replication_factor=args.replication_factor if args.replication_factor is not None else -1,
                topic_configs=parse_configs(args.config),
            )
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                if args.if_not_exists:
                    return 0
                raise
            print(f"Created topic {args.topic}.")
            return 0
        if args.delete:
            try:
                admin.delete_topics([args.topic])
            except UnknownTopicOrPartitionError:
                if args.if_exists:
                    return 0
                raise
            return 0
        # --alter --partitions N
        admin.create_partitions({args.topic: NewPartitions(total_count=args.partitions)})
        return 0
    finally:
        admin.close()


def main():
    args = parse_args(sys.argv[1:])
    try:
        return run(args)
    except KafkaError as e:
        print(f"Error while executing topic command : {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
