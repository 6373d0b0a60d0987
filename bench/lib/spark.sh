#!/usr/bin/env bash
# Fetches what the seed's Spark job needs, once, into ~/.cache/millrace/bench
# (never into the repository), through the package registries only:
#   - pyspark (Spark 3.5.3, Scala 2.12) from PyPI into a venv;
#   - the Kafka source and the Cassandra connector from Maven Central with
#     mvn (bench/seed-spark/pom.xml), not Spark's `--packages`, whose Ivy
#     resolution would try other repositories.
# Writes $WORK/spark-jars.txt: the comma-separated --jars list, leaving out
# jars pyspark already ships (another version of scala-library, slf4j,
# snappy... on the classpath twice breaks Spark in odd ways).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${MILLRACE_HOME:-$HOME/.cache/millrace}/bench"
PYSPARK_VERSION=3.5.3
mkdir -p "$WORK"

if [[ ! -x "$WORK/venv/bin/spark-submit" ]]; then
  echo "bench: installing pyspark $PYSPARK_VERSION into $WORK/venv" >&2
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q "pyspark==$PYSPARK_VERSION"
fi

jars="$WORK/spark-jars"
if [[ ! -s "$WORK/spark-jars.txt" ]]; then
  echo "bench: fetching the Kafka source and Cassandra connector jars with mvn" >&2
  mvn -q -B -f "$REPO/bench/seed-spark/pom.xml" dependency:copy-dependencies \
    -DexcludeScope=provided -DoutputDirectory="$jars"
  spark_jars="$("$WORK/venv/bin/python" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
  # Artifact name without version: "scala-library-2.12.19.jar" -> "scala-library".
  base() { sed -E 's/-[0-9][0-9A-Za-z.]*(-[A-Za-z0-9.-]+)?\.jar$//' <<<"$1"; }
  declare -A shipped=()
  for j in "$spark_jars"/*.jar; do shipped["$(base "$(basename "$j")")"]=1; done
  list=()
  for j in "$jars"/*.jar; do
    [[ -n "${shipped[$(base "$(basename "$j")")]:-}" ]] || list+=("$j")
  done
  (IFS=,; echo "${list[*]}") >"$WORK/spark-jars.txt"
fi
