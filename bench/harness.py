#!/usr/bin/env python3
"""millrace benchmark driver: runs every measurement side by side, several
times, on one pre-filled topic, and writes bench/REPORT.md.

Called by bench/run (which checks the test world and builds what is needed);
standard library only, so it runs under any Python 3.9+ (the Spark
measurement runs spark-submit from the bench venv, see bench/lib/spark.sh).

Adding a measurement: write one function `def m_<name>(ctx, rep) -> dict`
returning at least {"records": n, "seconds": s} (the timed part), usually by
`ctx.run([...])`, which also samples the process tree's peak RSS; register it
in MEASUREMENTS with a label and a description. Return `pending("why")` while
it cannot run yet: the report then shows a marked placeholder.

Environment (all optional):
  BENCH_RECORDS   records in the pre-filled topic          (200000)
  BENCH_REPS      repetitions of every measurement           (3)
  BENCH_PARTITIONS partitions of the topic (the example's)   (3)
  BENCH_ONLY      comma-separated measurement names to run  (all)
  BENCH_KEEP=1    keep the topic and keyspace afterwards
"""

import json
import math
import os
import platform
import shlex
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


class Ctx:
    def __init__(self):
        self.records = int(os.environ.get("BENCH_RECORDS", "200000"))
        self.reps = int(os.environ.get("BENCH_REPS", "3"))
        self.partitions = int(os.environ.get("BENCH_PARTITIONS", "3"))
        self.run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self.topic = f"millrace_bench_{self.run_id}"
        self.keyspace = f"millrace_bench_{self.run_id}"
        self.commands = {}  # measurement -> the first command line it ran
        self.groups = []  # consumer groups measurements left in Kafka
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


def _checked(ctx, result, table):
    """Adds the table's row count; a measurement that lost rows is void."""
    rows = int(ctx.bench_tool("count", ctx.keyspace, table))
    result["rows_in_table"] = rows
    if rows != ctx.records:
        raise RuntimeError(f"{table}: {rows} rows, expected {ctx.records}")
    return result


def m_cql_ceiling(ctx, rep):
    table = f"cql_ceiling_{rep}"
    r = ctx.run(
        "cql-ceiling",
        [ctx.tool("cql-ceiling"), "--topic", ctx.topic, "--keyspace", ctx.keyspace,
         "--table", table, "--concurrency", "256"],
    )
    return _checked(ctx, r, table)


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


def _runner_pipeline_file(ctx, table, path):
    """examples/randomuser.yaml, pointed at the run's topic and a fresh
    table. Edited as text (the harness has no YAML library); each line
    replaced must exist exactly once, so a changed example fails loudly."""
    text = (REPO / "examples/randomuser.yaml").read_text()
    for old, new in [
        ("  name: randomuser\n", f"  name: bench-{ctx.run_id}-{table.replace('_', '-')}\n"),
        ("      name: users_created\n", f"      name: {ctx.topic}\n"),
        ("      name: spark_streams\n", f"      name: {ctx.keyspace}\n"),
        ("      name: created_users\n", f"      name: {table}\n"),
    ]:
        if text.count(old) != 1:
            raise RuntimeError(f"examples/randomuser.yaml: expected one {old.strip()!r}")
        text = text.replace(old, new)
    path.write_text(text)


