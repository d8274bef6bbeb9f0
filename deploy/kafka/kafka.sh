#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) from Kafka's own jars, fetched with Maven.
#   kafka.sh up      start it (idempotent), wait until it serves, print the bootstrap address
#   kafka.sh down    stop it (controlled shutdown)
#   kafka.sh status  say whether it runs
# Environment: KAFKA_LOCAL_DIR (default <repo>/.local/kafka), KAFKA_PORT (9092),
# KAFKA_CONTROLLER_PORT (KAFKA_PORT + 1), KAFKA_DATA_DIR (<local dir>/data-<port>); for a
# secured broker (tests): KAFKA_EXTRA_CONFIG,
# a file of server properties that override the defaults (listeners, TLS), and
# KAFKA_SCRAM_USERS, "name:password ..." created with SCRAM-SHA-256 and -512 at first start.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${KAFKA_LOCAL_DIR:-$root/.local/kafka}
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
libs=$dir/libs
data=${KAFKA_DATA_DIR:-$dir/data-$port}
pidfile=$dir/broker-$port.pid
log=$dir/broker-$port.log

die() { echo "kafka.sh: $*" >&2; exit 1; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

fetch_jars() {
  [ -f "$libs/.complete" ] && return 0
  command -v java >/dev/null || die "java is not installed (Java 17 or newer is needed)"
  command -v mvn >/dev/null || die "mvn is not installed (Maven fetches the broker's jars)"
  echo "kafka.sh: fetching Apache Kafka jars with Maven into $libs ..." >&2
  mkdir -p "$libs"
  mvn -B -q -f "$here/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs" >&2 \
    || die "Maven could not fetch the Kafka jars (see the output above)"
  touch "$libs/.complete"
}

ready() { grep -q "Kafka Server started" "$log" 2>/dev/null; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up() {
  if running; then
    echo "127.0.0.1:$port"
    return 0
  fi
  for p in "$port" "$cport"; do
    listening "$p" && die "port $p is already in use by another process (set KAFKA_PORT to choose another)"
  done
  fetch_jars
  mkdir -p "$data"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@LOG_DIR@|$data|g" \
    "$here/server.properties.in" > "$dir/server-$port.properties"
  if [ -n "${KAFKA_EXTRA_CONFIG:-}" ]; then  # later lines win
    [ -f "$KAFKA_EXTRA_CONFIG" ] || die "KAFKA_EXTRA_CONFIG: no such file: $KAFKA_EXTRA_CONFIG"
    cat "$KAFKA_EXTRA_CONFIG" >> "$dir/server-$port.properties"
  fi
  scram=()
  for user in ${KAFKA_SCRAM_USERS:-}; do
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$mechanism=[name=${user%%:*},password=${user#*:}]")
    done
  done
  if [ ! -f "$data/meta.properties" ]; then
    cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -cp "$libs/*" -Dlog4j2.configurationFile="$here/log4j2.yaml" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$dir/server-$port.properties" "${scram[@]}" >/dev/null \
      || die "could not format the broker's storage in $data"
  fi
  : > "$log"
  nohup java -Xms256m -Xmx768m -cp "$libs/*" -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    kafka.Kafka "$dir/server-$port.properties" >>"$log" 2>&1 </dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 1 240); do
    if ready; then
      echo "127.0.0.1:$port"
      return 0
    fi
    running || { tail -n 30 "$log" >&2; die "the broker exited during start-up (log: $log)"; }
    sleep 0.5
  done
  tail -n 30 "$log" >&2
  die "the broker did not report 'Kafka Server started' within 120 s (log: $log)"
}

down() {
  if ! running; then
    rm -f "$pidfile"
    echo "kafka.sh: no local broker runs on port $port" >&2
    return 0
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "kafka.sh: broker stopped" >&2; return 0; }
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "kafka.sh: broker did not stop in 60 s; killed" >&2
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "running: 127.0.0.1:$port (pid $(cat "$pidfile"))"; else echo "not running"; exit 1; fi ;;
  *) die "usage: kafka.sh up|down|status" ;;
esac
