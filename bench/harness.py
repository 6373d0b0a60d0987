#!/usr/bin/env python3
"""millrace benchmark driver: runs every measurement side by side, several
times, on one pre-filled topic, and writes bench/REPORT.md.

Called by bench/run (which checks the test world and builds what is needed);
standard library only, so it runs under any Python 3.9+ (the Spark
measurement runs spark-submit from the bench venv, see bench/lib/spark.sh;
the Flink one `java -jar` of the job bench/lib/flink.sh builds).

Adding a measurement: write one function `def m_<name>(ctx, rep) -> dict`
returning at least {"records": n, "seconds": s} (the timed part), usually by
`ctx.run([...])`, which also samples the process tree's peak RSS; register it
in MEASUREMENTS with a label and a description. Return `pending("why")` while
it cannot run yet: the report then shows a marked placeholder.

Environment (all optional):
  BENCH_RECORDS   records in the pre-filled topic          (200000)
  BENCH_REPS      repetitions of every measurement           (4)
  BENCH_PARTITIONS partitions of the topic (the example's)   (3)
  BENCH_ONLY      comma-separated measurement names to run  (all)
  BENCH_SPARK=0, BENCH_FLINK=0  leave out the Spark or the Flink baseline
  BENCH_FLINK_HEAP  the Flink job's -Xmx                      (1g)
  BENCH_KEEP=1    keep the topic and keyspace afterwards
  BENCH_WARMUP=0  skip the untimed CQL pass that warms Cassandra up first
  BENCH_SETTLE_IDLE, BENCH_SETTLE_TIMEOUT  when Kafka and Cassandra count as idle (0.15 of a core; at most 120 s)
"""

