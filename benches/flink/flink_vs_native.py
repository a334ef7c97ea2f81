#!/usr/bin/env python3
"""The same windowed aggregation over the same CSV file, natively (`ferroflow run`, release
build) and on the local Flink cluster (scripts/flink-local.sh; the statements go through the
same SQL runner the `flink` job type uses), in one run.

Aggregation: per user, 10-second tumbling event-time windows: count(*) and sum(amount).
Reported per side: wall time, CPU time, peak memory, start-up time, output rows; and the
ratios Flink / ferroflow.

- ferroflow: one process; wall and CPU (user + sys) and peak RSS from wait4(2). Start-up:
  the same job over a one-row file.
- Flink: a JobManager and a TaskManager started fresh for the run. Wall: from the REST
  submission to FINISHED. CPU: the two JVMs' user + sys time during the job (/proc). Peak
  memory: the two JVMs' VmHWM after the job (their peak since they started). Start-up: the
  cluster's own start (until a TaskManager is registered) and a job over a one-row file.

Usage: python3 benches/flink/flink_vs_native.py [ROWS]   (default 5,000,000)
Needs the release binary: cargo build --release --bin ferroflow
"""
import base64
import json
import os
import random
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("FERROFLOW_CACHE", os.path.expanduser("~/.cache/ferroflow"))
WORK = os.path.join(CACHE, "bench-flink")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
FERROFLOW = os.path.join(TARGET, "release", "ferroflow")
SCRIPT = os.path.join(ROOT, "scripts", "flink-local.sh")


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def make_csv(path, rows):
    if os.path.exists(path):
        return
    rnd = random.Random(42)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("ts,user,amount\n")
        t0 = 1_700_000_000_000
        for i in range(rows):
            ts = t0 + i * 2 - rnd.randrange(300)  # ~500 rows/s, out of order by < 300 ms
            f.write(f"{ts},u{rnd.randrange(1000)},{rnd.randrange(10000) / 100}\n")
    os.replace(tmp, path)


def native_spec(csv, out):
    return f"""name: windows
parallelism: 2
sources:
  - name: clicks
    path: {csv}
    schema:
      - {{name: ts, type: timestamp_ms, nullable: false}}
      - {{name: user, type: utf8}}
      - {{name: amount, type: float64}}
    watermark: {{column: ts, max_out_of_orderness: 500ms}}
nodes:
  - name: per_user
    input: clicks
    window:
      key_by: [user]
      time_column: ts
      tumbling: 10s
      aggregates: [count(*) AS n, sum(amount) AS revenue]
sinks:
  - name: out
    input: per_user
    path: {out}
"""


def run_native(csv, tag):
    out = os.path.join(WORK, f"native-{tag}.csv")
    spec = os.path.join(WORK, f"native-{tag}.yaml")
    with open(spec, "w") as f:
        f.write(native_spec(csv, out))
    if os.path.exists(out):
        os.remove(out)
    t = time.monotonic()
    p = subprocess.Popen([FERROFLOW, "run", spec, "--quiet"])
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    assert status == 0, f"ferroflow run failed ({status})"
    with open(out) as f:
        rows = sum(1 for _ in f) - 1
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "peak_mb": ru.ru_maxrss / 1024, "rows": rows}


def rest(url, path, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def jvm_pids():
    d = os.path.join(CACHE, "flink", "pid")
    pids = []
    for name in os.listdir(d):
        with open(os.path.join(d, name)) as f:
            pids += [int(x) for x in f.read().split()]
    return pids


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def hwm_mb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def flink_sql(csv, out):
    return f"""CREATE TEMPORARY TABLE clicks_raw (ts STRING, `user` STRING, amount STRING) WITH ('connector' = 'filesystem', 'path' = 'file://{csv}', 'format' = 'csv')
;
CREATE TEMPORARY VIEW clicks AS SELECT TO_TIMESTAMP_LTZ(CAST(ts AS BIGINT), 3) AS rt, `user`, CAST(amount AS DOUBLE) AS amount FROM clicks_raw WHERE ts <> 'ts'
;
CREATE TEMPORARY TABLE per_user (`user` STRING, window_start TIMESTAMP(3), n BIGINT, revenue DOUBLE) WITH ('connector' = 'filesystem', 'path' = 'file://{out}', 'format' = 'csv')
;
INSERT INTO per_user SELECT `user`, CAST(window_start AS TIMESTAMP(3)), COUNT(*), SUM(amount) FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(rt), INTERVAL '10' SECOND)) GROUP BY `user`, window_start, window_end
;
"""


def upload(url, jar):
    boundary = "ferroflowbench"
    with open(jar, "rb") as f:
        payload = f.read()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"runner.jar\"\r\n"
        "Content-Type: application/x-java-archive\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/jars/upload", data=body, method="POST")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["filename"].rsplit("/", 1)[1]