def _rows_written(url):
    """The runner's rows_written counter from its /metrics, or None."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            for line in r.read().decode().splitlines():
                name, _, value = line.partition(" ")
                if name.split("{")[0] in ("rows_written_total", "millrace_rows_written_total",
                                          "rows_written", "millrace_rows_written"):
                    return int(float(value))
    except (OSError, ValueError):
        return None
    return None


def m_runner_sink(ctx, rep):
    """The runner's sink (`millrace-runner sink`) on the pre-filled topic,
    writing a fresh table, until its rows_written metric reaches N. Timed
    from the first row written to the N-th (the metric polled every 50 ms),
    like the ceilings: connecting and the group join are excluded (their
    cost is the wall column). Opt-in while the runner is being written:
    BENCH_RUNNER=<path of a release millrace-runner>."""
    binary = os.environ.get("BENCH_RUNNER")
    if not binary:
        return pending("runner sink: not yet measured")
    table = f"runner_sink_{rep}"
    ctx.bench_tool("create-table", ctx.keyspace, table)
    # The runner's consumer group (millrace.<namespace>.<name>), deleted at cleanup.
    ctx.groups.append(f"millrace.default.bench-{ctx.run_id}-{table.replace('_', '-')}")
    pipeline = ctx.log / f"{table}.yaml"
    _runner_pipeline_file(ctx, table, pipeline)
    port = 18900 + rep
    metrics = f"http://127.0.0.1:{port}/metrics"
    argv = [binary, "sink", "--pipeline", str(pipeline), "--listen", f"127.0.0.1:{port}",
            "--log-format", "json"]
    ctx.commands.setdefault("runner-sink", ({}, argv))
    errlog = ctx.log / "runner-sink.stderr"
    started = time.time()
    with open(errlog, "ab") as err:
        proc = subprocess.Popen(argv, stdout=err, stderr=err)
        sampler = RssSampler(proc.pid)
        sampler.start()
        first = last = None
        try:
            deadline = started + 1800
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"runner sink exited {proc.returncode}; see {errlog}")
                n = _rows_written(metrics)
                now = time.time()
                if n and first is None:
                    first = (now, n)
                if n is not None and n >= ctx.records:
                    last = (now, n)
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"runner sink: rows_written below {ctx.records} after 30 min")
        finally:
            proc.terminate()
            try:
                _, _, usage = os.wait4(proc.pid, 0)
            except ChildProcessError:
                usage = None
            sampler.stop.set()
            sampler.join()
    # Rows counted from the first poll that saw any: those before it are
    # not in the timed interval.
    records = last[1] - first[1]
    seconds = last[0] - first[0]
    maxrss = usage.ru_maxrss if usage else 0
    result = {
        "measurement": "runner-sink", "records": records, "seconds": seconds,
        "rate": records / seconds if seconds > 0 else 0.0,
        "note": "rows_written metric, first row to the N-th, polled every 50 ms",
        "extra": {"rows_before_timing": first[1]},
        "wall_seconds": last[0] - started,
        "peak_rss_mib": max(sampler.peak_tree_kb, maxrss) / 1024,
        "maxrss_main_mib": maxrss / 1024,
        "peak_tree_sampled_mib": sampler.peak_tree_kb / 1024,
        "peak_process_hwm_mib": sampler.peak_process_kb / 1024,
        "cpu_seconds": (usage.ru_utime + usage.ru_stime) if usage else None,
    }
    return _checked(ctx, result, table)


def m_runner_ingest(ctx, rep):
    # To do: the push endpoint and the generator into a fresh topic,
    # records/s, beside kafka-produce-ceiling.
    return pending("runner ingest (push endpoint, generator): not yet measured")


# name -> (function, label, what it is)
MEASUREMENTS = {
    "kafka-produce-ceiling": (m_kafka_produce_ceiling, "Kafka produce ceiling",
                              "plain rdkafka producer, the runner's settings (idempotent, acks=all, lz4)"),
    "kafka-ceiling": (m_kafka_ceiling, "Kafka consume ceiling",
                      "plain rdkafka consumer reading the whole topic"),
    "kafka-ceiling-map": (m_kafka_ceiling_map, "Kafka consume + map",
                          "the same, plus JSON parse and RowMapper::map per record (no CQL)"),
    "cql-ceiling": (m_cql_ceiling, "CQL ceiling",
                    "plain scylla-driver loop, prepared INSERT, 256 in flight, LOCAL_QUORUM; rows pre-mapped"),
    "seed-spark": (m_seed_spark, "Seed's Spark job",
                   "pyspark 3.5.3 local[2], Kafka source + spark-cassandra-connector, availableNow"),
    "runner-sink": (m_runner_sink, "Runner sink", "millrace runner, Kafka -> Cassandra"),
    "runner-ingest": (m_runner_ingest, "Runner ingest", "millrace runner, push/generator -> Kafka"),
}


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


def write_report(ctx, info, results, summary, errors, started, finished):
    s = lambda k: summary.get(k) or {}  # noqa: E731
    md = []
    md.append("# millrace benchmarks\n")
    md.append(
        "Written by `make bench` (bench/run -> bench/harness.py); do not edit by hand. "
        "Every measurement ran in the same run, interleaved repetition by repetition, "
        "on one pre-filled topic, against the test world's single-node Kafka and Cassandra "
        "on the same machine. The machine is shared and noisy: compare the ratios, "
        "not the absolute figures.\n"
    )
    md.append("## Machine and run\n")
    md.append(f"- CPU: {info['cpu']}, nproc {info['nproc']}; memory {info['memory_gib']} GiB; "
              f"kernel {info['kernel']}")
    md.append(f"- load average before the run: {' '.join(info['load_before'])}")
    md.append(f"- run `{ctx.run_id}`, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))}"
              f"-{time.strftime('%H:%M UTC', time.gmtime(finished))}; "
              f"{ctx.records:,} records, {ctx.partitions} partitions, {ctx.reps} repetitions")
    avg = (results.get("kafka-produce-ceiling") or [{}])[0].get("extra", {}).get("avg_record_bytes")
    if avg:
        md.append(f"- records: randomuser.me-shaped JSON, {avg} bytes on average "
                  "(seeded generator, bench/src/users.rs); 11 columns per row (examples/randomuser.yaml)")
    md.append("")
    md.append("## Throughput\n")
    md.append("| measurement | median records/s | min-max | timed s (median) | wall s (median) | "
              "peak RSS MiB (median, max) | what |")
    md.append("|---|---:|---:|---:|---:|---:|---|")
    for name, (_, label, what) in MEASUREMENTS.items():
        if name in errors:
            md.append(f"| {label} | **failed** | | | | | {errors[name]} |")
        elif not summary.get(name):
            why = (results.get(name) or [{}])
            reason = next((r.get("pending") for r in why if r.get("pending")), "not run")
            md.append(f"| {label} | **{reason}** | | | | | {what} |")
        else:
            x = summary[name]
            md.append(f"| {label} | {x['median']:,.0f} | {x['min']:,.0f}-{x['max']:,.0f} | "
                      f"{x['seconds']:.2f} | {x['wall']:.1f} | {x['rss']:.0f}, {x['rss_max']:.0f} | {what} |")
    md.append("")
    md.append("![records/s](throughput.svg)\n")
    md.append(
        "Timed part: the ceilings time only their own work (records are generated, read or "
        "mapped before the clock starts; see each binary's header). The Spark job's timed "
        "part is Spark's own `triggerExecution` of the batches that carried rows (reading, "
        "parsing and writing; not the JVM and session start, which the wall column includes). "
        "Peak RSS is max(the process tree's summed VmRSS sampled every 100 ms, the main process's "
        "exact `ru_maxrss`); for Spark the tree is the JVM and its python driver, with the "
        "default 1 GiB driver heap. The ceilings' RSS is not a figure to compare: they hold "
        "all N records (produce) or all N bound rows and their tasks (CQL) in memory by design, "
        "so that only the I/O is timed.\n"
    )
    md.append("## Ratios (medians of this run)\n")
    cq, kc, km = s("cql-ceiling").get("median"), s("kafka-ceiling").get("median"), s("kafka-ceiling-map").get("median")
    sp, rs = s("seed-spark").get("median"), s("runner-sink").get("median")
    ceiling = min(x for x in (cq, kc) if x) if (cq or kc) else None
    md.append(f"- sink ceiling min(CQL, Kafka consume) = {ceiling:,.0f} records/s" if ceiling else
              "- sink ceiling: n/a")
    md.append(f"- CQL ceiling / Kafka consume ceiling: {ratio(cq, kc)}")
    md.append(f"- Kafka consume + map / Kafka consume: {ratio(km, kc)} (the cost of parsing and mapping)")
    md.append(f"- seed Spark / sink ceiling: {ratio(sp, ceiling)}")
    if sp and s("seed-spark").get("wall"):
        md.append(f"- seed Spark rate over its whole wall time (JVM start included): "
                  f"{ctx.records / s('seed-spark')['wall']:,.0f} records/s")
    md.append(f"- runner sink / sink ceiling (goal >= 0.90): "
              f"{ratio(rs, ceiling) if rs else '**runner sink: not yet measured**'}")
    md.append(f"- runner sink / seed Spark (goal >= 5): "
              f"{ratio(rs, sp) if rs else '**runner sink: not yet measured**'}")
    if s("seed-spark").get("rss"):
        md.append(f"- runner peak RSS / seed Spark peak RSS (goal <= 0.10): "
                  + (ratio(s('runner-sink')['rss'], s('seed-spark')['rss']) if rs
                     else "**runner sink: not yet measured**"))
    md.append("")
    md.append("## Not yet measured\n")
    if not summary.get("runner-sink"):
        md.append("- **runner sink: not yet measured** (`m_runner_sink` in bench/harness.py is ready "
                  "and opt-in: `BENCH_RUNNER=<release millrace-runner> bench/run`)")
    md.append("- runner ingest: push endpoint and generator into Kafka (placeholder `m_runner_ingest`)")
    md.append("- end-to-end latency p50/p99/max at fixed rates; operator scale; operator RSS; "
              "profiles of the sink at full rate (issue 8, items 3-5)")
    md.append("")
    md.append("## Exact commands\n")
    md.append("```sh")
    md.append("source ~/.cache/millrace/world/env")
    md.append(f"BENCH_RECORDS={ctx.records} BENCH_REPS={ctx.reps} nice -n 10 bench/run   # or: make bench")
    md.append("# set-up (untimed):")
    md.append((f"{ctx.tool('bench-tool')} create-topic {ctx.topic} --partitions {ctx.partitions}").replace(str(Path.home()), "~"))
    md.append((f"{ctx.tool('kafka-produce-ceiling')} --topic {ctx.topic} --records {ctx.records} --seed 1").replace(str(Path.home()), "~"))
    md.append((f"{ctx.tool('bench-tool')} create-table {ctx.keyspace} spark_<rep>").replace(str(Path.home()), "~"))
    md.append("# measurements (repetition 0; the others differ in table names and seeds):")
    for name, (env, argv) in ctx.commands.items():
        if name != "fill":
            md.append(readable(env, argv))
    md.append("```\n")
    md.append(f"Raw results (all RSS figures per repetition; `cpu_seconds` of the measured process in runs after 20261125161403): `bench/results/last.json`. "
              f"Logs: `{str(ctx.log).replace(str(Path.home()), '~')}`.\n")
    (BENCH / "REPORT.md").write_text("\n".join(md) + "\n")


# ---------------------------------------------------------------- main ---


def rerender():
    """`harness.py --report`: writes REPORT.md and the plot again from
    results/last.json, e.g. after changing the report's layout."""
    d = json.loads((BENCH / "results/last.json").read_text())
    ctx = Ctx.__new__(Ctx)
    ctx.run_id, ctx.records, ctx.reps = d["run"], d["records"], d["reps"]
    ctx.partitions = d.get("partitions", 3)
    ctx.topic = ctx.keyspace = f"millrace_bench_{ctx.run_id}"
    ctx.log = Path(d["log"])
    ctx.commands = {k: tuple(v) for k, v in d["commands"].items()}
    svg_bars(d["summary"], BENCH / "throughput.svg")
    write_report(ctx, d["machine"], d["results"], d["summary"], d["errors"], d["started"], d["finished"])
    return 0


