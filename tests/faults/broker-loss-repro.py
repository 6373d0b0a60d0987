"""Driver of tests/faults/broker-loss-repro: pushes numbered records to the
ingest runner, kills one Kafka broker with SIGKILL, and measures when rows of
records accepted after the kill reach the Cassandra table.

Run with the cqlsh venv's python (it has cassandra-driver). Arguments come
from the environment the shell script sets:

  REPRO_PUSH_URL     the ingest's push endpoint
  REPRO_KEYSPACE     keyspace.table to poll (created by this script)
  REPRO_KILL_PID     pid of the broker to kill
  REPRO_WARMUP       seconds of pushing before the kill (default 20)
  REPRO_WATCH        seconds to watch after the kill (default 90)
  MILLRACE_CASSANDRA_CONTACT_POINTS, _USERNAME, _PASSWORD

Prints one line of figures, `RESULT ...`, at the end. With the argument
`setup`, only creates the keyspace (replication 1) and the table.
"""

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

RATE = 50  # records a second, in batches of 5 every 100 ms
BATCH = 5


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}] {msg}", flush=True)


class Pusher(threading.Thread):
    """Pushes batches of {seq, sent}; records when each seq was accepted."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.seq = 0
        self.accepted = {}  # seq -> time accepted (202)
        self.refused = 0
        self.stop = False
        self.lock = threading.Lock()

    def run(self):
        while not self.stop:
            start = time.time()
            seqs = list(range(self.seq, self.seq + BATCH))
            body = "\n".join(json.dumps({"seq": s, "sent": int(start * 1000)}) for s in seqs)
            req = urllib.request.Request(
                self.url, data=body.encode(), method="POST",
                headers={"Content-Type": "application/x-ndjson"})
            try:
                with urllib.request.urlopen(req, timeout=20) as resp:
                    ok = resp.status == 202
            except (urllib.error.URLError, OSError):
                ok = False
            if ok:
                now = time.time()
                with self.lock:
                    for s in seqs:
                        self.accepted[s] = now
                self.seq += BATCH
            else:
                # The same seqs again: a refused batch was not produced whole.
                self.refused += 1
            time.sleep(max(0.0, BATCH / RATE - (time.time() - start)))


def connect():
    host, port = os.environ["MILLRACE_CASSANDRA_CONTACT_POINTS"].split(",")[0].rsplit(":", 1)
    auth = PlainTextAuthProvider(os.environ["MILLRACE_CASSANDRA_USERNAME"],
                                 os.environ["MILLRACE_CASSANDRA_PASSWORD"])
    cluster = Cluster([host], port=int(port), auth_provider=auth)
    return cluster, cluster.connect()


def setup():
    """Creates the keyspace (replication 1) and the run's table."""
    keyspace, table = os.environ["REPRO_KEYSPACE"].split(".")
    cluster, session = connect()
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.{table} (seq bigint PRIMARY KEY, sent bigint)")
    cluster.shutdown()
    return 0


def main():
    keyspace, table = os.environ["REPRO_KEYSPACE"].split(".")
    kill_pid = int(os.environ["REPRO_KILL_PID"])
    warmup = float(os.environ.get("REPRO_WARMUP", "20"))
    watch = float(os.environ.get("REPRO_WATCH", "90"))
    cluster, session = connect()
    lookup = session.prepare(f"SELECT seq FROM {keyspace}.{table} WHERE seq IN ?")

    pusher = Pusher(os.environ["REPRO_PUSH_URL"])
    pusher.start()

    def present(seqs):
        found = set()
        seqs = list(seqs)
        for i in range(0, len(seqs), 100):
            for row in session.execute(lookup, [seqs[i:i + 100]]):
                found.add(row.seq)
        return found

    time.sleep(warmup)
    with pusher.lock:
        before = dict(pusher.accepted)
    missing = set(before) - present(before)
    log(f"before the kill: {len(before)} records accepted, {len(missing)} not yet in the table")

    killed_at = time.time()
    os.kill(kill_pid, signal.SIGKILL)
    log(f"killed broker pid {kill_pid}")

    first_new = None      # first row of a record accepted after the kill
    seen = set()
    last_report = 0.0
    while time.time() - killed_at < watch:
        time.sleep(0.5)
        with pusher.lock:
            after = {s: t for s, t in pusher.accepted.items() if t > killed_at}
        todo = set(after) - seen
        seen |= present(todo)
        now = time.time()
        if first_new is None and seen:
            first_new = now - killed_at
            log(f"first row of a record accepted after the kill: {first_new:.1f}s after the kill")
        if now - last_report >= 5:
            last_report = now
            log(f"t+{now - killed_at:.0f}s: accepted after kill {len(after)}, in table {len(seen)}, "
                f"refused batches {pusher.refused}")
    pusher.stop = True
    with pusher.lock:
        after = {s: t for s, t in pusher.accepted.items() if t > killed_at}
    first_accept = min(after.values()) - killed_at if after else None
    print(
        "RESULT "
        f"first_new_row_s={'none' if first_new is None else f'{first_new:.1f}'} "
        f"first_accept_after_kill_s={'none' if first_accept is None else f'{first_accept:.1f}'} "
        f"accepted_after_kill={len(after)} in_table={len(seen)}",
        flush=True)
    cluster.shutdown()
    return 0 if first_new is not None else 1


if __name__ == "__main__":
    sys.exit(setup() if sys.argv[1:] == ["setup"] else main())
