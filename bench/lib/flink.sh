#!/usr/bin/env bash
# Builds the Flink baseline's job (bench/flink/) once into
# ~/.cache/millrace/bench/flink (never into the repository), with mvn from
# Maven Central only (the default local repository, ~/.m2):
#   $WORK/flink/millrace-flink-bench.jar  the job; its manifest's Class-Path
#   $WORK/flink/lib/*.jar                 names these (Flink 2.2.1, the Kafka
#                                         connector, the Cassandra driver...)
# so `java -jar $WORK/flink/millrace-flink-bench.jar` runs it. Rebuilt only
# when a file under bench/flink/ changes (the hash of their contents is kept
# in $WORK/flink/source.sha256, written last).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${MILLRACE_HOME:-$HOME/.cache/millrace}/bench"
OUT="$WORK/flink"
mkdir -p "$OUT"

hash="$(cd "$REPO/bench/flink" && find . -type f -not -path './target/*' -print0 | sort -z \
  | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [[ -s "$OUT/millrace-flink-bench.jar" && "$(cat "$OUT/source.sha256" 2>/dev/null)" == "$hash" ]]; then
  exit 0
fi

echo "bench: building the Flink job (bench/flink) with mvn into $OUT" >&2
rm -f "$OUT/source.sha256"
rm -rf "$OUT/build"
mvn -q -B -f "$REPO/bench/flink/pom.xml" package -Dbuild.dir="$OUT/build"
rm -rf "$OUT/lib" "$OUT/millrace-flink-bench.jar"
mv "$OUT/build/lib" "$OUT/lib"
mv "$OUT/build/millrace-flink-bench.jar" "$OUT/millrace-flink-bench.jar"
rm -rf "$OUT/build"
echo "$hash" >"$OUT/source.sha256"
