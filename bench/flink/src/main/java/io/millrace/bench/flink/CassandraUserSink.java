package io.millrace.bench.flink;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.CqlSessionBuilder;
import com.datastax.oss.driver.api.core.DefaultConsistencyLevel;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverConfigLoader;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import com.datastax.oss.driver.api.core.cql.SimpleStatement;
import java.io.IOException;
import java.io.Serializable;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

/**
 * Writes {@link UserRow}s into the example table with the Apache Cassandra
 * Java driver: one CqlSession per parallel writer, one prepared INSERT
 * (LOCAL_QUORUM, idempotent) executed asynchronously, at most
 * {@code maxInFlight / parallelism} writes in flight per writer (a
 * semaphore). Flink calls {@code flush} before every checkpoint barrier and
 * at the end of the input: it waits for every write in flight, so a
 * completed checkpoint means its rows are in Cassandra (at least once).
 * That is how Flink's own Cassandra connector (CassandraSinkBase, for Flink
 * 1.x only) works.
 */
public class CassandraUserSink implements Sink<UserRow> {
    private static final long serialVersionUID = 1L;

    /** Where and what to write; serialized with the job graph. */
    public static final class Config implements Serializable {
        private static final long serialVersionUID = 1L;
        public List<String> contactPoints; // host:port
        public String localDatacenter;
        public String username;
        public String password;
        public String keyspace;
        public String table;
        public int maxInFlight;
        public long requestTimeoutMs;
    }

    private final Config config;

    public CassandraUserSink(Config config) {
        this.config = config;
    }

    @Override
    public SinkWriter<UserRow> createWriter(WriterInitContext context) throws IOException {
        int parallelism = context.getTaskInfo().getNumberOfParallelSubtasks();
        int subtask = context.getTaskInfo().getIndexOfThisSubtask();
        return new Writer(config, Math.max(1, config.maxInFlight / parallelism),
                Progress.subtask(subtask));
    }

    static final class Writer implements SinkWriter<UserRow> {
        private final CqlSession cql;
        private final PreparedStatement insert;
        private final int permits;
        private final Semaphore inFlight;
        private final Progress progress;
        private final AtomicReference<Throwable> failure = new AtomicReference<>();

        Writer(Config c, int permits, Progress progress) {
            this.permits = permits;
            this.inFlight = new Semaphore(permits);
            this.progress = progress;
            DriverConfigLoader loader = DriverConfigLoader.programmaticBuilder()
                    .withString(DefaultDriverOption.REQUEST_CONSISTENCY, "LOCAL_QUORUM")
                    // The driver's default is 2 s, no longer than Cassandra's
                    // own write timeout: on a loaded host a write would fail
                    // the job before Cassandra gave up on it.
                    .withDuration(DefaultDriverOption.REQUEST_TIMEOUT,
                            Duration.ofMillis(c.requestTimeoutMs))
                    .build();
            CqlSessionBuilder builder = CqlSession.builder()
                    .withConfigLoader(loader)
                    .withLocalDatacenter(c.localDatacenter);
            for (String point : c.contactPoints) {
                int colon = point.lastIndexOf(':');
                builder.addContactPoint(colon < 0
                        ? new InetSocketAddress(point, 9042)
                        : new InetSocketAddress(point.substring(0, colon),
                                Integer.parseInt(point.substring(colon + 1))));
            }
            if (c.username != null && !c.username.isEmpty()) {
                builder.withAuthCredentials(c.username, c.password);
            }
            cql = builder.build();
            String statement = String.format(
                    "INSERT INTO \"%s\".\"%s\" (id, first_name, last_name, gender, address, post_code, "
                            + "email, username, registered_date, phone, picture) "
                            + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    c.keyspace.replace("\"", "\"\""), c.table.replace("\"", "\"\""));
            insert = cql.prepare(SimpleStatement.newInstance(statement)
                    .setConsistencyLevel(DefaultConsistencyLevel.LOCAL_QUORUM)
                    .setIdempotent(true));
        }

        @Override
        public void write(UserRow row, Context context) throws IOException, InterruptedException {
            rethrow();
            inFlight.acquire();
            cql.executeAsync(insert.bind(
                            UUID.fromString(row.id), row.firstName, row.lastName, row.gender,
                            row.address, row.postCode, row.email, row.username,
                            row.registeredDate, row.phone, row.picture))
                    .whenComplete((result, error) -> {
                        if (error != null) {
                            failure.compareAndSet(null, error);
                        } else {
                            progress.written();
                        }
                        inFlight.release();
                    });
        }

        @Override
        public void flush(boolean endOfInput) throws IOException, InterruptedException {
            inFlight.acquire(permits);
            inFlight.release(permits);
            rethrow();
        }

        @Override
        public void close() throws Exception {
            try {
                // On cancellation as well: let the writes in flight end
                // before the connections close.
                if (inFlight.tryAcquire(permits, 30, TimeUnit.SECONDS)) {
                    inFlight.release(permits);
                }
            } finally {
                cql.close();
            }
        }

        private void rethrow() throws IOException {
            Throwable error = failure.get();
            if (error != null) {
                throw new IOException("a Cassandra write failed", error);
            }
        }
    }
}