import functools
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
HOME = Path(os.environ.get("MILLRACE_HOME", Path.home() / ".cache/millrace"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", HOME / "cargo-target")) / "release"
WORK = HOME / "bench"


# ------------------------------------------------------------ processes ---


def _children_map():
    """ppid -> [pid] for every process (one /proc scan)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            # The command may hold spaces or parentheses: fields start after the last ')'.
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples a process tree every `interval` s: the peak of the tree's
    summed VmRSS (what the measurement costs the machine) and the largest
    VmHWM of any one process in it (the kernel's own high-water mark, which
    catches peaks between samples)."""

    def __init__(self, pid, interval=0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_tree_kb = 0
        self.peak_process_kb = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            kids = _children_map()
            tree, todo = [], [self.pid]
            while todo:
                p = todo.pop()
                tree.append(p)
                todo.extend(kids.get(p, []))
            self.peak_tree_kb = max(self.peak_tree_kb, sum(_status_kb(p, "VmRSS") for p in tree))
            self.peak_process_kb = max(
                [self.peak_process_kb] + [_status_kb(p, "VmHWM") for p in tree]
            )
            self.stop.wait(self.interval)


class LoadSampler(threading.Thread):
    """/proc/loadavg every 10 s through the run: the machine is shared, so
    the report says how busy it was while the figures were taken."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            except (OSError, ValueError):
                pass
            self.stop.wait(10)

    def summary(self):
        if not self.samples:
            return {}
        return {"min": min(self.samples), "median": statistics.median(self.samples),
                "max": max(self.samples), "n": len(self.samples)}


# ------------------------------------------------------------ settling ---

WORLD = Path(os.environ.get("MILLRACE_WORLD", HOME / "world"))
# A server counts as idle below this share of one core, over two samples
# of SETTLE_SAMPLE_S in a row.
SETTLE_IDLE = float(os.environ.get("BENCH_SETTLE_IDLE", "0.15"))
SETTLE_SAMPLE_S = 1.0
SETTLE_TIMEOUT_S = float(os.environ.get("BENCH_SETTLE_TIMEOUT", "120"))


def _tree_cpu_seconds(pid, kids):
    """User plus system CPU of a process and its descendants."""
    ticks, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                # Fields after the command's closing ')': state is 0, utime 11, stime 12.
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
        todo.extend(kids.get(p, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def _world_pid(name):
    try:
        return int((WORLD / "pids" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def settle():
    """Waits until the world's Cassandra and Kafka are idle, and returns
    the seconds waited and the busiest share of a core last seen.

    Every measurement writes a few hundred MB: Cassandra goes on flushing
    memtables and compacting (one compactor) for seconds after the writer
    has finished, and whichever measurement runs next would pay for it.
    Starting each one on idle servers keeps that cost out of the ratios."""
    pids = {n: p for n in ("cassandra", "kafka") if (p := _world_pid(n))}
    if not pids:
        return {"settle_s": 0.0, "settle_busy": None}
    started = time.time()
    kids = _children_map()
    last = {n: _tree_cpu_seconds(p, kids) for n, p in pids.items()}
    last_t, quiet, busy = time.time(), 0, None
    while time.time() - started < SETTLE_TIMEOUT_S:
        time.sleep(SETTLE_SAMPLE_S)
        kids = _children_map()
        now = {n: _tree_cpu_seconds(p, kids) for n, p in pids.items()}
        t = time.time()
        busy = max((now[n] - last[n]) / (t - last_t) for n in pids)
        last, last_t = now, t
        quiet = quiet + 1 if busy < SETTLE_IDLE else 0
        if quiet >= 2:
            break
    else:
        print(f"bench: servers still busy ({busy:.2f} of a core) after {SETTLE_TIMEOUT_S:.0f} s; "
              "measuring anyway", flush=True)
    return {"settle_s": time.time() - started, "settle_busy": busy}


class Ctx:
    def __init__(self):
        self.records = int(os.environ.get("BENCH_RECORDS", "200000"))
        self.reps = int(os.environ.get("BENCH_REPS", "4"))
        self.partitions = int(os.environ.get("BENCH_PARTITIONS", "3"))
        self.run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self.topic = f"millrace_bench_{self.run_id}"
        self.keyspace = f"millrace_bench_{self.run_id}"
        self.commands = {}  # measurement -> the first command line it ran
        self.groups = []  # consumer groups measurements left in Kafka
        self.topics = []  # topics measurements created beside the pre-filled one
        self.log = WORK / "logs" / self.run_id
        self.log.mkdir(parents=True, exist_ok=True)

    def tool(self, name):
        return str(TARGET / name)

    def run(self, name, argv, env=None, timeout=1800):
        """Runs argv, samples its RSS; returns its last stdout JSON line plus
        wall seconds and peak RSS (MiB). stderr goes to the run's log dir."""
        self.commands.setdefault(name, (env or {}, argv))
        errlog = self.log / f"{name}.stderr"
        started = time.time()
        with open(errlog, "ab") as err:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, env={**os.environ, **(env or {})}
            )
            sampler = RssSampler(proc.pid)
            sampler.start()
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
            try:
                out = proc.stdout.read()
                # wait4, not wait: the kernel's exact peak RSS of the process
                # itself (ru_maxrss, KiB), which 100 ms samples can miss in a
                # short run.
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            finally:
                killer.cancel()
                sampler.stop.set()
                sampler.join()
        wall = time.time() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{name} exited {proc.returncode}; see {errlog}")
        lines = [l for l in out.decode().splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError(f"{name} printed no result; see {errlog}")
        result = json.loads(lines[-1])
        result["wall_seconds"] = wall
        # The tree's sampled peak (for Spark: JVM and python driver) or the
        # main process's exact peak, whichever is larger.
        result["peak_rss_mib"] = max(sampler.peak_tree_kb, usage.ru_maxrss) / 1024
        result["maxrss_main_mib"] = usage.ru_maxrss / 1024
        # CPU the measured process itself used (not Kafka's or Cassandra's):
        # with wall time, it tells whether the client or the server limits.
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        result["peak_tree_sampled_mib"] = sampler.peak_tree_kb / 1024
        result["peak_process_hwm_mib"] = sampler.peak_process_kb / 1024
        return result

    def bench_tool(self, *args):
        out = subprocess.run(
            [self.tool("bench-tool"), *args], check=True, capture_output=True, text=True
        )
        return out.stdout.strip()


def pending(why):
    return {"pending": why}


# --------------------------------------------------------- measurements ---


def m_kafka_produce_ceiling(ctx, rep):
    return ctx.run(
        "kafka-produce-ceiling",
        [ctx.tool("kafka-produce-ceiling"), "--topic", ctx.topic + "_produce",
         "--records", str(ctx.records), "--seed", str(100 + rep)],
    )


def m_kafka_ceiling(ctx, rep):
    return ctx.run("kafka-ceiling", [ctx.tool("kafka-ceiling"), "--topic", ctx.topic])


def m_kafka_ceiling_map(ctx, rep):
    return ctx.run("kafka-ceiling-map", [ctx.tool("kafka-ceiling"), "--topic", ctx.topic, "--map"])


def _checked(ctx, result, table, expected=None):
    """Adds the table's row count; a measurement that lost rows is void.
    The table is dropped once counted (unless BENCH_KEEP=1), so its
    memtables and compactions do not weigh on the measurements after it."""
    expected = ctx.records if expected is None else expected
    rows = int(ctx.bench_tool("count", ctx.keyspace, table))
    result["rows_in_table"] = rows
    if rows != expected:
        raise RuntimeError(f"{table}: {rows} rows, expected {expected}")
    if os.environ.get("BENCH_KEEP") != "1":
        ctx.bench_tool("drop-table", ctx.keyspace, table)
    return result


def m_cql_ceiling(ctx, rep):
    table = f"cql_ceiling_{rep}"
    r = ctx.run(
        "cql-ceiling",
        [ctx.tool("cql-ceiling"), "--topic", ctx.topic, "--keyspace", ctx.keyspace,
         "--table", table, "--concurrency", "256"],
    )
    r["cpu_seconds_timed"] = r.get("extra", {}).get("cpu_seconds_timed")
    return _checked(ctx, r, table)


def _cql_clustering(ctx, rep, mode):
    """Single inserts or unlogged single-partition batches into a clustering
    table (bench/src/bin/cql-clustering.rs): whether batching the rows of
    one partition would help a sink."""
    table = f"cql_clustering_{mode}_{rep}"
    r = ctx.run(
        f"cql-clustering-{mode}",
        [ctx.tool("cql-clustering"), "--keyspace", ctx.keyspace, "--table", table,
         "--mode", mode, "--rows", str(ctx.records), "--rows-per-partition", str(CLUSTERING_ROWS),
         "--in-flight", "256", "--seed", str(500 + rep)],
    )
    r["cpu_seconds_timed"] = r.get("extra", {}).get("cpu_seconds_timed")
    return _checked(ctx, r, table)


def m_cql_clustering_single(ctx, rep):
    return _cql_clustering(ctx, rep, "single")


def m_cql_clustering_batched(ctx, rep):
    return _cql_clustering(ctx, rep, "batched")


def m_seed_spark(ctx, rep):
    submit = WORK / "venv/bin/spark-submit"
    jars_file = WORK / "spark-jars.txt"
    if not submit.exists() or not jars_file.exists():
        return pending("pyspark or the connector jars are missing: run bench/lib/spark.sh")
    table = f"spark_{rep}"
    # The table as the operator would create it (uuid and timestamp columns);
    # the connector converts the job's strings to them.
    ctx.bench_tool("create-table", ctx.keyspace, table)
    venv = WORK / "venv/bin"
    # spark-submit finds Spark's home and runs the driver with `python3` from
    # PATH: point both at the venv that holds pyspark.
    env = {
        "PATH": f"{venv}:{os.environ['PATH']}",
        "PYSPARK_PYTHON": str(venv / "python"),
        "PYSPARK_DRIVER_PYTHON": str(venv / "python"),
    }
    r = ctx.run(
        "seed-spark",
        [str(submit), "--master", "local[2]", "--jars", jars_file.read_text().strip(),
         str(BENCH / "seed-spark/spark_stream.py"),
         "--bootstrap", os.environ["MILLRACE_KAFKA_BOOTSTRAP"], "--topic", ctx.topic,
         "--keyspace", ctx.keyspace, "--table", table,
         "--checkpoint", str(ctx.log / f"spark-checkpoint-{rep}")],
        env=env,
    )
    return _checked(ctx, r, table)


# The Flink job's heap. `java -jar` of a Flink job starts a local mini
# cluster (job manager and task executor in this one JVM); for local
# execution Flink sizes only the task executor's off-heap parts (128 MiB
# managed, 64 MiB network memory) and leaves the heap to the JVM, whose own
# default would be a quarter of the machine's memory. 1 GiB is the heap of
# Flink's default job manager (jobmanager.memory.process.size: 1600m in the
# distribution's config gives -Xmx1g) and Spark's default driver heap
# (spark.driver.memory), so the two JVM baselines run with the same heap.
FLINK_HEAP = os.environ.get("BENCH_FLINK_HEAP", "1g")
FLINK_JAR = WORK / "flink/millrace-flink-bench.jar"


def m_flink(ctx, rep):
    """The Flink job (bench/flink): Kafka source, Jackson parse, a Sink V2
    writer on the Apache Cassandra Java driver, local mini cluster with
    parallelism 2. Timed inside the job, first successful write to the
    last across its two writers; JVM start to end is in its extra."""
    if not FLINK_JAR.exists() or not shutil.which("java"):
        return pending("the Flink job is not built or java is missing: run bench/lib/flink.sh")
    table = f"flink_{rep}"
    ctx.bench_tool("create-table", ctx.keyspace, table)
    # Offsets are committed on checkpoints: the group is deleted at the end.
    group = f"{ctx.topic}_flink_{rep}"
    ctx.groups.append(group)
    r = ctx.run(
        "flink",
        ["java", f"-Xmx{FLINK_HEAP}", "-jar", str(FLINK_JAR),
         "--bootstrap", os.environ["MILLRACE_KAFKA_BOOTSTRAP"], "--topic", ctx.topic,
         "--group", group, "--keyspace", ctx.keyspace, "--table", table,
         "--parallelism", "2", "--max-in-flight", "256"],
    )
    return _checked(ctx, r, table)


RUNNER = Path(os.environ.get("BENCH_RUNNER") or TARGET / "millrace-runner")
# The runner as it was before the performance work (a pinned revision,
# built by bench/run into the bench cache), measured beside the current one.
RUNNER_BEFORE = os.environ.get("BENCH_RUNNER_BEFORE", "")
RUNNER_BEFORE_REV = os.environ.get("BENCH_RUNNER_BEFORE_REV", "")
PUSH_BATCH = int(os.environ.get("BENCH_PUSH_BATCH", "500"))
PUSH_CONCURRENCY = int(os.environ.get("BENCH_PUSH_CONCURRENCY", "4"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "10"))
# Rows per partition (and per batch) of the clustering-table measurements.
CLUSTERING_ROWS = int(os.environ.get("BENCH_CLUSTERING_ROWS", "10"))
LATENCY_LEVELS = (0.2, 0.5, 0.8)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pipeline_file(ctx, name, topic, table, sources, path, avro_registry=None, tables=1,
                   clustering=False, batch=None):
    """examples/randomuser.yaml, pointed at `topic` and `table`, with its
    sources replaced by `sources` (YAML text of the list items, or ""), and
    with `format: avro` reading schemas from `avro_registry` when given.
    With `tables` > 1 its table becomes a `tables:` list of that many
    copies, `table_0` .. (every record a row in each). `clustering` adds
    the `seq` column as the clustering key (bench-tool create-table
    --clustering); `batch` (YAML flow text) sets spec.runner.batch.
    Edited as text (the harness has no YAML library); each line replaced
    must exist exactly once, so a changed example fails loudly."""
    text = (REPO / "examples/randomuser.yaml").read_text()
    for old, new in [
        ("  name: randomuser\n", f"  name: bench-{ctx.run_id}-{name.replace('_', '-')}\n"),
        ("      name: users_created\n", f"      name: {topic}\n"),
        ("      name: spark_streams\n", f"      name: {ctx.keyspace}\n"),
        ("      name: created_users\n", f"      name: {table}\n"),
    ]:
        if text.count(old) != 1:
            raise RuntimeError(f"examples/randomuser.yaml: expected one {old.strip()!r}")
        text = text.replace(old, new)
    cut = text.find("  sources:\n")
    if cut < 0:
        raise RuntimeError("examples/randomuser.yaml: no sources section")
    text = text[:cut] + ("  sources:\n" + sources if sources else "")
    if clustering:
        old = "      partitionKey: [id]\n"
        if text.count(old) != 1:
            raise RuntimeError("examples/randomuser.yaml: expected one partitionKey: [id]")
        text = text.replace(old, "        - {name: seq, type: int, from: /seq}\n" + old
                            + "      clusteringKey: [{name: seq}]\n")
    if batch:
        text = text.replace("  cassandra:\n", f"  runner:\n    batch: {batch}\n  cassandra:\n", 1)
    if tables > 1:
        text = _as_tables(text, table, tables)
    if avro_registry:
        text = text.replace("  cassandra:\n", "  format:\n    type: avro\n    schemaRegistry:\n"
                            f"      url: {avro_registry}\n  cassandra:\n", 1)
    path.write_text(text)
    return f"millrace.default.bench-{ctx.run_id}-{name.replace('_', '-')}"


def _as_tables(text, table, n):
    """The pipeline text with its `table:` block (which must end the
    cassandra section) as a `tables:` list of `n` copies named table_0 .."""
    head = "    table:\n"
    start = text.find(head)
    if start < 0:
        raise RuntimeError("examples/randomuser.yaml: no table section")
    rest = text[start + len(head):].split("\n")
    body = []
    for line in rest:
        if line.startswith("      ") or (line.strip().startswith("#") and line.startswith("    ")):
            body.append(line)
        else:
            break
    tail = "\n".join(rest[len(body):])
    first = f"      name: {table}"
    if not body or body[0] != first:
        raise RuntimeError(f"examples/randomuser.yaml: the table does not start with {first.strip()!r}")
    out = ["    tables:"]
    for i in range(n):
        out.append(f"      - name: {table}_{i}")
        out.extend("  " + line for line in body[1:])
    return text[:start] + "\n".join(out) + "\n" + tail


# The push source as users get it: the default maxBodyBytes (1 MiB), so the
# runner is measured with its default body budget (8 MiB). A body of
# BENCH_PUSH_BATCH records must fit: about 900 randomuser records at most.
# Open (auth.type None): a token costs one SHA-256 per request, and the
# bench's own HTTP client sends no header; the data path is what it measures.
PUSH_SOURCE = "    - name: events\n      httpPush: {path: /v1/records, auth: {type: None}}\n"


@functools.cache
def _has_metrics_port(binary, role):
    """Whether this runner build takes --metrics-listen (the pinned
    revision from before the performance work does not)."""
    out = subprocess.run([str(binary), role, "--help"], capture_output=True, text=True, check=False)
    return "--metrics-listen" in out.stdout + out.stderr


def _image_env(dockerfile):
    """The `ENV NAME=value` lines of an image's Dockerfile: runners are
    measured in the environment their image gives them."""
    env = {}
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


RUNNER_IMAGE_ENV = _image_env(REPO / "runner" / "Dockerfile")


class Runner:
    """One millrace-runner process of a measurement: started, read through
    its /metrics and /readyz, its RSS sampled, stopped with SIGTERM (so its
    drain and final commit run) and reaped with wait4 for its exact peak."""

    def __init__(self, ctx, label, binary, role, pipeline):
        self.port = _free_port()
        self.argv = [str(binary), role, "--pipeline", str(pipeline),
                     "--listen", f"127.0.0.1:{self.port}", "--log-format", "json"]
        if _has_metrics_port(binary, role):
            self.metrics_port = _free_port()
            self.argv += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        else:
            # A runner from before the metrics got their own port serves
            # them on the push port.
            self.metrics_port = self.port
        ctx.commands.setdefault(label, (dict(RUNNER_IMAGE_ENV), self.argv))
        self.errlog = ctx.log / f"{label}.stderr"
        self.usage = None
        self.cpu_first = self.cpu_last = None

    def __enter__(self):
        self.err = open(self.errlog, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.err, stderr=self.err,
                                     env={**os.environ, **RUNNER_IMAGE_ENV})
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()
        self.started = time.time()
        return self

    def __exit__(self, *exc):
        self.stop()

    def url(self, path):
        """`path` on the push endpoint."""
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics_url(self, path):
        """`path` on the metrics and health port."""
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def check(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.argv[1]} exited {self.proc.returncode}; see {self.errlog}")

    def scrape(self):
        """The /metrics text, or None when it does not answer."""
        try:
            with urllib.request.urlopen(self.metrics_url("/metrics"), timeout=1) as r:
                return r.read().decode()
        except (OSError, ValueError):
            return None

    @staticmethod
    def sample(text, name, labels="", missing=0.0):
        """The sum of a metric's samples in `text` whose labels contain
        `labels`; `missing` without such samples, None without text."""
        if text is None:
            return None
        values = [float(value) for key, _, value in (l.rpartition(" ") for l in text.splitlines())
                  if key.split("{")[0] == name and labels in key]
        return sum(values) if values else missing

    def metric(self, name, labels=""):
        """The sum of a metric's samples whose labels contain `labels`, or
        None when /metrics does not answer."""
        return self.sample(self.scrape(), name, labels)

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(self.metrics_url("/readyz"), timeout=1) as r:
                    if r.status == 200:
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.argv[1]} not ready after {timeout} s; see {self.errlog}")

    def wait_metric(self, name, target, labels="", timeout=1800, failed=lambda: None):
        """Polls a counter every 50 ms until it reaches `target`; returns
        (time, value) of the first poll that saw it above zero and of the
        one that saw it reach the target. `failed` returns an exception
        to raise instead, when what feeds the counter has failed."""
        first = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check()
            if (e := failed()) is not None:
                raise e
            text = self.scrape()
            n = self.sample(text, name, labels)
            now = time.time()
            # The process's own CPU at the same polls (its
            # process_cpu_seconds_total), so CPU per row is read over the
            # timed rows only, at full rate, without connecting and joining.
            if n and first is None:
                first = (now, n)
                self.cpu_first = self.sample(text, "process_cpu_seconds_total", missing=None)
            if n is not None and n >= target:
                self.cpu_last = self.sample(text, "process_cpu_seconds_total", missing=None)
                return first, (now, n)
            time.sleep(0.05)
        raise RuntimeError(f"{name} below {target} after {timeout} s; see {self.errlog}")

    def stop(self):
        if self.usage is not None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        killer = threading.Timer(40, self.proc.kill)
        killer.start()
        try:
            _, _, self.usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:
            self.usage = False
        finally:
            killer.cancel()
            self.sampler.stop.set()
            self.sampler.join()
            self.err.close()

    def figures(self):
        maxrss = self.usage.ru_maxrss if self.usage else 0
        return {
            "peak_rss_mib": max(self.sampler.peak_tree_kb, maxrss) / 1024,
            "maxrss_main_mib": maxrss / 1024,
            "peak_tree_sampled_mib": self.sampler.peak_tree_kb / 1024,
            "peak_process_hwm_mib": self.sampler.peak_process_kb / 1024,
            "cpu_seconds": (self.usage.ru_utime + self.usage.ru_stime) if self.usage else None,
            # Over wait_metric's timed window only (None for a runner
            # without the process metrics).
            "cpu_seconds_timed": (self.cpu_last - self.cpu_first)
            if self.cpu_first is not None and self.cpu_last is not None else None,
        }


def _sink(ctx, rep, name, binary, perf=None, avro=False, tables=1, clustering=False, batch=None,
          label=None):
    """A runner sink on the pre-filled topic, writing a fresh table (or
    `tables` fresh tables, each record a row in every one), until its
    rows_written metric reaches N rows per table. Timed from the first row
    written to the last, like the ceilings: connecting and the group join
    are excluded (their cost is in the wall column). The rate is records/s:
    rows/s divided by the tables. `label` names the table and pipeline
    instead of `name` (a pipeline's name has at most 50 characters)."""
    table = f"{(label or name).replace('-', '_')}_{rep}"
    names = [table] if tables == 1 else [f"{table}_{i}" for i in range(tables)]
    for t in names:
        ctx.bench_tool("create-table", ctx.keyspace, t, *(["--clustering"] if clustering else []))
    pipeline = ctx.log / f"{table}.yaml"
    topic, registry = (ctx.topic + "_avro", REGISTRY) if avro else (ctx.topic, None)
    if clustering:
        topic = _clustering_topic(ctx)
    ctx.groups.append(_pipeline_file(ctx, table, topic, table, "", pipeline, registry, tables,
                                     clustering, batch))
    with Runner(ctx, name, binary, "sink", pipeline) as r:
        if perf:
            perf(r)
        first, last = r.wait_metric("millrace_rows_written_total", ctx.records * tables)
        batches = r.metric("millrace_batches_written_total") if batch else 0
        batched = r.metric("millrace_batched_rows_total") if batch else 0
        r.stop()
    rows, seconds = last[1] - first[1], last[0] - first[0]
    records = rows / tables
    result = {
        "measurement": name, "records": records, "seconds": seconds,
        "rate": records / seconds if seconds > 0 else 0.0,
        "note": "rows_written metric, first row to the last, polled every 50 ms; records = rows / tables",
        "extra": {"rows_before_timing": first[1], "tables": tables, "rows": rows,
                  **({"batches": batches, "batched_rows": batched,
                      "rows_per_batch": batched / batches if batches else None} if batch else {})},
        "wall_seconds": last[0] - r.started, **r.figures(),
    }
    for t in names:
        result = _checked(ctx, result, t)
    return result


# The CQL ceiling run right before and right after each runner-sink run,
# the higher of the two its ceiling: one ceiling run per repetition, a
# measurement away, was no upper bound (the sink reached 2.10 of it once).
BRACKET = os.environ.get("BENCH_BRACKET", "1") != "0"


def m_runner_sink(ctx, rep):
    """The runner's sink, `millrace-runner sink`, as built from this tree;
    with BENCH_BRACKET (the default), between two CQL ceiling runs."""
    if not BRACKET:
        return _sink(ctx, rep, "runner-sink", RUNNER)
    before = m_cql_ceiling(ctx, f"{rep}_before")
    settle()
    r = _sink(ctx, rep, "runner-sink", RUNNER)
    settle()
    after = m_cql_ceiling(ctx, f"{rep}_after")
    bracket = max(before, after, key=lambda c: c["rate"])
    r.setdefault("extra", {})["ceiling"] = {
        "before": before["rate"], "after": after["rate"], "higher": bracket["rate"],
        "ratio": r["rate"] / bracket["rate"] if bracket["rate"] else None,
        "cpu_us_per_row_before": _us_per_row(before, before["records"]),
        "cpu_us_per_row_after": _us_per_row(after, after["records"]),
    }
    return r


def _timed_us(result, per_record=False):
    """A runner sink's CPU µs per row (or per record) over its timed
    window, or None."""
    extra = result.get("extra") or {}
    rows = extra.get("rows") or result.get("records")
    if per_record and rows:
        rows = rows / (extra.get("tables") or 1)
    return _us_per_row(result, rows)


def _us_per_row(result, rows):
    """CPU µs per row over a result's timed window, or None."""
    cpu = result.get("cpu_seconds_timed")
    return 1e6 * cpu / rows if cpu is not None and rows else None


def m_runner_sink_avro(ctx, rep):
    """The same sink and pipeline on a topic of the same users as Avro
    (Confluent wire format, schema in the world's registry): the cost of
    decoding Avro beside parsing JSON."""
    return _sink(ctx, rep, "runner-sink-avro", RUNNER, avro=True)


def m_runner_sink_2_tables(ctx, rep):
    """The same sink writing every record into two tables
    (`spec.cassandra.tables`): the cost of fan-out."""
    return _sink(ctx, rep, "runner-sink-2-tables", RUNNER, tables=2)


def m_runner_sink_4_tables(ctx, rep):
    """The same into four tables."""
    return _sink(ctx, rep, "runner-sink-4-tables", RUNNER, tables=4)


def _clustering_topic(ctx):
    """The topic of the clustering-table sinks, filled on first use: the
    same number of users, in runs of CLUSTERING_ROWS that share a uuid (so a
    key, a Kafka partition and a Cassandra partition), each with its `seq`."""
    topic = ctx.topic + "_clustering"
    if topic not in ctx.topics:
        ctx.bench_tool("create-topic", topic, "--partitions", str(ctx.partitions))
        ctx.topics.append(topic)
        fill = ctx.run("fill-clustering", [ctx.tool("kafka-produce-ceiling"), "--topic", topic,
                                           "--records", str(ctx.records), "--seed", "3",
                                           "--rows-per-key", str(CLUSTERING_ROWS)])
        print(f"bench: filled {topic}: {fill['records']} records, {CLUSTERING_ROWS} per key, "
              f"in {fill['seconds']:.1f} s", flush=True)
        settle()
    return topic


def m_runner_sink_clustering(ctx, rep):
    """The sink into a clustering table, each record its own write."""
    return _sink(ctx, rep, "runner-sink-clustering", RUNNER, clustering=True, label="sink-cl")


def m_runner_sink_clustering_batched(ctx, rep):
    """The same, with spec.runner.batch at its defaults."""
    return _sink(ctx, rep, "runner-sink-clustering-batched", RUNNER, clustering=True,
                 batch="{maxRecords: 64}", label="sink-cl-batched")


def m_runner_sink_4_tables_batched(ctx, rep):
    """Four tables with `runner.batch`: the four tables share the partition
    key, so a record's four rows are one mutation, one batch."""
    return _sink(ctx, rep, "runner-sink-4-tables-batched", RUNNER, tables=4,
                 batch="{maxRecords: 64}", label="sink-4t-batched")


def m_runner_sink_before(ctx, rep):
    """The same with the runner before the performance work (bench/run
    builds it once from the pinned revision)."""
    if not RUNNER_BEFORE or not Path(RUNNER_BEFORE).exists():
        return pending("runner before the performance work: not built (BENCH_RUNNER_BEFORE)")
    return _sink(ctx, rep, "runner-sink-before", RUNNER_BEFORE)


def _topic(ctx, suffix):
    topic = f"{ctx.topic}_{suffix}"
    ctx.bench_tool("create-topic", topic, "--partitions", str(ctx.partitions))
    ctx.topics.append(topic)
    return topic


def m_runner_ingest_push(ctx, rep):
    """`millrace-runner ingest` with one httpPush source into a fresh topic,
    loaded by bench/src/bin/push-load.rs (NDJSON batches, several
    connections). The rate is the client's: first request to last 202,
    each 202 meaning Kafka acknowledged every record of the request. RSS is
    the runner's."""
    topic = _topic(ctx, f"push_{rep}")
    pipeline = ctx.log / f"push_{rep}.yaml"
    _pipeline_file(ctx, f"push_{rep}", topic, "unused", PUSH_SOURCE, pipeline)
    with Runner(ctx, "runner-ingest", RUNNER, "ingest", pipeline) as r:
        r.wait_ready()
        load = ctx.run("push-load", [
            ctx.tool("push-load"), "--url", r.url("/v1/records"), "--records", str(ctx.records),
            "--batch", str(PUSH_BATCH), "--concurrency", str(PUSH_CONCURRENCY),
            "--seed", str(200 + rep)])
        ingested = r.metric("millrace_records_ingested_total", 'source="events"')
        r.stop()
    if ingested != ctx.records:
        raise RuntimeError(f"push: the runner counted {ingested} records ingested, expected {ctx.records}")
    client = {f"client_{k}": load[k] for k in ("peak_rss_mib", "cpu_seconds")}
    return {**load, **r.figures(), "extra": {**load.get("extra", {}), **client}}


def m_runner_ingest_generator(ctx, rep):
    """`millrace-runner ingest` with one generator source at its highest
    rate (1,000,000 records/s, limit N) into a fresh topic; timed by the
    records_ingested metric (acknowledged by Kafka) from the first poll
    that saw any to N."""
    topic = _topic(ctx, f"gen_{rep}")
    pipeline = ctx.log / f"gen_{rep}.yaml"
    source = ("    - name: synthetic\n      generator: {profile: randomuser, "
              f"recordsPerSecond: 1000000, limit: {ctx.records}}}\n")
    _pipeline_file(ctx, f"gen_{rep}", topic, "unused", source, pipeline)
    with Runner(ctx, "runner-generator", RUNNER, "ingest", pipeline) as r:
        first, last = r.wait_metric("millrace_records_ingested_total", ctx.records,
                                    'source="synthetic"')
        r.stop()
    records, seconds = last[1] - first[1], last[0] - first[0]
    if records <= 0:
        # Done before a second poll (a small N): count from the start.
        records, seconds = last[1], last[0] - r.started
    return {"measurement": "runner-ingest-generator", "records": records, "seconds": seconds,
            "rate": records / seconds if seconds > 0 else 0.0,
            "note": "records_ingested metric, first poll above 0 to N, polled every 50 ms",
            "wall_seconds": last[0] - r.started, **r.figures()}


def m_runner_e2e(ctx, rep):
    """Push -> row, both roles running: an ingest runner (push source) and
    a sink runner on one fresh topic and table.

    1. Throughput: push-load sends N records flat out; timed from its first
       request to the sink's rows_written reaching N.
    2. Latency at 20/50/80% of that rate, BENCH_LATENCY_SECONDS each:
       bench/src/bin/e2e-latency.rs (records built first) sends one request every 20 ms and reads
       the first record of each back from Cassandra (every 2 ms, growing to
       5% of the wait); latency is 202 received -> row readable. Each level starts once the sink has
       caught up with the previous one."""
    topic = _topic(ctx, f"e2e_{rep}")
    table = f"e2e_{rep}"
    ctx.bench_tool("create-table", ctx.keyspace, table)
    pipeline = ctx.log / f"e2e_{rep}.yaml"
    ctx.groups.append(_pipeline_file(ctx, f"e2e_{rep}", topic, table, PUSH_SOURCE, pipeline))
    with Runner(ctx, "e2e-ingest", RUNNER, "ingest", pipeline) as ingest, \
            Runner(ctx, "e2e-sink", RUNNER, "sink", pipeline) as sink:
        ingest.wait_ready()
        sink.wait_ready()
        box = {}

        def push():
            try:
                box["load"] = ctx.run("e2e-push-load", [
                    ctx.tool("push-load"), "--url", ingest.url("/v1/records"),
                    "--records", str(ctx.records), "--batch", str(PUSH_BATCH),
                    "--concurrency", str(PUSH_CONCURRENCY), "--seed", str(300 + rep)])
            except Exception as e:  # reported below, from the main thread
                box["error"] = e

        pusher = threading.Thread(target=push)
        pusher.start()
        _, last = sink.wait_metric("millrace_rows_written_total", ctx.records,
                                   failed=lambda: box.get("error"))
        pusher.join()
        if "error" in box:
            raise box["error"]
        started = box["load"]["extra"]["started_unix"]
        seconds = last[0] - started
        rate = ctx.records / seconds
        expected = ctx.records
        latency = {}
        for level in LATENCY_LEVELS:
            r = ctx.run(f"e2e-latency-{int(level * 100)}", [
                ctx.tool("e2e-latency"), "--url", ingest.url("/v1/records"),
                "--keyspace", ctx.keyspace, "--table", table, "--rate", f"{level * rate:.0f}",
                "--seconds", str(LATENCY_SECONDS), "--seed", str(1000 * rep + int(level * 100))])
            expected += r["records"]
            sink.wait_metric("millrace_rows_written_total", expected, timeout=120)
            latency[str(int(level * 100))] = {"rate": r["rate"], **r["extra"]}
        ingest.stop()
        sink.stop()
    result = {"measurement": "runner-e2e", "records": ctx.records, "seconds": seconds,
              "rate": rate, "wall_seconds": last[0] - ingest.started,
              "note": "push-load's first request to the sink's N-th row",
              "extra": {"latency": latency,
                        "ingest": ingest.figures(), "sink": sink.figures()},
              "peak_rss_mib": max(ingest.figures()["peak_rss_mib"], sink.figures()["peak_rss_mib"])}
    return _checked(ctx, result, table, expected)


# Measurements that write rows into Cassandra, which want it warmed up.
CASSANDRA_WRITERS = {m_cql_ceiling, m_cql_clustering_single, m_cql_clustering_batched, m_seed_spark, m_flink, m_runner_sink, m_runner_sink_avro,
                     m_runner_sink_before, m_runner_e2e, m_runner_sink_clustering,
                     m_runner_sink_clustering_batched, m_runner_sink_4_tables_batched}
# The world's Schema Registry, for the Avro sink (tests/env/up starts one).
REGISTRY = os.environ.get("MILLRACE_SCHEMA_REGISTRY_URL", "")
# BENCH_NAME=x writes REPORT-x.md, throughput-x.svg and results/x.json, so a
# run of a few measurements (BENCH_ONLY) leaves the full report as it is.
_NAME = os.environ.get("BENCH_NAME", "")
REPORT_MD = f"REPORT-{_NAME}.md" if _NAME else "REPORT.md"
THROUGHPUT_SVG = f"throughput-{_NAME}.svg" if _NAME else "throughput.svg"
RESULTS_JSON = f"results/{_NAME}.json" if _NAME else "results/last.json"
WARMUP = os.environ.get("BENCH_WARMUP", "1") != "0"

# name -> (function, label, what it is)
MEASUREMENTS = {
    "kafka-produce-ceiling": (m_kafka_produce_ceiling, "Kafka produce ceiling",
                              "plain rdkafka producer, the runner's settings (idempotent, acks=all, lz4)"),
    "kafka-ceiling": (m_kafka_ceiling, "Kafka consume ceiling",
                      "plain rdkafka consumer reading the whole topic"),
    "kafka-ceiling-map": (m_kafka_ceiling_map, "Kafka consume + map",
                          "the same, plus the sink's JSON parse (only the fields the columns read) and RowMapper::map per record (no CQL)"),
    "cql-ceiling": (m_cql_ceiling, "CQL ceiling",
                    "plain scylla-driver loop, prepared INSERT, 256 in flight, LOCAL_QUORUM; rows pre-mapped"),
    "cql-clustering-single": (m_cql_clustering_single, "CQL, clustering table, single inserts",
                              "plain scylla-driver loop, one prepared INSERT per row into (id, at, seq) "
                              "rows, 10 per partition (BENCH_CLUSTERING_ROWS), 256 rows in flight"),
    "cql-clustering-batched": (m_cql_clustering_batched, "CQL, clustering table, unlogged batches",
                               "the same rows, each partition's as one unlogged single-partition batch, "
                               "256 rows in flight"),
    "seed-spark": (m_seed_spark, "Seed's Spark job",
                   "pyspark 3.5.3 local[2], Kafka source + spark-cassandra-connector, availableNow"),
    "flink": (m_flink, "Flink job",
              "Flink 2.2.1 local mini cluster, parallelism 2, Kafka source (bounded) + Jackson + "
              "Sink V2 writer on the Cassandra Java driver 4.19 (prepared INSERT, async, 256 in flight, "
              "LOCAL_QUORUM), checkpoints every 5 s"),
    "runner-sink-before": (m_runner_sink_before, "Runner sink, before",
                           "`millrace-runner sink` before the performance work (pinned revision), Kafka -> Cassandra"),
    "runner-sink": (m_runner_sink, "Runner sink",
                    "`millrace-runner sink` of this tree, Kafka -> Cassandra, maxInFlight 256"),
    "runner-sink-avro": (m_runner_sink_avro, "Runner sink, Avro",
                         "the same sink and pipeline, the same users as Avro records (Confluent wire format, schema registry)"),
    "runner-sink-2-tables": (m_runner_sink_2_tables, "Runner sink, 2 tables",
                             "the same sink, every record a row in each of two tables (`tables:`); records/s"),
    "runner-sink-4-tables": (m_runner_sink_4_tables, "Runner sink, 4 tables",
                             "the same into four tables; records/s (rows/s is four times that)"),
    "runner-sink-clustering": (m_runner_sink_clustering, "Runner sink, clustering table",
                               "the sink into the example table plus `seq` as its clustering key, from a topic of "
                               "the same users in runs of 10 per key (BENCH_CLUSTERING_ROWS); each row its own INSERT"),
    "runner-sink-clustering-batched": (m_runner_sink_clustering_batched, "Runner sink, clustering table, batched",
                                       "the same with `runner.batch: {maxRecords: 64}` (maxDelayMs 0): each "
                                       "partition's rows among the records read together as one unlogged batch"),
    "runner-sink-4-tables-batched": (m_runner_sink_4_tables_batched, "Runner sink, 4 tables, batched",
                                     "the 4-table sink with `runner.batch: {maxRecords: 64}`: the tables share "
                                     "their partition key, so each record's four rows are one unlogged batch; records/s"),
    "runner-ingest-push": (m_runner_ingest_push, "Runner ingest: push",
                           "`millrace-runner ingest`, httpPush: NDJSON POSTs -> Kafka (202 = acks=all)"),
    "runner-ingest-generator": (m_runner_ingest_generator, "Runner ingest: generator",
                                "`millrace-runner ingest`, generator source at 1,000,000/s -> Kafka"),
    "runner-e2e": (m_runner_e2e, "Push -> row (end to end)",
                   "ingest + sink runners together: first POST to the N-th row in Cassandra"),
}


# Profile of the sink at full rate: one extra, untimed run of the sink under
# `perf record`, folded with inferno into bench/sink-flamegraph.svg.
PROFILE = os.environ.get("BENCH_PROFILE", "1") != "0"
INFERNO = Path.home() / ".cargo/bin"


def profile_sink(ctx):
    perf = shutil.which("perf")
    collapse, flame = INFERNO / "inferno-collapse-perf", INFERNO / "inferno-flamegraph"
    if not perf or not collapse.exists() or not flame.exists():
        return {"pending": "perf or inferno is missing (bench/run installs inferno; perf: apt-get install linux-perf)"}
    data = ctx.log / "sink.perf.data"
    box = {}

    def attach(runner):
        # Sampling starts once rows are being written, from a thread, so
        # the measurement's own wait goes on. Attached as the runner
        # started, perf sampled little but librdkafka's broker thread (run
        # 20261205104807: 80% of its samples), while attached later it
        # samples every thread; the connect and group join are left out.
        def start():
            deadline = time.time() + 120
            while time.time() < deadline and runner.proc.poll() is None:
                if (runner.metric("millrace_rows_written_total") or 0) > 0:
                    break
                time.sleep(0.05)
            box["perf"] = subprocess.Popen(
                [perf, "record", "-F", "499", "--call-graph", "dwarf,16384", "-g",
                 "-o", str(data), "-p", str(runner.proc.pid)],
                stdout=subprocess.DEVNULL, stderr=open(ctx.log / "perf.stderr", "ab"))

        box["thread"] = threading.Thread(target=start, daemon=True)
        box["thread"].start()

    r = _sink(ctx, "profile", "runner-sink-profiled", RUNNER, perf=attach)
    if box.get("thread"):
        box["thread"].join(timeout=130)
    p = box.get("perf")
    if p:
        p.wait(timeout=120)
    script = subprocess.run([perf, "script", "-i", str(data)], capture_output=True, check=True)
    folded = subprocess.run([str(collapse)], input=script.stdout, capture_output=True,
                            check=True).stdout
    (ctx.log / "sink.folded").write_bytes(folded)
    svg = subprocess.run([str(flame), "--title", "millrace-runner sink at full rate",
                          "--width", "1400"], input=folded, capture_output=True, check=True).stdout
    (BENCH / "sink-flamegraph.svg").write_bytes(svg)
    return {"rate": r["rate"], "categories": fold_categories(folded.decode(errors="replace"))}


# What a sample is spent on, by the innermost frame that names it. Checked
# in order: the first pattern found in a stack wins.
CATEGORIES = [
    ("JSON parse (serde_json)", ("serde_json::de", "serde_json::read", "serde::de::")),
    ("record -> row mapping (millrace_api)", ("millrace_api::",)),
    ("CQL driver: serialise, send, receive (scylla)", ("scylla::", "scylla_cql::")),
    ("Kafka consumer (librdkafka)", ("rd_kafka", "rdkafka::")),
    ("tracking offsets, spawning, metrics (runner)", ("millrace_runner::",)),
    ("async runtime (tokio)", ("tokio::",)),
    ("allocator", ("malloc", "free", "realloc", "cfree")),
    ("kernel (syscalls, network)", ("[k]", "entry_SYSCALL", "do_syscall")),
]


def fold_categories(folded):
    """Share of samples per category: a sample counts for the first
    category whose pattern appears in its stack, read from the leaf up."""
    totals, total = {}, 0
    for line in folded.splitlines():
        stack, _, n = line.rpartition(" ")
        try:
            n = int(n)
        except ValueError:
            continue
        total += n
        frames = stack.split(";")[::-1]
        label = "other"
        for frame in frames:
            hit = next((c for c, pats in CATEGORIES if any(p in frame for p in pats)), None)
            if hit:
                label = hit
                break
        totals[label] = totals.get(label, 0) + n
    return {k: v / total for k, v in sorted(totals.items(), key=lambda kv: -kv[1])} if total else {}


# -------------------------------------------------------------- report ---


def machine():
    def read(path):
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    cpu = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines()
                if l.startswith("model name")), "unknown")
    mem = next((l.split()[1] for l in read("/proc/meminfo").splitlines()
                if l.startswith("MemTotal")), "0")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_before": read("/proc/loadavg").split()[:3],
    }


