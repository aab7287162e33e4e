"""kafka-python (a Kafka client nobody here wrote) for flowd's Kafka exporter tests.

  kafka_tool.py create-topic BROKER TOPIC PARTITIONS
  kafka_tool.py consume BROKER TOPIC OUT

`consume` reads every partition of TOPIC from the beginning up to the end offsets it finds
when it starts (failing after 60 s without reaching them) and writes one JSON line per message to OUT: partition, offset, key, the value
in base64, headers, timestamp, and the partition kafka-python's DefaultPartitioner picks for
the key (what a Java or Python producer would have chosen).
"""

import base64
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.partitioner.default import murmur2


def default_partition(key, partitions):
    """What kafka-python's DefaultPartitioner (Kafka's default) picks for a keyed message."""
    return partitions[(murmur2(key) & 0x7fffffff) % len(partitions)] if key is not None else None


def create_topic(broker, topic, partitions):
    admin = KafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=10000)
    admin.create_topics([NewTopic(topic, num_partitions=int(partitions), replication_factor=1)])
    admin.close()


def consume(broker, topic, out):
    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False,
                             request_timeout_ms=30000)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    ids = [p.partition for p in partitions]
    deadline = time.monotonic() + 60
    with open(out, "w", encoding="utf-8") as f:
        while any(consumer.position(p) < end[p] for p in partitions):
            if time.monotonic() > deadline:
                sys.exit("consume: the end offsets %s were not reached: at %s" % (
                    end, {p: consumer.position(p) for p in partitions}))
            for _, messages in consumer.poll(timeout_ms=1000).items():
                for m in messages:
                    f.write(json.dumps({
                        "partition": m.partition,
                        "offset": m.offset,
                        "key": m.key.decode() if m.key is not None else None,
                        "value": base64.b64encode(m.value).decode(),
                        "headers": {k: v.decode() for k, v in (m.headers or [])},
                        "timestamp_ms": m.timestamp,
                        "default_partition": default_partition(m.key, ids),
                    }) + "\n")
    consumer.close()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"create-topic": create_topic, "consume": consume}[command](*args)
