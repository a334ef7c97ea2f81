//! Exactly-once across crashes, end to end: real `ferroflow run` processes killed with
//! SIGKILL at random moments and re-run with the same command, stopped with SIGTERM or
//! `--duration`, restored at another parallelism, and from damaged checkpoint directories.
//! The committed output must equal one clean run's rows as a multiset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ferroflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferroflow"))
}

/// A small deterministic random source (the seed is printed, so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn from_env() -> Self {
        let seed = std::env::var("FERROFLOW_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("kill moments from FERROFLOW_KILL_SEED={seed}");
        Lcg(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Every committed line of the files in `dir`, counted (hidden files are never read).
fn committed_rows(dir: &Path) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            // CSV part files each start with the header.
            if !line.trim().is_empty() && !line.starts_with("id,") {
                *rows.entry(line.to_string()).or_default() += 1;
            }
        }
    }
    rows
}

fn total(rows: &BTreeMap<String, usize>) -> usize {
    rows.values().sum()
}

fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Compare two multisets, showing a few differences.
fn assert_same_rows(got: &BTreeMap<String, usize>, want: &BTreeMap<String, usize>, what: &str) {
    if got == want {
        return;
    }
    let mut diff = Vec::new();
    for (k, v) in want {
        let g = got.get(k).copied().unwrap_or(0);
        if g != *v {
            diff.push(format!("{k}: want {v}, got {g}"));
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            diff.push(format!("{k}: want 0, got {v}"));
        }
    }
    diff.truncate(10);
    panic!(
        "{what}: {} rows committed, {} expected (lost or duplicated); first differences:\n{}",
        total(got),
        total(want),
        diff.join("\n")
    );
}

struct Job {
    dir: tempfile::TempDir,
    spec: PathBuf,
}

