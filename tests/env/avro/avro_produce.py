"""Avro records into Kafka the way Confluent's clients write them.

Run through tests/env/avro-produce, which provisions the venv (confluent-kafka
with its Avro serializer and Schema Registry client) and passes the world's
addresses as defaults.

  avro-produce produce --topic T --schema FILE|JSON [--key-field F] < records.jsonl
  avro-produce register --subject S --schema FILE|JSON      (prints the schema id)
  avro-produce schema-id --subject S --schema FILE|JSON     (id of an already registered schema)

produce serializes each stdin line (a JSON object) with AvroSerializer, which
registers the schema under the topic's value subject (TopicNameStrategy,
`<topic>-value`) unless --no-auto-register, and writes the Confluent wire
format: magic byte 0, the 4-byte big-endian schema id, the Avro binary body.
It prints the schema id on stdout, and exits non-zero when a record cannot be
encoded or any delivery fails.
"""

import argparse
import json
import os
import struct
import sys

from confluent_kafka import KafkaException, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def load_schema(arg):
    """A file path, or the schema's JSON itself."""
    text = arg
    if not arg.lstrip().startswith(("{", "[", '"')):
        with open(arg, encoding="utf-8") as f:
            text = f.read()
    # Parsed here so a typo fails with a clear message before any request.
    json.loads(text)
    return text


def registry(args):
    if not args.registry:
        sys.exit("avro-produce: no registry URL (--registry or MILLRACE_SCHEMA_REGISTRY_URL)")
    return SchemaRegistryClient({"url": args.registry})


def cmd_register(args):
    client = registry(args)
    schema_id = client.register_schema(args.subject, Schema(load_schema(args.schema), "AVRO"))
    print(schema_id)


def cmd_schema_id(args):
    client = registry(args)
    found = client.lookup_schema(args.subject, Schema(load_schema(args.schema), "AVRO"))
    print(found.schema_id)


def cmd_produce(args):
    if not args.bootstrap:
        sys.exit("avro-produce: no bootstrap (--bootstrap or MILLRACE_KAFKA_BOOTSTRAP)")
    client = registry(args)
    serializer = AvroSerializer(
        client,
        load_schema(args.schema),
        conf={"auto.register.schemas": not args.no_auto_register,
              "use.latest.version": args.no_auto_register},
    )
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": args.timeout_ms,
    })
    ctx = SerializationContext(args.topic, MessageField.VALUE)
    failures = []
    schema_id = None

    def on_delivery(err, msg):
        if err is not None:
            failures.append(f"{msg.topic()} partition {msg.partition()}: {err}")

    count = 0
    for lineno, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"avro-produce: line {lineno}: not JSON: {e}")
        key = None
        if args.key_field:
            if args.key_field not in record:
                sys.exit(f"avro-produce: line {lineno}: no key field {args.key_field!r}")
            k = record[args.key_field]
            key = (k if isinstance(k, str) else json.dumps(k)).encode()
        try:
            value = serializer(record, ctx)
        except Exception as e:  # the serializer raises several kinds
            sys.exit(f"avro-produce: line {lineno}: cannot encode: {e}")
        if schema_id is None:
            magic, schema_id = struct.unpack(">bI", value[:5])
            assert magic == 0, "AvroSerializer wrote no Confluent magic byte"
        while True:
            try:
                producer.produce(args.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    left = producer.flush(args.timeout_ms / 1000)
    if left:
        failures.append(f"{left} records not delivered in {args.timeout_ms} ms")
    if failures:
        for f in failures[:10]:
            print(f"avro-produce: delivery failed: {f}", file=sys.stderr)
        sys.exit(1)
    print(f"avro-produce: {count} records to {args.topic} (schema id {schema_id})", file=sys.stderr)
    if schema_id is not None:
        print(schema_id)


def main():
    p = argparse.ArgumentParser(prog="avro-produce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--registry", default=os.environ.get("MILLRACE_SCHEMA_REGISTRY_URL"),
                        help="Confluent-compatible registry base URL "
                             "(default $MILLRACE_SCHEMA_REGISTRY_URL)")
        sp.add_argument("--schema", required=True, help="Avro schema: a file, or its JSON")

    sp = sub.add_parser("produce", help="serialize JSON lines from stdin and produce them")
    common(sp)
    sp.add_argument("--bootstrap", default=os.environ.get("MILLRACE_KAFKA_BOOTSTRAP"),
                    help="plaintext bootstrap servers (default $MILLRACE_KAFKA_BOOTSTRAP)")
    sp.add_argument("--topic", required=True)
    sp.add_argument("--key-field", help="record field whose value is the message key "
                                        "(a string as is, anything else as JSON); "
                                        "it stays in the value")
    sp.add_argument("--no-auto-register", action="store_true",
                    help="use the subject's latest registered version instead of registering")
    sp.add_argument("--timeout-ms", type=int, default=30000)
    sp.set_defaults(func=cmd_produce)

    sp = sub.add_parser("register", help="register a schema under a subject; prints its id")
    common(sp)
    sp.add_argument("--subject", required=True, help="e.g. TOPIC-value")
    sp.set_defaults(func=cmd_register)

    sp = sub.add_parser("schema-id", help="the id of a schema already registered under a subject")
    common(sp)
    sp.add_argument("--subject", required=True)
    sp.set_defaults(func=cmd_schema_id)

    args = p.parse_args()
    try:
        args.func(args)
    except KafkaException as e:
        sys.exit(f"avro-produce: {e}")
    except Exception as e:  # registry errors: print them plainly, no traceback
        sys.exit(f"avro-produce: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
