//! The `ferroflow` command: `run`, `check` and `sql` as a user types them.

use std::path::Path;
use std::process::Command;

fn ferroflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferroflow"))
}

/// Copy the bundled example (spec and data) into a scratch directory so runs write there.
fn example_copy(dir: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(root.join("data/clicks.csv"), dir.join("data/clicks.csv")).unwrap();
    std::fs::copy(root.join("clickstream.yaml"), dir.join("clickstream.yaml")).unwrap();
    dir.join("clickstream.yaml")
}

/// The example's late-record count, computed independently of the engine from its rules:
/// watermark = max event time - 500 ms - 1 after each 2-row batch; a purchase is late when its
/// 10 s window ended (end - 1 + 500 ms lateness) at or before the watermark.
fn expected_late(csv: &Path) -> usize {
    let text = std::fs::read_to_string(csv).unwrap();
    let (mut max_ts, mut wm, mut late) = (i64::MIN, i64::MIN, 0);
    for (i, line) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let ts: i64 = f[0].parse().unwrap();
        let amount: f64 = f[3].parse().unwrap();
        if (f[2] == "cart" || f[2] == "checkout") && amount > 5.0 {
            let end = ts - ts.rem_euclid(10_000) + 10_000;
            if end - 1 + 500 <= wm {
                late += 1;
            }
        }
        max_ts = max_ts.max(ts);
        if i % 2 == 1 {
            wm = wm.max(max_ts - 501);
        }
    }
    late
}

#[test]
fn run_the_bundled_example() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_copy(dir.path());
    // One instance: the exact late count below assumes the window sees the reading source's
    // watermarks at once. At the spec's parallelism 2 the second source instance (no file
    // to read) may report its end after some rows, holding the combined watermark back, so
    // fewer rows are late (a race between the two instances' start-up).
    let out = ferroflow()
        .arg("run")
        .arg(&spec)
        .args(["--parallelism", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("revenue"), "{stdout}");
    assert!(stderr.contains("job Finished"), "{stderr}");
    assert!(dir.path().join("out/revenue_per_user.parquet").is_file());
    let late = expected_late(&dir.path().join("data/clicks.csv"));
    assert!(late > 0, "the example data has late records");
    assert!(
        stderr.contains(&format!("late_records_side_output={late}")),
        "expected {late} late records: {stderr}"
    );
}

#[test]
fn check_points_at_the_bad_node_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_copy(dir.path());
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("input: purchases", "input: purchasez");
    std::fs::write(&spec, text).unwrap();
    let out = ferroflow().arg("check").arg(&spec).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("clickstream.yaml:"), "{stderr}");
    assert!(stderr.contains("'purchasez'"), "{stderr}");

    std::fs::write(&spec, "name: x\nsources: [}\n").unwrap();
    let out = ferroflow().arg("check").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("clickstream.yaml:2:"), "{stderr}");
}

#[test]
fn bad_row_in_spec_input_fails_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_copy(dir.path());
    let csv = dir.path().join("data/clicks.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("notatime,bob,cart,1.0\n");
    std::fs::write(&csv, text).unwrap();
    let out = ferroflow()
        .arg("run")
        .arg(&spec)
        .arg("-q")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("clicks.csv:602: column 'ts'"), "{stderr}");
}

#[test]
fn sql_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_copy(dir.path());
    let csv = spec.parent().unwrap().join("data/clicks.csv");
    let out = ferroflow()
        .args([
            "sql",
            "SELECT page, count(*) AS n FROM clicks GROUP BY page ORDER BY page",
        ])
        .arg("--table")
        .arg(format!("clicks={}", csv.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pages = ["cart", "checkout", "home", "product", "search"];
    for p in pages {
        assert!(stdout.contains(p), "{stdout}");
    }
    let out = ferroflow()
        .args(["sql", "SELECT nope FROM clicks", "--table"])
        .arg(format!("clicks={}", csv.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn unbounded_spec_runs_until_its_duration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/generator_stream.yaml");
    let out = ferroflow()
        .arg("run")
        .arg(&root)
        .args(["--duration", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("job Stopped"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("mean"));
}

#[test]
fn the_online_learning_example_trains_and_serves_versions_in_one_job() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/online_learning.yaml");
    let out = ferroflow()
        .arg("run")
        .arg(&spec)
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 20 000 rows in global batches of 1 000: versions 1..=20, each printed once (the row
    // two lines below each model-data header; its last cell is the version).
    let lines: Vec<&str> = stdout.lines().collect();
    let versions: Vec<i64> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("| coefficient "))
        .map(|(i, _)| {
            let cells: Vec<&str> = lines[i + 2].split('|').map(str::trim).collect();
            cells[cells.len() - 2].parse().unwrap()
        })
        .collect();
    assert_eq!(versions, (1..=20).collect::<Vec<_>>(), "{stdout}");
    assert!(stdout.contains("predicted_rate"), "{stdout}");
}

#[test]
fn run_the_bundled_scoring_example() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in [
        "data/iris.csv",
        "models/iris_logreg.onnx",
        "score_iris.yaml",
    ] {
        std::fs::create_dir_all(dir.path().join(f).parent().unwrap()).unwrap();
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    let out = ferroflow()
        .arg("run")
        .arg(dir.path().join("score_iris.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("model_calls="), "{stderr}");
    let scored = std::fs::read_to_string(dir.path().join("out/iris_scored.jsonl")).unwrap();
    let species = ["setosa", "versicolor", "virginica"];
    let (mut rows, mut correct) = (0, 0);
    for line in scored.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let probs = v["probability"].as_array().unwrap();
        assert_eq!(probs.len(), 3);
        let sum: f64 = probs.iter().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to 1: {line}");
        let label = v["label"].as_i64().unwrap() as usize;
        rows += 1;
        if species[label] == v["species"].as_str().unwrap() {
            correct += 1;
        }
    }
    assert_eq!(rows, 150);
    assert!(
        correct >= 140,
        "the bundled model is accurate: {correct}/150"
    );
}

#[test]
fn a_spec_with_a_bad_model_binding_is_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in ["data/iris.csv", "models/iris_logreg.onnx"] {
        std::fs::create_dir_all(dir.path().join(f).parent().unwrap()).unwrap();
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    let spec = std::fs::read_to_string(root.join("score_iris.yaml"))
        .unwrap()
        .replace("petal_width]", "species]");
    std::fs::write(dir.path().join("bad.yaml"), spec).unwrap();
    let out = ferroflow()
        .arg("check")
        .arg(dir.path().join("bad.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("score") && stderr.contains("float_input") && stderr.contains("species"),
        "{stderr}"
    );
}