impl Job {
    fn new(spec: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.yaml");
        std::fs::write(&path, spec).unwrap();
        Job { dir, spec: path }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The committed rows under `dir` equal `want` as a multiset.
    fn assert_committed(&self, dir: &str, want: &BTreeMap<String, usize>, what: &str) {
        assert_same_rows(&committed_rows(&self.path(dir)), want, what);
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        ferroflow()
            .arg("run")
            .arg(&self.spec)
            .arg("--quiet")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run(&self, extra: &[&str]) -> Output {
        let out = self.spawn(extra).wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ferroflow run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Kill the job with SIGKILL at `kills` random moments, re-running the same command
    /// each time, then let it finish.
    fn kill_and_rerun(&self, kills: usize, rng: &mut Lcg, extra: &[&str]) {
        let mut finished_early = 0;
        for _ in 0..kills {
            let mut child = self.spawn(extra);
            let wait = Duration::from_millis(80 + rng.below(500));
            let t = Instant::now();
            while t.elapsed() < wait {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            match child.try_wait().unwrap() {
                Some(status) => {
                    let out = child.wait_with_output().unwrap();
                    assert!(
                        status.success(),
                        "a run failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    finished_early += 1;
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                }
            }
        }
        assert!(
            finished_early < kills / 2,
            "the job finished before most kills ({finished_early} of {kills}): make it longer"
        );
        let out = self.run(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("restored job") || stderr.contains("already finished"),
            "{stderr}"
        );
    }
}

fn windowed_spec(checkpoint: bool) -> String {
    format!(
        r#"
name: ckpt-windows
parallelism: 2
{}
sources:
  - name: events
    type: generator
    rows: 80000
    rate: 8000
    batch_size: 150
    seed: 7
    columns:
      - {{name: id, kind: sequence}}
      - {{name: key, kind: choice, values: [a, b, c, d, e, f, g, h, i]}}
      - {{name: value, kind: int, min: 0, max: 100}}
      - {{name: ts, kind: event_time, start_ms: 0, step_ms: 1, max_disorder_ms: 30}}
    watermark:
      column: ts
      max_out_of_orderness: 30ms
nodes:
  - name: kept
    input: events
    filter: "value < 70"
  - name: per_key
    input: kept
    window:
      key_by: [key]
      time_column: ts
      tumbling: 250ms
      aggregates: [count(*) AS n, sum(value) AS total, max(id) AS last]
sinks:
  - {{name: windows, input: per_key, path: out/windows, format: json}}
  - {{name: filtered, input: kept, path: out/filtered, format: json}}
"#,
        if checkpoint {
            "checkpoint: {interval: 100ms, dir: ckpt}"
        } else {
            ""
        }
    )
}

fn clean_run(spec: &str) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let clean = Job::new(spec);
    clean.run(&[]);
    (
        committed_rows(&clean.path("out/windows")),
        committed_rows(&clean.path("out/filtered")),
    )
}

#[test]
fn killed_at_random_moments_the_committed_output_is_exactly_once() {
    let (want_windows, want_filtered) = clean_run(&windowed_spec(false));
    assert!(total(&want_filtered) > 20_000 && total(&want_windows) > 500);

    let job = Job::new(&windowed_spec(true));
    let mut rng = Lcg::from_env();
    job.kill_and_rerun(30, &mut rng, &[]);
    job.assert_committed("out/windows", &want_windows, "windows");
    job.assert_committed("out/filtered", &want_filtered, "filtered rows");
    for d in ["out/windows", "out/filtered"] {
        assert!(
            hidden_files(&job.path(d)).is_empty(),
            "{d}: {:?}",
            hidden_files(&job.path(d))
        );
    }
    // The job is done: running the command again commits nothing new and says so.
    let out = job.run(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already finished"));
    job.assert_committed(
        "out/filtered",
        &want_filtered,
        "filtered rows after a re-run",
    );
}

#[test]
fn rescaled_restores_give_the_same_output() {
    let (want_windows, want_filtered) = clean_run(&windowed_spec(false));
    let job = Job::new(&windowed_spec(true));
    let mut rng = Lcg::from_env();
    for par in ["2", "3", "1", "3"] {
        let mut child = job.spawn(&["--parallelism", par]);
        std::thread::sleep(Duration::from_millis(400 + rng.below(400)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    job.run(&["--parallelism", "1"]);
    job.assert_committed("out/windows", &want_windows, "windows");
    job.assert_committed("out/filtered", &want_filtered, "filtered rows");
}

fn session_spec(checkpoint: bool) -> String {
    format!(
        r#"
name: ckpt-sessions
parallelism: 2
{}
sources:
  - name: events
    type: generator
    parallelism: 1
    rows: 60000
    rate: 6000
    batch_size: 100
    seed: 11
    columns:
      - {{name: id, kind: sequence}}
      - {{name: user, kind: choice, values: [u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, u12, u13, u14, u15, u16, u17, u18, u19, u20, u21, u22, u23, u24, u25, u26, u27, u28, u29, u30, u31, u32, u33, u34, u35, u36, u37, u38, u39, u40]}}
      - {{name: amount, kind: int, min: 1, max: 9}}
      - {{name: ts, kind: event_time, start_ms: 0, step_ms: 2, max_disorder_ms: 400}}
    watermark:
      column: ts
      max_out_of_orderness: 40ms
nodes:
  - name: sessions
    input: events
    window:
      key_by: [user]
      time_column: ts
      session: 60ms
      allowed_lateness: 100ms
      late: side_output
      aggregates: [count(*) AS n, sum(amount) AS spent, min(id) AS first]
sinks:
  - {{name: out, input: sessions, path: out/sessions, format: json}}
  - {{name: late, input: sessions.late, path: out/late, format: json}}
"#,
        if checkpoint {
            "checkpoint: {interval: 100ms, dir: ckpt}"
        } else {
            ""
        }
    )
}

#[test]
fn session_windows_with_lateness_and_late_output_survive_kills() {
    let clean = Job::new(&session_spec(false));
    clean.run(&[]);
    let want_sessions = committed_rows(&clean.path("out/sessions"));
    let want_late = committed_rows(&clean.path("out/late"));
    assert!(total(&want_late) > 100, "the spec must produce late rows");

    let job = Job::new(&session_spec(true));
    let mut rng = Lcg::from_env();
    job.kill_and_rerun(30, &mut rng, &[]);
    job.assert_committed("out/sessions", &want_sessions, "sessions");
    job.assert_committed("out/late", &want_late, "late rows");
}

fn watch_spec(input: &Path, checkpoint: bool) -> String {
    format!(
        r#"
name: ckpt-watch
parallelism: 2
{}
sources:
  - name: files
    type: directory
    path: {}
    format: csv
    poll_interval: 20ms
    batch_size: 100
    schema:
      - {{name: id, type: int64, nullable: false}}
      - {{name: key, type: utf8}}
      - {{name: ts, type: timestamp_ms, nullable: false}}
    watermark:
      column: ts
      max_out_of_orderness: 0ms
nodes:
  - name: per_key
    input: files
    window:
      key_by: [key]
      time_column: ts
      tumbling: 1s
      aggregates: [count(*) AS n, max(id) AS last]
sinks:
  - {{name: windows, input: per_key, path: out/windows, format: json}}
  - {{name: rows, input: files, path: out/rows, format: json}}
"#,
        if checkpoint {
            "checkpoint: {interval: 100ms, dir: ckpt}"
        } else {
            ""
        },
        input.display()
    )
}

fn write_watch_input(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let mut id = 0;
    for f in 0..40 {
        let mut text = String::from("id,key,ts\n");
        for _ in 0..500 {
            text.push_str(&format!("{id},k{},{}\n", id % 7, id * 2));
            id += 1;
        }
        std::fs::write(dir.join(format!("part-{f:03}.csv")), text).unwrap();
    }
    id
}

/// Run a directory-watch job until all `rows` are committed, then stop it with SIGTERM.
fn run_watch_until(job: &Job, rows: usize, extra: &[&str]) {
    let mut child = job.spawn(extra);
    // A process signalled before it installs its handlers dies by the signal, as any
    // process does; when earlier runs committed every row already, give it time to start.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    while total(&committed_rows(&job.path("out/rows"))) < rows {
        assert!(child.try_wait().unwrap().is_none(), "the job ended early");
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the job made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sigterm(child: &Child) {
    let r = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(r, 0);
}

#[test]
fn a_directory_watch_source_survives_kills() {
    let clean = Job::new("");
    let input = clean.path("in");
    let rows = write_watch_input(&input);
    std::fs::write(&clean.spec, watch_spec(&input, true)).unwrap();
    run_watch_until(&clean, rows, &[]);
    let want_windows = committed_rows(&clean.path("out/windows"));
    let want_rows = committed_rows(&clean.path("out/rows"));
    assert_eq!(total(&want_rows), rows);
    assert!(total(&want_windows) > 100);

    let job = Job::new(&watch_spec(&input, true));
    let mut rng = Lcg::from_env();
    for _ in 0..30 {
        let mut child = job.spawn(&[]);
        std::thread::sleep(Duration::from_millis(60 + rng.below(300)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    run_watch_until(&job, rows, &[]);
    job.assert_committed("out/rows", &want_rows, "rows");
    job.assert_committed("out/windows", &want_windows, "windows");
}

fn unbounded_spec(checkpoint: &str) -> String {
    format!(
        r#"
name: ckpt-unbounded
parallelism: 2
{checkpoint}
sources:
  - name: events
    type: generator
    rate: 20000
    batch_size: 500
    seed: 3
    columns:
      - {{name: id, kind: sequence}}
      - {{name: key, kind: choice, values: [a, b, c]}}
      - {{name: ts, kind: event_time, start_ms: 0, step_ms: 1, max_disorder_ms: 0}}
    watermark:
      column: ts
nodes:
  - name: per_key
    input: events
    window:
      key_by: [key]
      time_column: ts
      tumbling: 100ms
      aggregates: [count(*) AS n]
sinks:
  - {{name: windows, input: per_key, path: out/windows, format: json}}
  - {{name: raw, input: events, path: out/raw, format: csv}}
"#
    )
}

#[test]
fn duration_and_sigterm_stop_an_unbounded_job_and_keep_its_output() {
    // Without a checkpoint directory: the stop still commits what was written.
    let job = Job::new(&unbounded_spec(""));
    let out = ferroflow()
        .arg("run")
        .arg(&job.spec)
        .args(["--duration", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("job Stopped"), "{stderr}");
    let raw = committed_rows(&job.path("out/raw"));
    assert!(total(&raw) > 5_000, "{} rows kept", total(&raw));
    assert!(total(&committed_rows(&job.path("out/windows"))) > 10);
    assert!(hidden_files(&job.path("out/raw")).is_empty());

    // With one: SIGTERM takes a savepoint; the next run resumes from it and adds to the
    // output without repeating a row.
    let job = Job::new(&unbounded_spec("checkpoint: {interval: 10s, dir: ckpt}"));
    for round in 0..2 {
        let mut child = job.spawn(&[]);
        std::thread::sleep(Duration::from_millis(1200));
        sigterm(&child);
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "SIGTERM did not stop it"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        if round == 1 {
            assert!(
                stderr.contains("restored job 'ckpt-unbounded' from savepoint"),
                "{stderr}"
            );
        }
    }
    let raw = committed_rows(&job.path("out/raw"));
    assert!(raw.values().all(|n| *n == 1), "a row was committed twice");
    let mut blocks: BTreeMap<i64, usize> = BTreeMap::new();
    for l in raw.keys() {
        if let Some(id) = l.split(',').next().and_then(|x| x.parse::<i64>().ok()) {
            *blocks.entry(id / 500).or_default() += 1;
        }
    }
    // Instance i of 2 generates blocks i, i + 2, ... of 500 rows: each instance's blocks
    // must be complete and gap-free from its first, across the stop and the restore.
    assert!(blocks.values().all(|n| *n == 500), "a block is incomplete");
    for parity in 0..2 {
        let mine: Vec<i64> = blocks.keys().copied().filter(|b| b % 2 == parity).collect();
        assert!(
            mine.len() > 4,
            "instance {parity} made {} blocks",
            mine.len()
        );
        assert!(
            mine.iter()
                .enumerate()
                .all(|(k, b)| *b == parity + 2 * k as i64),
            "instance {parity} lost blocks: {mine:?}"
        );
    }
}

#[test]
fn damaged_checkpoints_fall_back_and_a_changed_job_is_refused() {
    let job = Job::new(&unbounded_spec(
        "checkpoint: {interval: 50ms, dir: ckpt, retain: 5}",
    ));
    let mut child = job.spawn(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut cks: Vec<PathBuf> = std::fs::read_dir(job.path("ckpt"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("_manifest.json").exists())
        .collect();
    cks.sort();
    assert!(cks.len() >= 3, "{cks:?}");
    // Tear the newest manifest and delete the next one's: the third newest is restored.
    let newest = cks.pop().unwrap();
    let text = std::fs::read(newest.join("_manifest.json")).unwrap();
    std::fs::write(newest.join("_manifest.json"), &text[..text.len() / 3]).unwrap();
    let second = cks.pop().unwrap();
    std::fs::remove_file(second.join("_manifest.json")).unwrap();
    let third = cks.pop().unwrap();
    let out = job.run(&["--duration", "300ms"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&third.display().to_string()), "{stderr}");
    assert!(stderr.contains("passed over a checkpoint"), "{stderr}");

    // A spec whose window aggregates changed cannot use the saved window state.
    let changed = unbounded_spec("checkpoint: {interval: 50ms, dir: ckpt}")
        .replace("[count(*) AS n]", "[count(*) AS n, max(id) AS m]");
    std::fs::write(&job.spec, changed).unwrap();
    let out = job.spawn(&[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("per_key"), "{stderr}");
    // --fresh starts over instead.
    let out = job.run(&["--fresh", "--duration", "300ms"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("restored"));
}

fn scoring_spec(model: &Path, checkpoint: bool) -> String {
    format!(
        r#"
name: ckpt-scoring
parallelism: 2
{}
sources:
  - name: events
    type: generator
    rows: 30000
    rate: 6000
    batch_size: 100
    seed: 5
    columns:
      - {{name: id, kind: sequence}}
      - {{name: x1, kind: float, min: 0, max: 1}}
      - {{name: x2, kind: float, min: 0, max: 1}}
  - name: versions
    type: file
    path: versions.jsonl
    schema:
      - {{name: version, type: int64, nullable: false}}
      - {{name: uri, type: utf8, nullable: false}}
nodes:
  - name: score
    input: events
    predict:
      model: {}
      inputs: {{input: [x1, x2]}}
      versions: versions
      version_column: model_version
sinks:
  - {{name: scored, input: score, path: out/scored, format: json}}
"#,
        if checkpoint {
            "checkpoint: {interval: 100ms, dir: ckpt}"
        } else {
            ""
        },
        model.display()
    )
}

/// The committed rows of `dir` by id: (the row without its model version, the version).
fn scored_rows(dir: &Path) -> BTreeMap<i64, Vec<(String, i64)>> {
    let mut rows: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for (line, n) in committed_rows(dir) {
        let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let version = v["model_version"].as_i64().unwrap();
        v.as_object_mut().unwrap().remove("model_version");
        for _ in 0..n {
            rows.entry(v["id"].as_i64().unwrap())
                .or_default()
                .push((v.to_string(), version));
        }
    }
    rows
}

#[test]
fn a_model_node_fed_versions_survives_kills_with_the_version_it_served() {
    let models = format!("{}/tests/models", env!("CARGO_MANIFEST_DIR"));
    let initial = Path::new(&models).join("linreg_double.onnx");
    let setup = |job: &Job| {
        // Version 2 is a copy: the scores agree, only the version column tells them apart.
        let v2 = job.path("linreg-v2.onnx");
        std::fs::copy(&initial, &v2).unwrap();
        std::fs::write(
            job.path("versions.jsonl"),
            format!(
                "{}\n",
                serde_json::json!({"version": 2, "uri": v2.display().to_string()})
            ),
        )
        .unwrap();
    };
    let clean = Job::new(&scoring_spec(&initial, false));
    setup(&clean);
    clean.run(&[]);
    let want = scored_rows(&clean.path("out/scored"));
    assert_eq!(want.len(), 30_000);

    let job = Job::new(&scoring_spec(&initial, true));
    setup(&job);
    let mut rng = Lcg::from_env();
    job.kill_and_rerun(12, &mut rng, &[]);
    let got = scored_rows(&job.path("out/scored"));
    assert_eq!(got.len(), want.len(), "every id committed");
    let mut initial_version = 0;
    for (id, rows) in &got {
        assert_eq!(rows.len(), 1, "id {id} committed {} times", rows.len());
        assert_eq!(rows[0].0, want[id][0].0, "id {id}: the same scores");
        if rows[0].1 != 2 {
            initial_version += 1;
        }
    }
    // Only rows scored before version 2 was first loaded carry the initial version (0): the
    // runs after a kill serve version 2 from the checkpoint (the version file was read long
    // before).
    assert!(
        initial_version < 3_000,
        "{initial_version} of 30000 rows scored by the initial model"
    );
}