def run_flink(url, jar_id, csv, tag, parallelism):
    out = os.path.join(WORK, f"flink-{tag}")
    subprocess.run(["rm", "-rf", out], check=True)
    stmts = base64.b64encode(flink_sql(csv, out).encode()).decode()
    pids = jvm_pids()
    cpu0 = cpu_seconds(pids)
    t = time.monotonic()
    job = rest(url, f"/jars/{jar_id}/run", {
        "entryClass": "FerroflowSqlRunner",
        "programArgsList": ["--mode", "batch", "--statements", stmts],
        "parallelism": parallelism,
    })["jobid"]
    while True:
        state = rest(url, f"/jobs/{job}")["state"]
        if state in ("FINISHED", "FAILED", "CANCELED"):
            break
        time.sleep(0.05)
    wall = time.monotonic() - t
    assert state == "FINISHED", f"Flink job {job} {state}"
    cpu = cpu_seconds(pids) - cpu0
    rows = 0
    for name in os.listdir(out):
        if not name.startswith("."):
            with open(os.path.join(out, name)) as f:
                rows += sum(1 for _ in f)
    return {"wall": wall, "cpu": cpu, "peak_mb": hwm_mb(pids), "rows": rows}


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000
    os.makedirs(WORK, exist_ok=True)
    assert os.path.exists(FERROFLOW), f"build it first: cargo build --release --bin ferroflow ({FERROFLOW})"
    big = os.path.join(WORK, f"clicks-{rows}.csv")
    tiny = os.path.join(WORK, "clicks-1.csv")
    make_csv(big, rows)
    make_csv(tiny, 1)
    size_mb = os.path.getsize(big) / 2**20

    native_start = min(run_native(tiny, "tiny")["wall"] for _ in range(3))
    native = sorted((run_native(big, "big") for _ in range(3)), key=lambda r: r["wall"])[1]

    sh("bash", SCRIPT, "stop")
    t = time.monotonic()
    url = sh("bash", SCRIPT, "start")
    cluster_start = time.monotonic() - t
    jar_id = upload(url, sh("bash", SCRIPT, "runner-jar"))
    flink_start = min(run_flink(url, jar_id, tiny, "tiny", 2)["wall"] for _ in range(3))
    flink = sorted((run_flink(url, jar_id, big, "big", 2) for _ in range(3)), key=lambda r: r["wall"])[1]

    print(f"input: {rows:,} rows, {size_mb:.0f} MiB CSV; per user, 10 s tumbling windows, count + sum; parallelism 2 on both sides")
    print(f"{'':28}{'ferroflow':>14}{'Flink ' + rest(url, '/overview')['flink-version']:>14}{'Flink / ferroflow':>20}")
    for key, label, fmt in [("wall", "wall time (median of 3), s", "{:.2f}"), ("cpu", "CPU time, s", "{:.2f}"), ("peak_mb", "peak memory, MiB", "{:.0f}")]:
        a, b = native[key], flink[key]
        print(f"{label:28}{fmt.format(a):>14}{fmt.format(b):>14}{b / a:>19.1f}x")
    print(f"{'output rows':28}{native['rows']:>14}{flink['rows']:>14}")
    print(f"{'start-up: one-row job, s':28}{native_start:>14.3f}{flink_start:>14.3f}{flink_start / native_start:>19.1f}x")
    print(f"{'start-up: cluster, s':28}{'-':>14}{cluster_start:>14.1f}")
    assert native["rows"] == flink["rows"], "the two sides disagree on the number of windows"


if __name__ == "__main__":
    main()