def main():
    if sys.argv[1:] == ["--report"]:
        return rerender()
    ctx = Ctx()
    only = [n for n in os.environ.get("BENCH_ONLY", "").split(",") if n]
    names = [n for n in MEASUREMENTS if not only or n in only]
    info = machine()
    started = time.time()
    print(f"bench: run {ctx.run_id}: {ctx.records} records, {ctx.reps} reps: {', '.join(names)}",
          flush=True)
    results = {n: [] for n in names}
    errors = {}
    try:
        ctx.bench_tool("create-topic", ctx.topic, "--partitions", str(ctx.partitions))
        ctx.bench_tool("create-topic", ctx.topic + "_produce", "--partitions", str(ctx.partitions))
        fill = ctx.run("fill", [ctx.tool("kafka-produce-ceiling"), "--topic", ctx.topic,
                                "--records", str(ctx.records), "--seed", "1"])
        print(f"bench: filled {ctx.topic}: {fill['records']} records in {fill['seconds']:.1f} s",
              flush=True)
        for rep in range(ctx.reps):
            for name in names:
                if name in errors:
                    continue
                try:
                    r = MEASUREMENTS[name][0](ctx, rep)
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
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            for t in (ctx.topic, ctx.topic + "_produce"):
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
    summary = {n: summarize([r for r in rs if "pending" not in r]) if any("pending" not in r for r in rs)
               else None for n, rs in results.items()}
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results/last.json").write_text(json.dumps(
        {"run": ctx.run_id, "machine": info, "records": ctx.records, "reps": ctx.reps,
         "partitions": ctx.partitions, "started": started, "finished": finished,
         "log": str(ctx.log), "commands": ctx.commands,
         "results": results, "errors": errors, "summary": summary}, indent=1) + "\n")
    svg_bars(summary, BENCH / "throughput.svg")
    write_report(ctx, info, results, summary, errors, started, finished)
    print(f"bench: wrote {BENCH / 'REPORT.md'}", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