def summarize(rows):
    """Median and spread of the repetitions' rates, RSS and times."""
    rates = [r["rate"] for r in rows]
    return {
        "n": len(rows),
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "seconds": statistics.median(r["seconds"] for r in rows),
        "wall": statistics.median(r["wall_seconds"] for r in rows),
        "rss": statistics.median(r["peak_rss_mib"] for r in rows),
        "rss_max": max(r["peak_rss_mib"] for r in rows),
    }


def svg_bars(summary, path):
    """A horizontal bar chart of the median rate with min-max whiskers, on
    a log scale (the Spark baseline and the Kafka ceiling are orders of
    magnitude apart). Written by hand so the report needs no plotting
    library."""
    items = [(MEASUREMENTS[k][1], s) for k, s in summary.items() if s]
    if not items:
        return
    width, left, bar_h, gap, top = 780, 190, 22, 14, 40
    height = top + len(items) * (bar_h + gap) + 40
    lo = 10 ** math.floor(math.log10(max(1.0, min(s["min"] for _, s in items))))
    hi = 10 ** math.ceil(math.log10(max(s["max"] for _, s in items) * 1.05))
    span = math.log10(hi) - math.log10(lo)
    x = lambda v: left + (width - left - 90) * (math.log10(max(v, lo)) - math.log10(lo)) / span  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">records/s, log scale (median of repetitions; '
        f'whiskers: min-max)</text>',
    ]
    axis_y = top + len(items) * (bar_h + gap)
    decade = lo
    while decade <= hi:
        out.append(f'<line x1="{x(decade):.1f}" x2="{x(decade):.1f}" y1="{top - 6}" y2="{axis_y}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{x(decade):.1f}" y="{axis_y + 16}" text-anchor="middle" '
                   f'fill="#555">{decade:,.0f}</text>')
        decade *= 10
    for i, (label, s) in enumerate(items):
        y = top + i * (bar_h + gap)
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{x(s["median"]) - left:.1f}" height="{bar_h}" '
                   f'fill="#4a7ab5"/>')
        out.append(f'<line x1="{x(s["min"]):.1f}" x2="{x(s["max"]):.1f}" y1="{y + bar_h / 2}" '
                   f'y2="{y + bar_h / 2}" stroke="black"/>')
        for v in (s["min"], s["max"]):
            out.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{y + 5}" y2="{y + bar_h - 5}" '
                       f'stroke="black"/>')
        out.append(f'<text x="{x(s["max"]) + 6:.1f}" y="{y + 15}">{s["median"]:,.0f}</text>')
    out.append(f'<line x1="{left}" x2="{width - 90}" y1="{axis_y}" y2="{axis_y}" stroke="#888"/>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def readable(env, argv):
    """A command line as a reader can paste it: paths under the home as ~,
    the long Spark --jars list as the file that holds it."""
    home = str(Path.home())
    words = [f"{k}={v}" for k, v in env.items() if k != "PATH"] + list(argv)
    jars = WORK / "spark-jars.txt"
    out = []
    for w in words:
        if jars.exists() and w == jars.read_text().strip():
            out.append('"$(cat ~/.cache/millrace/bench/spark-jars.txt)"')
        else:
            out.append(shlex.quote(w).replace(str(REPO) + "/", "").replace(home, "~"))
    if "PATH" in env:
        out.insert(0, "PATH=~/.cache/millrace/bench/venv/bin:$PATH")
    return " ".join(out)


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _spread(values, fmt="{:,.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


# bench/run's switches for the JVM baselines (it fetches or builds their
# pieces only when they are on): measurement -> variable.
SWITCHES = {"seed-spark": "BENCH_SPARK", "flink": "BENCH_FLINK"}


def _switched_off(name):
    """`BENCH_SPARK=0` or `BENCH_FLINK=0` if that leaves `name` out, else ""."""
    var = SWITCHES.get(name)
    return f"{var}=0" if var and os.environ.get(var) == "0" else ""


# 50 MB, the memory goal of a runner, in MiB.
RUNNER_RSS_GOAL_MIB = 50e6 / 2**20


def write_report(ctx, info, results, summary, errors, started, finished, profile=None):
    s = lambda k: summary.get(k) or {}  # noqa: E731
    ok = lambda k: [r for r in results.get(k) or [] if "pending" not in r]  # noqa: E731
    home = str(Path.home())
    md = []
    md.append("# millrace benchmarks\n")
    md.append(
        "Written by `make bench` (bench/run -> bench/harness.py); do not edit by hand. "
        "Every measurement ran in the same run, interleaved repetition by repetition "
        "(odd repetitions in the reverse order), each started once Kafka and Cassandra were "
        f"idle (below {SETTLE_IDLE:.0%} of a core for two seconds: the previous measurement's "
        "memtable flushes and compactions done) and each table dropped once its rows were "
        "counted, on one pre-filled topic, against the test world's single-node Kafka and Cassandra "
        "on the same 2-core machine. The machine is shared and noisy (other builds and test "
        "suites ran at the same time; the load average is below): compare the ratios, "
        "which are taken within this run, not the absolute figures.\n"
    )
    md.append("## Machine and run\n")
    md.append(f"- CPU: {info['cpu']}, nproc {info['nproc']}; memory {info['memory_gib']} GiB; "
              f"kernel {info['kernel']}")
    during = info.get("load_during") or {}
    load = f"- load average (1 min) before the run: {' '.join(info['load_before'])}"
    if during:
        load += (f"; during it (every 10 s): median {during['median']:.2f}, "
                 f"min {during['min']:.2f}, max {during['max']:.2f}")
    if info.get("load_after"):
        load += f"; after: {' '.join(info['load_after'])}"
    md.append(load)
    for note in info.get("notes", []):
        md.append(f"- {note}")
    md.append(f"- run `{ctx.run_id}`, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))}"
              f"-{time.strftime('%H:%M UTC', time.gmtime(finished))} "
              f"({(finished - started) / 60:.1f} min); "
              f"{ctx.records:,} records, {ctx.partitions} partitions, {ctx.reps} repetitions")
    avg = (results.get("kafka-produce-ceiling") or [{}])[0].get("extra", {}).get("avg_record_bytes")
    if avg:
        md.append(f"- records: randomuser.me-shaped JSON, {avg} bytes on average "
                  "(seeded generator, bench/src/users.rs); 11 columns per row (examples/randomuser.yaml)")
    before_rev = RUNNER_BEFORE_REV or ""
    if before_rev:
        md.append(f"- \"before\": the runner at revision `{before_rev[:12]}` (before the sink's "
                  "performance work), built by bench/run into the bench cache and run beside "
                  "this tree's runner in every repetition")
    md.append("")

    cq, kc, km = s("cql-ceiling").get("median"), s("kafka-ceiling").get("median"), s("kafka-ceiling-map").get("median")
    sp, rs, rb = s("seed-spark").get("median"), s("runner-sink").get("median"), s("runner-sink-before").get("median")
    kp = s("kafka-produce-ceiling").get("median")
    push, gen, e2e = (s("runner-ingest-push").get("median"), s("runner-ingest-generator").get("median"),
                      s("runner-e2e").get("median"))
    ceiling = min(x for x in (cq, kc) if x) if (cq or kc) else None
    lat = {}
    for r in ok("runner-e2e"):
        for level, v in r["extra"]["latency"].items():
            lat.setdefault(level, []).append(v)
    roles = {
        "sink at full rate (runner-sink)": [r["peak_rss_mib"] for r in ok("runner-sink")],
        "ingest under push load (runner-ingest-push)": [r["peak_rss_mib"] for r in ok("runner-ingest-push")],
        "ingest, generator at full rate": [r["peak_rss_mib"] for r in ok("runner-ingest-generator")],
        "ingest, end to end (push load + latency runs)": [r["extra"]["ingest"]["peak_rss_mib"] for r in ok("runner-e2e")],
        "sink, end to end": [r["extra"]["sink"]["peak_rss_mib"] for r in ok("runner-e2e")],
    }
    worst_rss = max((max(v) for v in roles.values() if v), default=None)

    md.append("## Goals\n")
    md.append("| goal | measured (median of this run) | met |")
    md.append("|---|---|---|")

    def goal(name, value, target, cmp):
        if value is None:
            md.append(f"| {name} | **not measured** | - |")
        else:
            md.append(f"| {name} | {value} | {'yes' if cmp else '**no**'} |")

    goal("runner sink / min(CQL ceiling, Kafka consume ceiling) >= 0.90",
         f"{rs / ceiling:.2f} ({rs:,.0f} / {ceiling:,.0f} records/s)" if rs and ceiling else None,
         0.9, rs and ceiling and rs / ceiling >= 0.9)
    goal("runner sink / seed Spark >= 5", f"{rs / sp:.1f}" if rs and sp else None, 5,
         rs and sp and rs / sp >= 5)
    rrss, srss = s("runner-sink").get("rss"), s("seed-spark").get("rss")
    goal("runner sink peak RSS / Spark peak RSS <= 0.10",
         f"{rrss / srss:.3f} ({rrss:.0f} / {srss:.0f} MiB)" if rrss and srss else None, 0.1,
         rrss and srss and rrss / srss <= 0.1)
    fl, frss = s("flink").get("median"), s("flink").get("rss")
    rcpu, fcpu, scpu = (_median([r.get("cpu_seconds") for r in ok(n)])
                        for n in ("runner-sink", "flink", "seed-spark"))
    cpus = f"; CPU s {rcpu:.1f} / {fcpu:.1f}" if rcpu and fcpu else ""
    goal("runner sink / Flink >= 3",
         f"{rs / fl:.1f} ({rs:,.0f} / {fl:,.0f} records/s{cpus})" if rs and fl else None, 3,
         rs and fl and rs / fl >= 3)
    goal("runner sink peak RSS / Flink peak RSS <= 0.10",
         f"{rrss / frss:.3f} ({rrss:.0f} / {frss:.0f} MiB)" if rrss and frss else None, 0.1,
         rrss and frss and rrss / frss <= 0.1)
    brackets = [(r.get("extra") or {}).get("ceiling") for r in ok("runner-sink")]
    bratios = [b["ratio"] for b in brackets if b and b.get("ratio")]
    goal("runner sink / its bracketing CQL ceiling (the higher of the runs right before and after it) >= 0.90, "
         "lowest repetition",
         f"lowest {min(bratios):.2f}, median {_median(bratios):.2f}" if bratios else None, 0.9,
         bratios and min(bratios) >= 0.9)
    sink_us = _median([_timed_us(r) for r in ok("runner-sink")])
    goal("runner sink CPU per row at full rate <= 12 µs (1 table)",
         f"{sink_us:.1f} µs" if sink_us else None, 12, sink_us is not None and sink_us <= 12)
    p99_20 = _median([v["accepted_to_row"]["p99_ms"] for v in lat.get("20", [])])
    goal("end-to-end p99 < 50 ms at 20% of the max push->row rate",
         f"{p99_20:.1f} ms" if p99_20 is not None else None, 50, p99_20 is not None and p99_20 < 50)
    p99s_50 = [v["accepted_to_row"]["p99_ms"] for v in lat.get("50", [])]
    goal("end-to-end p99 <= 100 ms at 50% of the max push->row rate, every repetition",
         f"median {_median(p99s_50):.1f} ms, highest {max(p99s_50):.1f} ms" if p99s_50 else None, 100,
         bool(p99s_50) and max(p99s_50) <= 100)
    goal("every runner role's peak RSS <= 50 MB (47.7 MiB)",
         f"{worst_rss:.1f} MiB (the highest of any role and repetition)" if worst_rss else None,
         RUNNER_RSS_GOAL_MIB, worst_rss is not None and worst_rss <= RUNNER_RSS_GOAL_MIB)
    md.append("")

    md.append("## Throughput\n")
    md.append("| measurement | median records/s | min-max | timed s (median) | wall s (median) | "
              "peak RSS MiB (median, max) | CPU s of the process (median) | what |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, (_, label, what) in MEASUREMENTS.items():
        if name in errors:
            md.append(f"| {label} | **failed** | | | | | | {errors[name]} |")
        elif not summary.get(name):
            why = (results.get(name) or [{}])
            reason = next((r.get("pending") for r in why if r.get("pending")), "not run")
            md.append(f"| {label} | **{reason}** | | | | | | {what} |")
        else:
            x = summary[name]
            cpu = _median([r.get("cpu_seconds") for r in ok(name)])
            md.append(f"| {label} | {x['median']:,.0f} | {x['min']:,.0f}-{x['max']:,.0f} | "
                      f"{x['seconds']:.2f} | {x['wall']:.1f} | {x['rss']:.0f}, {x['rss_max']:.0f} | "
                      f"{f'{cpu:.1f}' if cpu is not None else ''} | {what} |")
    md.append("")
    md.append(f"![records/s]({THROUGHPUT_SVG})\n")
    md.append(
        "Timed part: the ceilings time only their own work (records are generated, read or "
        "mapped before the clock starts; see each binary's header). The runner sinks are timed "
        "by their `millrace_rows_written_total` metric from the first poll that saw a row to "
        "the N-th (polled every 50 ms; connecting and the group join are in the wall column), "
        "and every table is checked to hold exactly N rows afterwards. The push figure is the "
        "client's (bench/src/bin/push-load.rs: NDJSON bodies of "
        f"{PUSH_BATCH} records built before timing, {PUSH_CONCURRENCY} keep-alive connections, "
        "first request to last `202`, each `202` meaning Kafka acknowledged every record with "
        "acks=all); its RSS and CPU columns are the runner's. The generator is timed by "
        "`millrace_records_ingested_total` (acknowledged records). The Spark job's timed "
        "part is Spark's own `triggerExecution` of the batches that carried rows (not the JVM "
        "and SparkSession start, which the wall column includes). The Flink job is timed inside its "
        "sink, from the first successful Cassandra write to the last across its two writers (the "
        "JVM and mini cluster start and the final checkpoint are in the wall column). "
        "Peak RSS is max(the process tree's "
        "summed VmRSS sampled every 100 ms, the main process's exact `ru_maxrss`); for Spark the "
        "tree is the JVM and its python driver, with the default 1 GiB driver heap; for Flink one "
        f"JVM (job manager, task executor and job) with -Xmx{FLINK_HEAP}. The ceilings' "
        "RSS is not a figure to compare: they hold all N records (produce) or all N bound rows "
        "(CQL) in memory by design, so that only the I/O is timed.\n"
    )

    md.append("## Ratios (medians of this run)\n")
    md.append(f"- sink ceiling min(CQL, Kafka consume) = {ceiling:,.0f} records/s" if ceiling else
              "- sink ceiling: n/a")
    md.append(f"- **runner sink / sink ceiling: {ratio(rs, ceiling)}** (goal >= 0.90); "
              f"per repetition: {', '.join(ratio(a['rate'], c['rate']) for a, c in zip(ok('runner-sink'), ok('cql-ceiling')))} "
              "(each against the CQL ceiling of the same repetition)")
    md.append(f"- **runner sink / seed Spark: {ratio(rs, sp)}** (goal >= 5)")
    if rrss and srss:
        md.append(f"- **runner sink peak RSS / seed Spark peak RSS: {rrss / srss:.3f}** (goal <= 0.10)")
    md.append(f"- **runner sink / Flink: {ratio(rs, fl)}** (goal >= 3); per repetition: "
              f"{', '.join(ratio(a['rate'], f['rate']) for a, f in zip(ok('runner-sink'), ok('flink'))) or 'n/a'}")
    if rrss and frss:
        md.append(f"- **runner sink peak RSS / Flink peak RSS: {rrss / frss:.3f}** (goal <= 0.10)")
    if rcpu and (fcpu or scpu):
        per = lambda c: f"{c:.1f} s ({c / ctx.records * 1e6:.0f} µs per record)"  # noqa: E731
        md.append("- CPU of the whole process (medians, start-up included): runner sink " + per(rcpu)
                  + (f", Flink {per(fcpu)} ({fcpu / rcpu:.1f}x the sink's)" if fcpu else "")
                  + (f", seed Spark {per(scpu)} ({scpu / rcpu:.1f}x)" if scpu else ""))
    md.append(f"- runner sink now / before the performance work: {ratio(rs, rb)}")
    md.append(f"- CQL ceiling / Kafka consume ceiling: {ratio(cq, kc)}")
    md.append(f"- Kafka consume + map / Kafka consume: {ratio(km, kc)} (the cost of parsing and mapping, "
              "single-threaded)")
    md.append(f"- seed Spark / sink ceiling: {ratio(sp, ceiling)}")
    if sp and s("seed-spark").get("wall"):
        md.append(f"- seed Spark rate over its whole wall time (JVM start included): "
                  f"{ctx.records / s('seed-spark')['wall']:,.0f} records/s")
    if fl:
        md.append(f"- Flink / sink ceiling: {ratio(fl, ceiling)}; Flink rate over its whole wall time "
                  f"(JVM start included): {ctx.records / s('flink')['wall']:,.0f} records/s")
    # Formats and fan-out, each against the one-table JSON sink of the
    # same repetition (side by side), and the sink's CPU per record.
    def per_rep(name, against="runner-sink"):
        pairs = [(a["rate"], b["rate"]) for a, b in zip(ok(name), ok(against))]
        return ", ".join(ratio(a, b) for a, b in pairs)

    def cpu_us(name):
        cpu = _median([r.get("cpu_seconds") for r in ok(name)])
        recs = _median([r.get("records") for r in ok(name)])
        tables = _median([(r.get("extra") or {}).get("tables", 1) for r in ok(name)]) or 1
        if not (cpu and recs):
            return "n/a"
        per_row = f" ({cpu / (recs * tables) * 1e6:.1f} per row)" if tables > 1 else ""
        return f"{cpu / recs * 1e6:.1f}{per_row}"

    for name, what in [("runner-sink-avro", "Avro sink / JSON sink"),
                       ("runner-sink-2-tables", "sink into 2 tables / into 1 table (records/s)"),
                       ("runner-sink-4-tables", "sink into 4 tables / into 1 table (records/s)")]:
        if ok(name) and ok("runner-sink"):
            md.append(f"- {what}: {ratio(s(name).get('median'), rs)}; per repetition: {per_rep(name)}; "
                      f"sink CPU µs per record (whole process, connect included): {cpu_us(name)} "
                      f"against {cpu_us('runner-sink')}")
    if ok("cql-clustering-batched") and ok("cql-clustering-single"):
        md.append(f"- clustering table, unlogged single-partition batches / single inserts (rows/s): "
                  f"{ratio(s('cql-clustering-batched').get('median'), s('cql-clustering-single').get('median'))}; "
                  f"per repetition: {per_rep('cql-clustering-batched', 'cql-clustering-single')}; "
                  f"client CPU µs per row over the timed writes: "
                  f"{_median([_timed_us(r) for r in ok('cql-clustering-batched')]) or 0:.1f} against "
                  f"{_median([_timed_us(r) for r in ok('cql-clustering-single')]) or 0:.1f}")
    def batched_line(b, u, what, per_record):
        """`runner.batch` against the same sink without it."""
        if not (ok(b) and ok(u)):
            return
        per_batch = _median([(r.get("extra") or {}).get("rows_per_batch") for r in ok(b)])
        unit = "record" if per_record else "row over the timed window"
        md.append(f"- runner sink into {what}, `runner.batch` / each row its own INSERT "
                  f"(records/s): {ratio(s(b).get('median'), s(u).get('median'))}; per repetition: "
                  f"{per_rep(b, u)}; sink CPU µs per {unit}: "
                  f"{_median([_timed_us(r, per_record) for r in ok(b)]) or 0:.1f} against "
                  f"{_median([_timed_us(r, per_record) for r in ok(u)]) or 0:.1f}"
                  + (f"; {per_batch:.1f} rows per batch (median of the repetitions)" if per_batch else ""))

    batched_line("runner-sink-clustering-batched", "runner-sink-clustering", "a clustering table", False)
    batched_line("runner-sink-4-tables-batched", "runner-sink-4-tables", "4 tables partitioned alike", True)
    md.append(f"- runner push endpoint / Kafka produce ceiling: {ratio(push, kp)}")
    md.append(f"- runner generator / Kafka produce ceiling: {ratio(gen, kp)}")
    md.append(f"- push -> row end to end / runner sink alone: {ratio(e2e, rs)} (both roles and the "
              "load client share the 2 cores with Kafka and Cassandra)")
    md.append("")

    md.append("## Sink CPU per row at full rate, beside the CQL ceiling\n")
    md.append(
        "CPU of the process over the timed window only (first row to the N-th): for a runner, "
        "its `process_cpu_seconds_total` read at the two polls that open and close the window; "
        "for the CQL ceiling, its own /proc reading around the timed writes (rows mapped before). "
        "Connecting and the group join are left out of both. Each runner-sink run has a CQL "
        "ceiling run right before and right after it (BENCH_BRACKET); its ratio is against the "
        "higher of the two. Fan-out rows give µs per record and per row (records x tables).\n")
    md.append("| rep | sink records/s | ceiling before / after | sink / higher ceiling | "
              "sink CPU µs per row | ceiling CPU µs per row (before / after) |")
    md.append("|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(ok("runner-sink")):
        b = (r.get("extra") or {}).get("ceiling") or {}
        us = _timed_us(r)
        cb, ca = b.get("cpu_us_per_row_before"), b.get("cpu_us_per_row_after")
        md.append(f"| {i} | {r['rate']:,.0f} | "
                  + (f"{b['before']:,.0f} / {b['after']:,.0f} | {b['ratio']:.2f} | " if b else "n/a | n/a | ")
                  + (f"{us:.1f} | " if us else "n/a | ")
                  + (f"{cb:.1f} / {ca:.1f} |" if cb and ca else "n/a |"))
    if bratios:
        md.append(f"\nSink / bracketing ceiling: lowest {min(bratios):.2f}, median {_median(bratios):.2f} "
                  f"(per repetition: {', '.join(f'{x:.2f}' for x in bratios)}).")
    fan = []
    for name, tables in (("runner-sink", 1), ("runner-sink-2-tables", 2), ("runner-sink-4-tables", 4)):
        per_rec = _median([_timed_us(r, per_record=True) for r in ok(name)])
        if per_rec:
            fan.append(f"| {tables} | {_median([r['rate'] for r in ok(name)]):,.0f} | "
                       f"{per_rec:.1f} | {per_rec / tables:.1f} |")
    if fan:
        md.append("\n| tables | records/s (median) | CPU µs per record | CPU µs per row |")
        md.append("|---:|---:|---:|---:|")
        md.extend(fan)
    md.append("")

    md.append("## End-to-end latency: push accepted -> row readable\n")
    if lat:
        md.append(
            "Method (bench/src/bin/e2e-latency.rs, run by `m_runner_e2e`): an ingest runner "
            "(push source) and a sink runner on one fresh topic and table; first the "
            "push->row maximum is measured (push-load sends N records flat out; first request "
            "to the sink's N-th row, the \"Push -> row\" line above), then for "
            f"{LATENCY_SECONDS:g} s (BENCH_LATENCY_SECONDS) at "
            "each of 20%, 50% and 80% of that repetition's maximum "
            "one NDJSON request is sent every 20 ms with the records due (all built before the "
            "level starts, as push-load's are); the first record of "
            "each request is a probe whose id is read back with `SELECT id ... WHERE id = ?` "
            "(consistency ONE) from the moment its request is answered `202` "
            "(Kafka acknowledged it: the record is accepted) until the row is there, every "
            "2 ms and then every 5% of the time waited (so a reading is late by at most "
            "max(2 ms, 5%), and lagging probes do not load Cassandra). Latency "
            "is 202 -> row first seen; \"from send\" adds the push request itself, including "
            "any retries: a request answered 429/503 (the endpoint's backpressure) is sent "
            "again every 50 ms, and the \"retried\" column counts those. Each level starts "
            "after the sink has caught up with the previous one. Medians of the repetitions, "
            "with min-max.\n")
        md.append("| level | target records/s | sent records/s | probes | p50 ms | p99 ms | max ms | "
                  "p50 / p99 ms from send | push request p50 / p99 ms | retried |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for level in sorted(lat, key=int):
            v = lat[level]
            acc = lambda k, v=v: [x["accepted_to_row"][k] for x in v]  # noqa: E731
            snd = lambda k, v=v: [x["sent_to_row"][k] for x in v]  # noqa: E731
            req = lambda k, v=v: [x["push_request"][k] for x in v]  # noqa: E731
            md.append(
                f"| {level}% | {_median([x['target_rate'] for x in v]):,.0f} | "
                f"{_median([x['rate'] for x in v]):,.0f} | {_median([x['probes'] for x in v]):.0f} | "
                f"{_spread(acc('p50_ms'), '{:.1f}')} | {_spread(acc('p99_ms'), '{:.1f}')} | "
                f"{_spread(acc('max_ms'), '{:.1f}')} | {_median(snd('p50_ms')):.1f} / "
                f"{_median(snd('p99_ms')):.1f} | {_median(req('p50_ms')):.1f} / {_median(req('p99_ms')):.1f} | "
                f"{_median([x.get('retried', 0) for x in v]):.0f} |")
        md.append("")
    else:
        md.append("**not measured** in this run (`runner-e2e` did not run or failed).\n")

    md.append("## Memory: peak RSS of each runner role\n")
    md.append("Goal: <= 50 MB (47.7 MiB) per runner process. Peak RSS as above (the runner is one "
              "process; `ru_maxrss` from wait4 after SIGTERM, so the drain is included).\n")
    md.append("| role | peak RSS MiB, median (min-max) | goal met |")
    md.append("|---|---:|---|")
    for role, v in roles.items():
        if v:
            md.append(f"| {role} | {_spread(v, '{:.1f}')} | "
                      f"{'yes' if max(v) <= RUNNER_RSS_GOAL_MIB else '**no**'} |")
        else:
            md.append(f"| {role} | **not measured** | - |")
    md.append("")

    md.append("## Profile of the sink at full rate\n")
    if profile and "pending" not in profile:
        md.append(
            "One extra run of this tree's sink over the same N records under "
            "`perf record -F 499 --call-graph dwarf` (perf slows it: "
            f"{profile['rate']:,.0f} records/s while profiled), folded with inferno: "
            "[sink-flamegraph.svg](sink-flamegraph.svg). Share of the sink's CPU samples "
            "(all its threads) by what the innermost recognisable frame belongs to:\n")
        md.append("| spent in | share of samples |")
        md.append("|---|---:|")
        for cat, share in profile["categories"].items():
            md.append(f"| {cat} | {share * 100:.1f}% |")
        md.append("")
    else:
        md.append(f"**not measured** in this run: {(profile or {}).get('pending', 'BENCH_PROFILE=0')}. "
                  "The last flamegraph is bench/sink-flamegraph.svg if present.\n")

    analysis = BENCH / "ANALYSIS.md"
    if analysis.exists():
        md.append(analysis.read_text().rstrip() + "\n")
    if rb and rs:
        md.append("### Before and after, measured side by side in this run\n")
        md.append("| | before | now | now / before |")
        md.append("|---|---:|---:|---:|")
        md.append(f"| sink records/s, median (min-max) | {_spread([r['rate'] for r in ok('runner-sink-before')])} | "
                  f"{_spread([r['rate'] for r in ok('runner-sink')])} | {rs / rb:.2f} |")
        if ceiling:
            md.append(f"| / sink ceiling | {rb / ceiling:.2f} | {rs / ceiling:.2f} | |")
        cb = _median([r.get("cpu_seconds") for r in ok("runner-sink-before")])
        cn = _median([r.get("cpu_seconds") for r in ok("runner-sink")])
        if cb and cn:
            per = lambda c: c / ctx.records * 1e6  # noqa: E731
            md.append(f"| sink CPU µs per row (whole process, connect included) | {per(cb):.1f} | "
                      f"{per(cn):.1f} | {cn / cb:.2f} |")
        md.append(f"| sink peak RSS MiB | {s('runner-sink-before').get('rss', 0):.1f} | "
                  f"{s('runner-sink').get('rss', 0):.1f} | |")
        md.append("")

    md.append("## Operator\n")
    op = BENCH / "results/operator-scale.json"
    if op.exists():
        try:
            data = json.loads(op.read_text())
            md.append("Measured separately by `bench/operator-scale`; the full write-up is "
                      "[OPERATOR-SCALE.md](OPERATOR-SCALE.md). From bench/results/operator-scale.json:\n")
            md.append("| series | pipelines | apply -> all Ready s | apply -> Ready p99 s | operator peak RSS MiB "
                      "| steady RSS MiB | steady writes (k8s/Kafka/CQL) |")
            md.append("|---|---:|---:|---:|---:|---:|---|")
            for series, body in data.items():
                for run in (body.get("runs") or []) if isinstance(body, dict) else []:
                    a, st = run.get("apply") or {}, run.get("steady") or {}
                    w = st.get("writes") or {}
                    md.append(f"| {series} | {run.get('pipelines', '?')} | {a.get('all_ready_seconds', '?')} | "
                              f"{(a.get('apply_to_ready_seconds') or {}).get('p99', '?')} | "
                              f"{a.get('rss_peak_mib', '?')} | {st.get('rss_mib', '?')} | "
                              f"{w.get('kubernetes', '?')}/{w.get('kafka', '?')}/{w.get('cassandra', '?')} |")
        except (OSError, ValueError) as e:
            md.append(f"bench/results/operator-scale.json is unreadable ({e}); see bench/OPERATOR-SCALE.md.")
    else:
        md.append("see bench/OPERATOR-SCALE.md")
    md.append("")

    missing = [f"- {MEASUREMENTS[n][1]}: {errors[n]}" for n in errors]
    missing += [f"- {MEASUREMENTS[n][1]}: {next(r['pending'] for r in results[n] if 'pending' in r)}"
                for n in results if not summary.get(n) and n not in errors and results[n]]
    missing += [f"- {MEASUREMENTS[n][1]}: not run ({_switched_off(n) or 'left out by BENCH_ONLY, or added after this run'})"
                for n in MEASUREMENTS if n not in results]
    if missing:
        md.append("## Not measured in this run\n")
        md.extend(missing)
        md.append("")

    md.append("## Exact commands\n")
    md.append("```sh")
    md.append("make bench   # = tests/env/status --check || tests/env/up; bench/run")
    md.append(f"BENCH_RECORDS={ctx.records} BENCH_REPS={ctx.reps} bench/run   # this run's settings")
    md.append("# set-up (untimed):")
    md.append((f"{ctx.tool('bench-tool')} create-topic {ctx.topic} --partitions {ctx.partitions}").replace(home, "~"))
    md.append((f"{ctx.tool('kafka-produce-ceiling')} --topic {ctx.topic} --records {ctx.records} --seed 1").replace(home, "~"))
    md.append((f"{ctx.tool('bench-tool')} create-table {ctx.keyspace} <measurement>_<rep>").replace(home, "~"))
    md.append("# measurements (repetition 0; the others differ in table and topic names and seeds;")
    md.append("# the runner's pipeline files are examples/randomuser.yaml re-pointed, in the log dir):")
    for name, (env, argv) in ctx.commands.items():
        if name != "fill":
            md.append(readable(env, argv))
    md.append("```\n")
    md.append("Raw results (every repetition, all RSS figures, CPU seconds, latency percentiles): "
              f"`bench/{RESULTS_JSON}`. Logs and pipeline files: `{str(ctx.log).replace(home, '~')}`.\n")
    (BENCH / REPORT_MD).write_text("\n".join(md) + "\n")


# ---------------------------------------------------------------- main ---


def rerender():
    """`harness.py --report`: writes REPORT.md and the plot again from
    results/last.json, e.g. after changing the report's layout."""
    d = json.loads((BENCH / RESULTS_JSON).read_text())
    ctx = Ctx.__new__(Ctx)
    ctx.run_id, ctx.records, ctx.reps = d["run"], d["records"], d["reps"]
    ctx.partitions = d.get("partitions", 3)
    ctx.topic = ctx.keyspace = f"millrace_bench_{ctx.run_id}"
    ctx.log = Path(d["log"])
    ctx.commands = {k: tuple(v) for k, v in d["commands"].items()}
    ctx.topics, ctx.groups = [], []
    svg_bars(d["summary"], BENCH / THROUGHPUT_SVG)
    write_report(ctx, d["machine"], d["results"], d["summary"], d["errors"], d["started"],
                 d["finished"], d.get("profile"))
    return 0


def main():
    if sys.argv[1:] == ["--report"]:
        return rerender()
    ctx = Ctx()
    only = [n for n in os.environ.get("BENCH_ONLY", "").split(",") if n]
    names = [n for n in MEASUREMENTS if (not only or n in only) and not _switched_off(n)]
    info = machine()
    info.setdefault("notes", []).append(
        f"runner measured: `{str(RUNNER).replace(str(Path.home()), '~')}`"
        + (" (the runner image's binary, as users run it, in its image's environment: "
           + ", ".join(f"`{k}={v}`" for k, v in RUNNER_IMAGE_ENV.items()) + ")"
           if "cargo-target-release" in str(RUNNER) else ""))
    loads = LoadSampler()
    loads.start()
    started = time.time()
    print(f"bench: run {ctx.run_id}: {ctx.records} records, {ctx.reps} reps: {', '.join(names)}",
          flush=True)
    results = {n: [] for n in names}
    errors = {}
    profile = None
    try:
        ctx.bench_tool("create-topic", ctx.topic, "--partitions", str(ctx.partitions))
        ctx.bench_tool("create-topic", ctx.topic + "_produce", "--partitions", str(ctx.partitions))
        fill = ctx.run("fill", [ctx.tool("kafka-produce-ceiling"), "--topic", ctx.topic,
                                "--records", str(ctx.records), "--seed", "1"])
        print(f"bench: filled {ctx.topic}: {fill['records']} records in {fill['seconds']:.1f} s",
              flush=True)
        if "runner-sink-avro" in names:
            if not REGISTRY:
                raise RuntimeError("runner-sink-avro needs MILLRACE_SCHEMA_REGISTRY_URL (the world's registry)")
            ctx.bench_tool("create-topic", ctx.topic + "_avro", "--partitions", str(ctx.partitions))
            ctx.topics.append(ctx.topic + "_avro")
            fill = ctx.run("fill-avro", [ctx.tool("kafka-produce-ceiling"), "--topic", ctx.topic + "_avro",
                                         "--records", str(ctx.records), "--seed", "1",
                                         "--avro-registry", REGISTRY])
            print(f"bench: filled {ctx.topic}_avro: {fill['records']} Avro records "
                  f"({fill['extra']['avg_record_bytes']} bytes each) in {fill['seconds']:.1f} s", flush=True)
        if WARMUP and any(MEASUREMENTS[n][0] in CASSANDRA_WRITERS for n in names):
            # Cassandra's JVM compiles its write path while the first few
            # hundred thousand rows go in: whichever measurement wrote first
            # ran at half speed. One untimed pass of the CQL ceiling first.
            settle()
            w = m_cql_ceiling(ctx, "warmup")
            print(f"bench: warm-up: {w['rate']:,.0f} rows/s (not counted)", flush=True)
            info.setdefault("notes", []).append(
                f"warm-up before the first repetition: one untimed CQL ceiling pass of the "
                f"{ctx.records:,} rows ({w['rate']:,.0f} rows/s), so Cassandra's JVM has "
                "compiled its write path before anything is measured")
        for rep in range(ctx.reps):
            # Counterbalanced: odd repetitions run the measurements in the
            # reverse order, so no measurement always follows the same one.
            for name in names if rep % 2 == 0 else names[::-1]:
                if name in errors:
                    continue
                try:
                    settled = settle()
                    r = MEASUREMENTS[name][0](ctx, rep)
                    r.update(settled)
                except Exception as e:  # one broken measurement must not void the others
                    errors[name] = str(e)
                    print(f"bench: {name} failed: {e}", flush=True)
                    continue
                results[name].append(r)
                if "pending" in r:
                    continue
                print(f"bench: rep {rep} {name}: {r['rate']:,.0f} records/s "
                      f"({r['seconds']:.2f} s timed, {r['wall_seconds']:.1f} s wall, "
                      f"peak RSS {r['peak_rss_mib']:.0f} MiB)", flush=True)
        if PROFILE and (not only or "profile" in only):
            try:
                settle()
                profile = profile_sink(ctx)
                if "pending" not in profile:
                    print(f"bench: profiled the sink ({profile['rate']:,.0f} records/s under perf): "
                          f"bench/sink-flamegraph.svg", flush=True)
            except Exception as e:
                profile = {"pending": f"profiling failed: {e}"}
                print(f"bench: profile failed: {e}", flush=True)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            for t in (ctx.topic, ctx.topic + "_produce", *ctx.topics):
                subprocess.run([ctx.tool("bench-tool"), "delete-topic", t], check=False)
            subprocess.run([ctx.tool("bench-tool"), "drop-keyspace", ctx.keyspace], check=False)
            for g in ctx.groups:
                # Kafka's own tool (a JVM start), only when a runner measurement ran.
                subprocess.run(
                    ["bash", "-c", 'source tests/env/lib/common.sh && source tests/env/lib/data.sh && '
                     'kafka_run consumer-groups --bootstrap-server "$MILLRACE_KAFKA_BOOTSTRAP" '
                     '--delete --group "$1"', "bash", g],
                    cwd=REPO, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = time.time()
    loads.stop.set()
    info["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    info["load_during"] = loads.summary()
    summary = {n: summarize([r for r in rs if "pending" not in r]) if any("pending" not in r for r in rs)
               else None for n, rs in results.items()}
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / RESULTS_JSON).write_text(json.dumps(
        {"run": ctx.run_id, "machine": info, "records": ctx.records, "reps": ctx.reps,
         "partitions": ctx.partitions, "started": started, "finished": finished,
         "log": str(ctx.log), "commands": ctx.commands, "profile": profile,
         "runner_before_rev": RUNNER_BEFORE_REV,
         "results": results, "errors": errors, "summary": summary}, indent=1) + "\n")
    svg_bars(summary, BENCH / THROUGHPUT_SVG)
    write_report(ctx, info, results, summary, errors, started, finished, profile)
    print(f"bench: wrote {BENCH / REPORT_MD}", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
