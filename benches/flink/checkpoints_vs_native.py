#!/usr/bin/env python3
"""Checkpointing side by side: the same windowed streaming job natively (`ferroflow run`,
release build) and on the local Flink cluster (scripts/flink-local.sh, through the SQL runner
the `flink` job type uses), in one run, checkpoints every 1 s on both.

Job: a generator at 1000 rows/s in all (key uniform in 0..999, value; event time following
the wall clock: ferroflow's generator steps 1 ms per row, Flink's `datagen` rows take
CURRENT_ROW_TIMESTAMP(); watermark 30 ms behind) -> per key, 1-second tumbling event-time
windows with count(*) and sum(value) -> a file sink (CSV part files in a directory,
exactly-once on both sides: files become visible when the checkpoint that holds them
completes). Parallelism 2 on both sides. The rate is fixed (Flink's datagen cannot give
event time in steps of a row without keeping its whole sequence in memory), so this compares
checkpointing and recovery, not throughput (for that see benches/checkpoints.rs).

Measured per side:
- checkpoint duration and size, medians (ferroflow: its per-checkpoint lines; Flink: the
  statistics of its REST API, `/jobs/<id>/checkpoints`);
- recovery: the job is aborted after a while (ferroflow: SIGKILL; Flink: cancelled with its
  checkpoints retained), then started again from its last checkpoint; the time from the
  restart to its first completed checkpoint (its new output committed; ferroflow: the
  `checkpoint N complete` line, Flink: the REST API's completed count), and for Flink to all
  tasks RUNNING. Restored pending files committed at start-up do not count as new output.

Usage: python3 benches/flink/checkpoints_vs_native.py [SECONDS]   (default 30 per run)
Needs the release binary: cargo build --release --bin ferroflow
"""
import base64
import os
import re
import signal
import statistics
import subprocess
import sys
import time

# The cluster's REST helpers and paths are the other Flink comparison's.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flink_vs_native import CACHE, FERROFLOW, SCRIPT, rest, sh, upload  # noqa: E402

WORK = os.path.join(CACHE, "bench-flink-checkpoints")
KEYS = 1_000
RATE = 1_000


# ---- ferroflow ----------------------------------------------------------------------------

def native_spec(out, ckpt):
    return f"""name: ckpt-bench
parallelism: 2
checkpoint: {{interval: 1s, dir: {ckpt}}}
sources:
  - name: events
    type: generator
    batch_size: 50
    rate: {RATE}
    seed: 1
    columns:
      - {{name: key, kind: int, min: 0, max: {KEYS - 1}}}
      - {{name: value, kind: int, min: 0, max: 100}}
      - {{name: ts, kind: event_time, start_ms: 0, step_ms: 1, max_disorder_ms: 0}}
    watermark: {{column: ts, max_out_of_orderness: 30ms}}
nodes:
  - name: per_key
    input: events
    window:
      key_by: [key]
      time_column: ts
      tumbling: 1s
      aggregates: [count(*) AS n, sum(value) AS total]
sinks:
  - {{name: out, input: per_key, path: {out}, format: csv}}
"""


