package io.millrace.bench.flink;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Rows written by each parallel writer, with the times of its first and last
 * successful write: what the benchmark times. The job runs in a local mini
 * cluster, one JVM, whose user code is loaded by the application class
 * loader, so the writers and main() share these statics. Not something a
 * production job would have; it is only the measurement.
 */
final class Progress {
    private static final Map<Integer, Progress> SUBTASKS = new ConcurrentHashMap<>();

    final AtomicLong rows = new AtomicLong();
    final AtomicLong firstNanos = new AtomicLong(Long.MAX_VALUE);
    final AtomicLong lastNanos = new AtomicLong(Long.MIN_VALUE);

    static Progress subtask(int index) {
        return SUBTASKS.computeIfAbsent(index, i -> new Progress());
    }

    static Map<Integer, Progress> all() {
        return new TreeMap<>(SUBTASKS);
    }

    void written() {
        long now = System.nanoTime();
        rows.incrementAndGet();
        firstNanos.accumulateAndGet(now, Math::min);
        lastNanos.accumulateAndGet(now, Math::max);
    }
}
