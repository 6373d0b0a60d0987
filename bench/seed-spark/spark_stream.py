"""The seed's Spark Structured Streaming job, re-written for the benchmark.

The seed's spark_stream.py read the Kafka topic `users_created`, parsed each
value with `from_json` and a schema of the reshaped fields, and wrote the
rows to Cassandra `spark_streams.created_users` with the
spark-cassandra-connector. Its producer had already reshaped the
randomuser.me results; here the topic holds the raw API records (as
millrace's does), so the same column mapping as examples/randomuser.yaml is
applied in Spark SQL: the parse-and-write logic of the seed plus the
reshaping its producer did, nothing else.

Differences from the seed, all so that it can be measured:
- the Kafka topic, keyspace and table names come from the command line;
- `trigger(availableNow=True)` processes what the topic holds, then stops
  (the seed ran forever);
- a fresh checkpoint directory per run (startingOffsets=earliest);
- at the end one JSON line with the rows and Spark's own timings is printed
  for bench/harness.py.

Everything else is the connector's defaults, as in the seed (its default
output consistency is LOCAL_QUORUM, the runner's too).

    spark-submit --master local[2] --jars <kafka source + connector jars> \\
        spark_stream.py --bootstrap 127.0.0.1:19092 --topic T \\
        --keyspace K --table created_users --checkpoint DIR
"""

import argparse
import json
import os
import time

from pyspark.sql import SparkSession
from pyspark.sql.functions import col, concat_ws, concat, from_json, lit
from pyspark.sql.types import StringType, StructField, StructType


def record_schema():
    """The fields of a randomuser.me result that the table's columns use.

    Every leaf is a string, as the seed's schema was: Spark's JSON reader
    renders a number (street number, a numeric postcode) as its text, so
    the API's number-or-string postcode needs no special case.
    """
    s = lambda *names: [StructField(n, StringType(), True) for n in names]  # noqa: E731
    return StructType(
        s("gender", "email", "phone")
        + [
            StructField("name", StructType(s("first", "last")), True),
            StructField(
                "location",
                StructType(
                    [StructField("street", StructType(s("number", "name")), True)]
                    + s("city", "state", "country", "postcode")
                ),
                True,
            ),
            StructField("login", StructType(s("uuid", "username")), True),
            StructField("registered", StructType(s("date")), True),
            StructField("picture", StructType(s("medium")), True),
        ]
    )


def rows(kafka_df):
    """Kafka values -> the table's columns (examples/randomuser.yaml)."""
    data = kafka_df.selectExpr("CAST(value AS STRING) AS value").select(
        from_json(col("value"), record_schema()).alias("u")
    )
    u = lambda path: col("u." + path)  # noqa: E731
    return data.select(
        # The connector converts the uuid's text to the uuid column.
        u("login.uuid").alias("id"),
        u("name.first").alias("first_name"),
        u("name.last").alias("last_name"),
        u("gender").alias("gender"),
        # "{number} {name}, {city}, {state}, {country}", as the seed's
        # producer joined them.
        concat(
            concat_ws(" ", u("location.street.number"), u("location.street.name")),
            lit(", "),
            concat_ws(", ", u("location.city"), u("location.state"), u("location.country")),
        ).alias("address"),
        u("location.postcode").alias("post_code"),
        u("email").alias("email"),
        u("login.username").alias("username"),
        u("registered.date").cast("timestamp").alias("registered_date"),
        u("phone").alias("phone"),
        u("picture.medium").alias("picture"),
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--keyspace", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--checkpoint", required=True)
    a = p.parse_args()

    started = time.time()
    contact = os.environ.get("MILLRACE_CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042").split(",")[0]
    host, _, port = contact.rpartition(":")
    builder = (
        SparkSession.builder.appName("SparkDataStreaming")
        .config("spark.cassandra.connection.host", host or contact)
        .config("spark.cassandra.connection.port", port or "9042")
        .config("spark.cassandra.connection.localDC", os.environ.get("MILLRACE_CASSANDRA_LOCAL_DC", "datacenter1"))
        .config("spark.ui.enabled", "false")
    )
    if os.environ.get("MILLRACE_CASSANDRA_USERNAME"):
        builder = builder.config(
            "spark.cassandra.auth.username", os.environ["MILLRACE_CASSANDRA_USERNAME"]
        ).config("spark.cassandra.auth.password", os.environ["MILLRACE_CASSANDRA_PASSWORD"])
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    session_ready = time.time()

    kafka_df = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", a.bootstrap)
        .option("subscribe", a.topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    query = (
        rows(kafka_df)
        .writeStream.format("org.apache.spark.sql.cassandra")
        .option("checkpointLocation", a.checkpoint)
        .option("keyspace", a.keyspace)
        .option("table", a.table)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    finished = time.time()

    progress = [p for p in query.recentProgress if p.get("numInputRows", 0) > 0]
    rows_in = sum(p["numInputRows"] for p in progress)
    # Spark's own time for the batches that carried rows: read, parse and
    # write, without the session start and query planning.
    batch_ms = sum(p["durationMs"].get("triggerExecution", 0) for p in progress)
    print(
        json.dumps(
            {
                "measurement": "seed-spark",
                "records": rows_in,
                "seconds": batch_ms / 1000.0,
                "rate": rows_in / (batch_ms / 1000.0) if batch_ms else 0.0,
                "note": "seconds = Spark's triggerExecution of the batches with rows",
                "extra": {
                    "batches": len(progress),
                    "session_start_seconds": session_ready - started,
                    "wall_seconds": finished - started,
                },
            }
        ),
        flush=True,
    )
    spark.stop()


if __name__ == "__main__":
    main()