def native_run(tag, seconds):
    d = os.path.join(WORK, f"native-{tag}")
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    spec = os.path.join(d, "job.yaml")
    with open(spec, "w") as f:
        f.write(native_spec(os.path.join(d, "out"), os.path.join(d, "ckpt")))
    p = subprocess.run([FERROFLOW, "run", spec, "--duration", f"{seconds}s"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = p.stdout + p.stderr
    m = re.search(r"^events\s+\d+\s+(\d+)", text, re.M)
    assert m, text
    durations, sizes = [], []
    for ms, size in re.findall(r"^checkpoint \d+ complete: ([\d.]+) ms, (\d+) bytes", text, re.M):
        durations.append(float(ms))
        sizes.append(int(size))
    return {"rows": int(m.group(1)), "durations": durations, "sizes": sizes}


def native_recovery(seconds_before_kill=6):
    d = os.path.join(WORK, "native-recovery")
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    spec = os.path.join(d, "job.yaml")
    out = os.path.join(d, "out")
    with open(spec, "w") as f:
        f.write(native_spec(out, os.path.join(d, "ckpt")))
    p = subprocess.Popen([FERROFLOW, "run", spec, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds_before_kill)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t0 = time.monotonic()
    p = subprocess.Popen([FERROFLOW, "run", spec], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        restored = False
        for line in p.stdout:
            restored |= line.startswith("restored job")
            if re.match(r"checkpoint \d+ complete", line):
                assert restored, "the job did not restore"
                return time.monotonic() - t0
        raise RuntimeError("the restarted job ended without a checkpoint")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()


# ---- Flink --------------------------------------------------------------------------------

def flink_sql(out):
    return f"""CREATE TEMPORARY TABLE events (`key` INT, `value` INT, ts AS CURRENT_ROW_TIMESTAMP(), WATERMARK FOR ts AS ts - INTERVAL '0.030' SECOND) WITH ('connector' = 'datagen', 'rows-per-second' = '{RATE}', 'fields.key.min' = '0', 'fields.key.max' = '{KEYS - 1}', 'fields.value.min' = '0', 'fields.value.max' = '100')
;
CREATE TEMPORARY TABLE per_key (`key` INT, window_start TIMESTAMP(3), n BIGINT, total INT) WITH ('connector' = 'filesystem', 'path' = 'file://{out}', 'format' = 'csv')
;
INSERT INTO per_key SELECT `key`, CAST(window_start AS TIMESTAMP(3)), COUNT(*), SUM(`value`) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY `key`, window_start, window_end
;
"""


def checkpoint_config(ckpt_dir):
    """Checkpoints every 1 s, kept on cancel (the runner takes no SET statements: these go in
    the REST request's flinkConfiguration)."""
    return {
        "execution.checkpointing.interval": "1s",
        "execution.checkpointing.dir": f"file://{ckpt_dir}",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    }


def flink_submit(url, jar_id, sql, config=None, savepoint=None):
    body = {
        "entryClass": "FerroflowSqlRunner",
        "programArgsList": ["--mode", "streaming", "--statements", base64.b64encode(sql.encode()).decode()],
        "parallelism": 2,
    }
    if config:
        body["flinkConfiguration"] = config
    if savepoint:
        body["savepointPath"] = savepoint
    return rest(url, f"/jars/{jar_id}/run", body)["jobid"]


def all_running(url, job):
    j = rest(url, f"/jobs/{job}")
    if j["state"] in ("FAILED", "CANCELED", "FINISHED"):
        raise RuntimeError(f"Flink job {job} {j['state']}")
    return j["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in j["vertices"])


def flink_cancel(url, job):
    rest(url, f"/jobs/{job}?mode=cancel", method="PATCH")
    while rest(url, f"/jobs/{job}")["state"] not in ("CANCELED", "FAILED", "FINISHED"):
        time.sleep(0.1)


def flink_run(url, jar_id, tag, seconds):
    d = os.path.join(WORK, f"flink-{tag}")
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    config = checkpoint_config(os.path.join(d, "ckpt"))
    job = flink_submit(url, jar_id, flink_sql(os.path.join(d, "out")), config)
    while not all_running(url, job):
        time.sleep(0.05)
    time.sleep(seconds)
    stats = rest(url, f"/jobs/{job}/checkpoints")
    return job, d, stats


def flink_recovery(url, jar_id, job, d):
    """Cancel `job` (its checkpoints retained) and resume from its latest checkpoint."""
    latest = rest(url, f"/jobs/{job}/checkpoints")["latest"]["completed"]
    path = latest["external_path"]
    flink_cancel(url, job)
    out = os.path.join(d, "out")
    t0 = time.monotonic()
    job2 = flink_submit(url, jar_id, flink_sql(out), checkpoint_config(os.path.join(d, "ckpt")), savepoint=path)
    while not all_running(url, job2):
        time.sleep(0.02)
    running = time.monotonic() - t0
    while True:
        latest = rest(url, f"/jobs/{job2}/checkpoints")["latest"]
        assert latest.get("restored"), f"Flink did not restore: {latest}"
        done = latest.get("completed")
        # The restored checkpoint is listed as completed too: wait for a newer one.
        if done and done["id"] > latest["restored"]["id"]:
            break
        time.sleep(0.02)
    first = time.monotonic() - t0
    flink_cancel(url, job2)
    return running, first


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    os.makedirs(WORK, exist_ok=True)
    assert os.path.exists(FERROFLOW), f"build it first: cargo build --release --bin ferroflow ({FERROFLOW})"

    native = native_run("ckpt", seconds)
    n_rec = [native_recovery() for _ in range(3)]

    url = sh("bash", SCRIPT, "start")
    jar_id = upload(url, sh("bash", SCRIPT, "runner-jar"))
    f_rec, f_running = [], []
    for i in range(3):
        job, d, stats = flink_run(url, jar_id, f"ckpt-{i}", seconds if i == 0 else 6)
        if i == 0:
            cfg = rest(url, f"/jobs/{job}/checkpoints/config")
            assert cfg.get("interval") == 1000, f"Flink's checkpoint interval is not 1 s: {cfg}"
            first_stats = stats
        running, first = flink_recovery(url, jar_id, job, d)
        f_running.append(running)
        f_rec.append(first)
    s = first_stats["summary"]
    f_dur = s["end_to_end_duration"]["p50"]
    f_size = s.get("checkpointed_size", s.get("state_size"))["p50"]
    f_count = first_stats["counts"]["completed"]

    version = rest(url, "/overview")["flink-version"]
    nd, ns = statistics.median(native["durations"]), statistics.median(native["sizes"])
    med = statistics.median
    print(f"job: generator at {RATE} rows/s, {KEYS} keys, 1 s tumbling event-time windows (count, sum) -> CSV files; parallelism 2; checkpoints every 1 s; {seconds} s")
    print(f"{'':44}{'ferroflow':>14}{'Flink ' + version:>14}{'Flink / ferroflow':>20}")
    rows = [
        ("checkpoint duration, median, ms", nd, f_dur, "{:.1f}"),
        ("checkpoint size, median, KiB", ns / 1024, f_size / 1024, "{:.1f}"),
        ("restart to first new checkpoint, s", med(n_rec), med(f_rec), "{:.2f}"),
    ]
    for label, a, b, fmt in rows:
        print(f"{label:44}{fmt.format(a):>14}{fmt.format(b):>14}{b / a:>19.1f}x")
    print(f"{'checkpoints completed':44}{len(native['durations']):>14}{f_count:>14}")
    each = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"{'restarts (each), s':44}{each(n_rec)}   {each(f_rec)}")
    print(f"{'Flink: restart to all tasks RUNNING, s':44}{'':>14}{med(f_running):>14.2f}")
    print(f"{'ferroflow: rows the source emitted':44}{native['rows']:>14}")


if __name__ == "__main__":
    main()
