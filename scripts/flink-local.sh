#!/usr/bin/env bash
# A local Apache Flink 2.3 cluster for development, tests and examples: one JobManager and one
# TaskManager on 127.0.0.1, from PyPI's apache-flink wheel (no other download), sized for a
# 2-core machine. Idempotent; everything lives under $FERROFLOW_CACHE/flink (default
# ~/.cache/ferroflow/flink): the venv, the config, logs, temporary files and pid files.
#
#   scripts/flink-local.sh start     install if needed, start, wait for a TaskManager; prints the REST URL
#   scripts/flink-local.sh stop      stop both processes (by their pids)
#   scripts/flink-local.sh status    the REST URL and /overview, or "not running" (exit 1)
#   scripts/flink-local.sh home      print FLINK_HOME (installs if needed)
#   scripts/flink-local.sh runner-jar  compile ferroflow's SQL runner against the distribution's
#                                    lib/*.jar (javac, Java 17) and print the jar's path
#
# FERROFLOW_FLINK_PORT picks the REST port (default 8081). If the cluster does not come up,
# `start` fails with the tail of the JobManager's and TaskManager's logs.
set -euo pipefail
version=2.3.0
cache="${FERROFLOW_CACHE:-$HOME/.cache/ferroflow}/flink"
venv="$cache/venv"
port="${FERROFLOW_FLINK_PORT:-8081}"
url="http://127.0.0.1:$port"
conf="$cache/conf"
export FLINK_CONF_DIR="$conf"
export FLINK_LOG_DIR="$cache/log"
export FLINK_PID_DIR="$cache/pid"

install() {
  local stamp="$venv/.ferroflow-flink-$version"
  if [[ ! -f $stamp ]]; then
    echo "installing apache-flink==$version from PyPI into $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "apache-flink==$version" >&2
    touch "$stamp"
  fi
  home="$("$venv/bin/python" -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')"
  export FLINK_HOME="$home"
}

write_config() {
  mkdir -p "$conf" "$FLINK_LOG_DIR" "$FLINK_PID_DIR" "$cache/tmp" "$cache/web" "$cache/savepoints"
  # Logging and other defaults come from the distribution; config.yaml is ours.
  for f in "$FLINK_HOME"/conf/*; do
    case "$(basename "$f")" in
      config.yaml | flink-conf.yaml) ;;
      *) cp -f "$f" "$conf/" ;;
    esac
  done
  # The JVM flags Flink needs on Java 17 (--add-opens ...), as the distribution sets them.
  local opts
  opts="$(sed -n 's/^ *all: \(--add-.*\)$/\1/p' "$FLINK_HOME/conf/config.yaml" | head -n 1)"
  cat > "$conf/config.yaml" <<EOF
# Written by scripts/flink-local.sh: every address on 127.0.0.1, memory for a 2-core machine.
jobmanager:
  rpc: { address: 127.0.0.1, port: 6123 }
  bind-host: 127.0.0.1
  memory: { process: { size: 1024m } }
taskmanager:
  host: 127.0.0.1
  bind-host: 127.0.0.1
  numberOfTaskSlots: 4
  memory: { process: { size: 1536m } }
rest:
  address: 127.0.0.1
  bind-address: 127.0.0.1
  port: $port
parallelism: { default: 1 }
io: { tmp: { dirs: $cache/tmp } }
web: { tmpdir: $cache/web }
env: { java: { opts: { all: "$opts -Djava.io.tmpdir=$cache/tmp" } } }
state: { savepoints: { dir: "file://$cache/savepoints" } }
python:
  client: { executable: $venv/bin/python }
  executable: $venv/bin/python
EOF
}

runner_jar() {
  local src jar classes
  src="$(cd "$(dirname "$0")/.." && pwd)/crates/ferroflow-flink/java/FerroflowSqlRunner.java"
  jar="$cache/ferroflow-sql-runner.jar"
  if [[ ! -f $jar || $src -nt $jar ]]; then
    classes="$cache/runner-classes"
    rm -rf "$classes"
    mkdir -p "$classes"
    javac -nowarn -d "$classes" -cp "$FLINK_HOME/lib/*" "$src" >&2
    jar cf "$jar.tmp" -C "$classes" . >&2
    mv "$jar.tmp" "$jar"
  fi
  echo "$jar"
}

running() {
  curl -fsS --max-time 2 "$url/overview" 2>/dev/null
}

pids() {
  cat "$FLINK_PID_DIR"/*.pid 2>/dev/null || true
}

logs_tail() {
  for f in "$FLINK_LOG_DIR"/*.log "$FLINK_LOG_DIR"/*.out; do
    [[ -f $f ]] || continue
    echo "--- $f (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
}

case "${1:-status}" in
  home)
    install
    echo "$FLINK_HOME"
    ;;
  runner-jar)
    install
    runner_jar
    ;;
  start)
    install
    runner_jar >/dev/null
    if running >/dev/null; then
      echo "$url"
      exit 0
    fi
    write_config
    "$FLINK_HOME/bin/jobmanager.sh" start >&2
    "$FLINK_HOME/bin/taskmanager.sh" start >&2
    for _ in $(seq 1 120); do
      if overview="$(running)" && [[ $overview == *'"taskmanagers":'[1-9]* ]]; then
        echo "$url"
        exit 0
      fi
      sleep 1
    done
    echo "the Flink cluster did not report a TaskManager at $url/overview within 120 s" >&2
    logs_tail
    exit 1
    ;;
  stop)
    for pid in $(pids); do
      kill "$pid" 2>/dev/null || true
    done
    for pid in $(pids); do
      for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$FLINK_PID_DIR"/*.pid
    ;;
  status)
    if overview="$(running)"; then
      echo "$url"
      echo "$overview"
    else
      echo "not running" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status|home" >&2
    exit 2
    ;;
esac
