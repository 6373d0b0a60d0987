package io.millrace.bench.flink;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.runtime.util.EnvironmentInformation;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * Kafka -> Cassandra with Apache Flink, the job a team starting today would
 * write instead of the seed's Spark one, for bench/harness.py (measurement
 * "flink"):
 *
 * <ul>
 *   <li>Kafka source (flink-connector-kafka), values as strings, from the
 *       earliest offsets to the latest ones at start (bounded: the job ends
 *       once the topic is consumed), offsets committed on checkpoints;</li>
 *   <li>a map that parses the JSON with Jackson into the table's columns
 *       ({@link ParseUser});</li>
 *   <li>a Sink V2 writer with the Apache Cassandra Java driver
 *       ({@link CassandraUserSink}): prepared INSERT, LOCAL_QUORUM, async,
 *       at most 256 writes in flight in all;</li>
 *   <li>local execution (a mini cluster in this JVM), parallelism 2,
 *       checkpoints every 5 s (at least once).</li>
 * </ul>
 *
 * At the end it prints one JSON line on stdout: rows written, and the time
 * from the first successful write to the last, across both writers; JVM
 * start to end and the job's own runtime go in "extra". Cassandra's address
 * and credentials come from the test world's MILLRACE_CASSANDRA_* variables.
 *
 * <pre>
 *   java -Xmx1g -jar millrace-flink-bench.jar --bootstrap 127.0.0.1:19092 \
 *       --topic T --group G --keyspace K --table flink_0
 * </pre>
 */
public final class KafkaToCassandra {
    private KafkaToCassandra() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        String bootstrap = required(args, "bootstrap");
        String topic = required(args, "topic");
        String group = args.getOrDefault("group", "millrace-bench-flink");
        int parallelism = Integer.parseInt(args.getOrDefault("parallelism", "2"));
        long checkpointMs = Long.parseLong(args.getOrDefault("checkpoint-interval-ms", "5000"));

        CassandraUserSink.Config cassandra = new CassandraUserSink.Config();
        cassandra.contactPoints = Arrays.asList(
                env("MILLRACE_CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042").split("\\s*,\\s*"));
        cassandra.localDatacenter = env("MILLRACE_CASSANDRA_LOCAL_DC", "datacenter1");
        cassandra.username = env("MILLRACE_CASSANDRA_USERNAME", null);
        cassandra.password = env("MILLRACE_CASSANDRA_PASSWORD", null);
        cassandra.keyspace = required(args, "keyspace");
        cassandra.table = required(args, "table");
        cassandra.maxInFlight = Integer.parseInt(args.getOrDefault("max-in-flight", "256"));
        cassandra.requestTimeoutMs = Long.parseLong(args.getOrDefault("request-timeout-ms", "10000"));

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(parallelism);
        if (checkpointMs > 0) {
            env.enableCheckpointing(checkpointMs);
        }

        KafkaSource<String> source = KafkaSource.<String>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(topic)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setBounded(OffsetsInitializer.latest())
                .setValueOnlyDeserializer(new SimpleStringSchema())
                .build();
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "kafka " + topic)
                .map(new ParseUser())
                .name("parse JSON")
                .sinkTo(new CassandraUserSink(cassandra))
                .name("cassandra " + cassandra.keyspace + "." + cassandra.table);

        long jvmStarted = ManagementFactory.getRuntimeMXBean().getStartTime();
        long submitted = System.currentTimeMillis();
        JobExecutionResult result = env.execute("millrace bench: kafka -> cassandra");
        long finished = System.currentTimeMillis();
        long finishedNanos = System.nanoTime();

        long rows = 0;
        long first = Long.MAX_VALUE;
        long last = Long.MIN_VALUE;
        ObjectMapper json = new ObjectMapper();
        ArrayNode subtasks = json.createArrayNode();
        for (Map.Entry<Integer, Progress> e : Progress.all().entrySet()) {
            Progress p = e.getValue();
            long n = p.rows.get();
            rows += n;
            ObjectNode s = subtasks.addObject().put("subtask", e.getKey()).put("rows", n);
            if (n > 0) {
                first = Math.min(first, p.firstNanos.get());
                last = Math.max(last, p.lastNanos.get());
                s.put("first_to_last_seconds", (p.lastNanos.get() - p.firstNanos.get()) / 1e9);
            }
        }
        double seconds = rows > 0 ? (last - first) / 1e9 : 0.0;
        // Epoch time of the first write, from its offset to now.
        double firstWriteMs = rows > 0 ? finished - (finishedNanos - first) / 1e6 : Double.NaN;

        ObjectNode extra = json.createObjectNode()
                .put("flink_version", EnvironmentInformation.getVersion())
                .put("parallelism", parallelism)
                .put("max_in_flight", cassandra.maxInFlight)
                .put("checkpoint_interval_ms", checkpointMs)
                .put("jvm_start_to_end_seconds", (finished - jvmStarted) / 1e3)
                .put("jvm_start_to_submit_seconds", (submitted - jvmStarted) / 1e3)
                .put("jvm_start_to_first_write_seconds", (firstWriteMs - jvmStarted) / 1e3)
                .put("job_net_runtime_seconds", result.getNetRuntime() / 1e3)
                .put("max_heap_mib", Runtime.getRuntime().maxMemory() / 1048576.0);
        extra.set("subtasks", subtasks);
        ObjectNode out = json.createObjectNode()
                .put("measurement", "flink")
                .put("records", rows)
                .put("seconds", seconds)
                .put("rate", seconds > 0 ? rows / seconds : 0.0)
                .put("note", "seconds = first successful Cassandra write to the last, across the "
                        + parallelism + " writers; JVM start to end in extra");
        out.set("extra", extra);
        System.out.println(json.writeValueAsString(out));
        System.out.flush();
        // Nothing left to wait for; client threads of either library must
        // not hold the JVM.
        System.exit(0);
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value pairs, got " + argv[i]);
            }
            args.put(argv[i].substring(2), argv[++i]);
        }
        return args;
    }

    private static String required(Map<String, String> args, String name) {
        String value = args.get(name);
        if (value == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return value;
    }

    private static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }
}
