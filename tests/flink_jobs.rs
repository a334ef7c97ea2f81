//! The `flink` job type against a real local Flink cluster (`scripts/flink-local.sh`, which
//! these tests start when it is not running; no test is skipped when it cannot start: they
//! fail with the tail of its logs).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::flow::{Flow, wait_until};
use serde_json::Value;

/// The local cluster's REST URL, started if needed.
fn flink() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/flink-local.sh"))
        .arg("start")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the local Flink cluster did not start:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn rest(url: &str, path: &str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("{url}{path}"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

fn flink_state(url: &str, job_id: &str) -> String {
    rest(url, &format!("/jobs/{job_id}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Rows of JSON-lines files (a file, or every visible file of a directory), each rendered
/// with floats rounded, sorted.
fn rows(path: &Path) -> Vec<String> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = vec![];
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
            let cells: Vec<String> = v
                .iter()
                .map(|(k, v)| match v.as_f64() {
                    Some(x) => format!("{k}={x:.6}"),
                    None => format!("{k}={v}"),
                })
                .collect();
            out.push(cells.join(","));
        }
    }
    out.sort();
    out
}

fn write_sales(path: &Path, rows: usize, bad_row: Option<usize>) {
    let mut s = String::from("id,category,amount,qty\n");
    for i in 0..rows {
        let amount = if Some(i) == bad_row {
            "abc".to_string()
        } else {
            format!("{}.{}", (i * 37) % 50, i % 10)
        };
        s.push_str(&format!(
            "{i},{},{amount},{}\n",
            ["tools", "toys", "food", "books"][i % 4],
            i % 7
        ));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn a_batch_sql_job_on_flink_gives_the_same_rows_as_natively() {
    let url = flink();
    let mut flow = Flow::new();
    write_sales(&flow.path("sales.csv"), 400, None);
    let sql = "SELECT category, COUNT(*) AS n, SUM(amount) AS total, MAX(qty) AS max_qty, MIN(id) AS first_id FROM __THIS__ WHERE amount > 1.0 GROUP BY category";
    let spec = format!(
        r#"
workflow: twins
project: p
jobs:
  on_flink: {{type: flink, rest_url: "{url}"}}
  native: {{type: native}}
nodes:
  - {{id: f_read, job: on_flink, read_dataset: {{path: sales.csv}}}}
  - {{id: f_agg, job: on_flink, inputs: [f_read], transform: {{sql: "{sql}"}}}}
  - {{id: f_write, job: on_flink, inputs: [f_agg], write_dataset: {{path: out/flink.jsonl}}}}
  - {{id: n_read, job: native, read_dataset: {{path: sales.csv}}}}
  - {{id: n_agg, job: native, inputs: [n_read], transform: {{sql: "{sql}"}}}}
  - {{id: n_write, job: native, inputs: [n_agg], write_dataset: {{path: out/native.jsonl}}}}
"#
    );
    let exec = flow.launch_text("twins.yaml", &spec, "twins", "p");
    flow.wait(&exec, "p", &["--timeout", "180s"]);
    let native = rows(&flow.path("out/native.jsonl"));
    let on_flink = rows(&flow.path("out/flink.jsonl"));
    assert_eq!(native.len(), 4, "{native:?}");
    assert_eq!(on_flink, native);
    // The run recorded its Flink job, which finished.
    let jobs = flow.jobs("p", &exec);
    let f = jobs.iter().find(|j| j["job"] == "on_flink").unwrap();
    let id = f["external"]["flink_job_id"].as_str().unwrap();
    assert_eq!(f["external"]["flink_version"], "2.3.0");
    assert_eq!(flink_state(&url, id), "FINISHED");
    let log = flow.ok(&["workflow", "logs", &exec, "on_flink", "--project", "p"]);
    assert!(log.contains("Flink 2.3.0") && log.contains(id), "{log}");
}

#[test]
fn a_failing_flink_job_carries_flinks_exception() {
    let url = flink();
    let mut flow = Flow::new();
    // The bad value is past the rows the schema is inferred from: Flink meets it at run time.
    write_sales(&flow.path("sales.csv"), 1500, Some(1400));
    let spec = format!(
        r#"
workflow: bad
project: p
jobs:
  on_flink: {{type: flink, rest_url: "{url}"}}
nodes:
  - {{id: read, job: on_flink, read_dataset: {{path: sales.csv}}}}
  - {{id: agg, job: on_flink, inputs: [read], transform: {{sql: "SELECT category, SUM(amount) AS total FROM __THIS__ GROUP BY category"}}}}
  - {{id: write, job: on_flink, inputs: [agg], write_dataset: {{path: out/never.jsonl}}}}
"#
    );
    let exec = flow.launch_text("bad.yaml", &spec, "bad", "p");
    let err = flow.fails(&[
        "workflow",
        "wait",
        &exec,
        "--project",
        "p",
        "--timeout",
        "180s",
    ]);
    assert!(err.contains("FAILED"), "{err}");
    let jobs = flow.jobs("p", &exec);
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(
        error.contains("the Flink job") && error.contains("FAILED"),
        "{error}"
    );
    assert!(
        error.contains("\"abc\""),
        "Flink's root cause is missing: {error}"
    );
    let id = jobs[0]["external"]["flink_job_id"].as_str().unwrap();
    assert_eq!(flink_state(&url, id), "FAILED");
}

#[test]
fn untranslatable_nodes_are_refused_at_submission() {
    let flow = Flow::new();
    let spec = r#"
workflow: mixed
project: p
jobs:
  on_flink: {type: flink}
nodes:
  - {id: read, job: on_flink, read_dataset: {path: data.csv}}
  - id: fit
    job: on_flink
    inputs: [read]
    train: {model: m, estimator: {className: LogisticRegression}}
"#;
    let path = flow.path("mixed.yaml");
    std::fs::write(&path, spec).unwrap();
    let err = flow.fails(&["workflow", "submit", path.to_str().unwrap()]);
    assert!(
        err.contains("mixed.yaml:8")
            && err.contains("node 'fit' (train) cannot run on Flink")
            && err.contains("run it in a native job"),
        "{err}"
    );
    std::fs::write(
        &path,
        "workflow: pq\nproject: p\njobs:\n  on_flink: {type: flink}\nnodes:\n  - {id: read, job: on_flink, read_dataset: {path: data.parquet}}\n",
    )
    .unwrap();
    let err = flow.fails(&["workflow", "submit", path.to_str().unwrap()]);
    assert!(
        err.contains("node 'read' (read_dataset) cannot run on Flink") && err.contains("Parquet"),
        "{err}"
    );
    std::fs::write(
        &path,
        "workflow: both\nproject: p\njobs:\n  on_flink: {type: flink, sql: 'SELECT 1', jar: x.jar}\n",
    )
    .unwrap();
    let err = flow.fails(&["workflow", "submit", path.to_str().unwrap()]);
    assert!(
        err.contains("exactly one of: its nodes, `sql`, `jar`, `pyflink`"),
        "{err}"
    );
}

/// The Flink job ids this execution's runs of `job` recorded, oldest first.
fn flink_ids(flow: &Flow, exec: &str, job: &str) -> Vec<String> {
    flow.jobs("p", exec)
        .iter()
        .filter(|j| j["job"] == job)
        .filter_map(|j| j["external"]["flink_job_id"].as_str().map(String::from))
        .collect()
}

#[test]
fn restart_stops_with_a_savepoint_resumes_from_it_and_leaves_one_flink_job() {
    let url = flink();
    let mut flow = Flow::new();
    let spec = format!(
        r#"
workflow: stream
project: p
jobs:
  counts:
    type: flink
    rest_url: "{url}"
    mode: streaming
    start_with_execution: true
    savepoints: savepoints
    resume: true
    sql: |
      CREATE TEMPORARY TABLE clicks (user_id INT, amount DOUBLE) WITH ('connector' = 'datagen', 'rows-per-second' = '50', 'fields.user_id.min' = '1', 'fields.user_id.max' = '5');
      CREATE TEMPORARY TABLE totals (user_id INT, c BIGINT) WITH ('connector' = 'blackhole');
      INSERT INTO totals SELECT user_id, COUNT(*) FROM clicks GROUP BY user_id;
    rules:
      - when: [ {{event: {{key: stream.restart}}}} ]
        action: RESTART
"#
    );
    let exec = flow.launch_text("stream.yaml", &spec, "stream", "p");
    let running = |n: usize| {
        let ids = flink_ids(&flow, &exec, "counts");
        ids.len() == n && flink_state(&url, &ids[n - 1]) == "RUNNING"
    };
    wait_until("the first Flink job runs", Duration::from_secs(120), || {
        running(1)
    });

    // RESTART: the Flink job stops with a savepoint; the next run resumes from it.
    flow.ok(&["events", "send", "stream.restart", "1"]);
    wait_until(
        "the second Flink job runs",
        Duration::from_secs(120),
        || running(2),
    );
    let jobs = flow.jobs("p", &exec);
    let savepoint = jobs[0]["external"]["savepoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(jobs[0]["status"], "STOPPED");
    assert_eq!(jobs[1]["external"]["restored_from"], savepoint.as_str());
    let ids = flink_ids(&flow, &exec, "counts");
    assert_eq!(flink_state(&url, &ids[0]), "FINISHED"); // stopped with a savepoint
    let restored = rest(&url, &format!("/jobs/{}/checkpoints", ids[1]));
    assert_eq!(
        restored["latest"]["restored"]["external_path"],
        savepoint.as_str()
    );

    // The runner of the second run is killed: its Flink job keeps running (as a real
    // client crash would leave it). RESTART must still leave exactly one Flink job.
    let pid = jobs[1]["pid"].as_u64().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("the killed run is FAILED", Duration::from_secs(30), || {
        flow.runs("p", &exec, "counts") == ["STOPPED", "FAILED"]
    });
    assert_eq!(flink_state(&url, &ids[1]), "RUNNING");
    flow.ok(&["events", "send", "stream.restart", "2"]);
    wait_until("the third Flink job runs", Duration::from_secs(120), || {
        running(3)
    });
    let ids = flink_ids(&flow, &exec, "counts");
    // The cluster's own list: of this execution's Flink jobs, exactly one is not ended.
    let listed = rest(&url, "/jobs");
    let alive: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| ids.contains(&j["id"].as_str().unwrap().to_string()))
        .filter(|j| !["FINISHED", "CANCELED", "FAILED"].contains(&j["status"].as_str().unwrap()))
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        alive,
        [ids[2].as_str()],
        "exactly one of this execution's Flink jobs runs"
    );
    let jobs = flow.jobs("p", &exec);
    let second_savepoint = jobs[1]["external"]["savepoint"].as_str().unwrap();
    assert_eq!(jobs[2]["external"]["restored_from"], second_savepoint);
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(all.len(), 3);

    // Stopping the execution stops the Flink job (with a savepoint).
    flow.ok(&["workflow", "stop", &exec, "--project", "p"]);
    flow.wait(&exec, "p", &["--timeout", "120s"]);
    assert_eq!(flink_state(&url, &ids[2]), "FINISHED");
}

#[test]
fn a_users_pyflink_script_and_jar_run_as_they_are() {
    let url = flink();
    let mut flow = Flow::new();
    std::fs::write(
        flow.path("job.py"),
        r#"import sys
from pyflink.table import EnvironmentSettings, TableEnvironment
out = sys.argv[1]
t = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
t.execute_sql(f"CREATE TABLE sink (word STRING, n BIGINT) WITH ('connector' = 'filesystem', 'path' = 'file://{out}', 'format' = 'json')")
t.execute_sql("INSERT INTO sink SELECT word, COUNT(*) FROM (VALUES ('a'), ('b'), ('a')) AS v(word) GROUP BY word")
"#,
    )
    .unwrap();
    // A jar of one's own: here the SQL runner's jar, called directly with its arguments.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let jar = Command::new("bash")
        .arg(root.join("scripts/flink-local.sh"))
        .arg("runner-jar")
        .output()
        .unwrap();
    let jar = String::from_utf8(jar.stdout).unwrap().trim().to_string();
    use base64::Engine;
    let statements = base64::engine::general_purpose::STANDARD.encode(format!(
        "CREATE TABLE sink (x INT) WITH ('connector' = 'filesystem', 'path' = 'file://{}', 'format' = 'json')\n;\nINSERT INTO sink VALUES (1), (2), (3)\n;\n",
        flow.path("jar_out").display()
    ));
    let spec = format!(
        r#"
workflow: own
project: p
jobs:
  script: {{type: flink, rest_url: "{url}", pyflink: job.py, args: ["{py_out}"]}}
  program: {{type: flink, rest_url: "{url}", jar: "{jar}", entry_class: FerroflowSqlRunner, args: [--mode, batch, --statements, "{statements}"]}}
"#,
        py_out = flow.path("py_out").display()
    );
    let exec = flow.launch_text("own.yaml", &spec, "own", "p");
    flow.wait(&exec, "p", &["--timeout", "180s"]);
    assert_eq!(
        rows(&flow.path("py_out")),
        ["word=\"a\",n=2.000000", "word=\"b\",n=1.000000"]
    );
    assert_eq!(
        rows(&flow.path("jar_out")),
        ["x=1.000000", "x=2.000000", "x=3.000000"]
    );
}

/// A TCP proxy to the cluster that can be cut: from ferroflow's side, the cluster disappears.
struct Proxy {
    url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn to(target: &str) -> Proxy {
        use std::sync::atomic::Ordering;
        let target = target.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                k.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Proxy { url, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_cluster_that_disappears_fails_the_run_with_the_reason() {
    let url = flink();
    let proxy = Proxy::to(&url);
    let mut flow = Flow::new();
    let spec = format!(
        r#"
workflow: gone
project: p
jobs:
  counts:
    type: flink
    rest_url: "{}"
    mode: streaming
    unreachable_timeout: 2s
    sql: |
      CREATE TEMPORARY TABLE clicks (user_id INT) WITH ('connector' = 'datagen', 'rows-per-second' = '10', 'fields.user_id.min' = '1', 'fields.user_id.max' = '5');
      CREATE TEMPORARY TABLE totals (user_id INT, c BIGINT) WITH ('connector' = 'blackhole');
      INSERT INTO totals SELECT user_id, COUNT(*) FROM clicks GROUP BY user_id;
"#,
        proxy.url
    );
    let exec = flow.launch_text("gone.yaml", &spec, "gone", "p");
    wait_until("the Flink job runs", Duration::from_secs(120), || {
        flink_ids(&flow, &exec, "counts")
            .first()
            .is_some_and(|id| flink_state(&url, id) == "RUNNING")
    });
    proxy.cut();
    wait_until("the run is FAILED", Duration::from_secs(60), || {
        flow.runs("p", &exec, "counts") == ["FAILED"]
    });
    let jobs = flow.jobs("p", &exec);
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "the Flink cluster at {} is unreachable",
            proxy.url
        )) && error.contains("while Flink job"),
        "{error}"
    );
    // Clean up the Flink job the run could no longer reach.
    let id = flink_ids(&flow, &exec, "counts")[0].clone();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .patch(format!("{url}/jobs/{id}?mode=cancel"))
        .send_empty()
        .unwrap();
}

#[test]
fn the_native_and_flink_example_runs() {
    let url = flink();
    let mut flow = Flow::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flink_and_native");
    let dir = flow.path("example");
    common::flow::copy_dir(&root, &dir);
    // The example's flink job uses the default cluster address.
    assert_eq!(url, "http://127.0.0.1:8081");
    let exec = flow.launch(&dir.join("workflow.yaml"), "flink_and_native", "demo");
    // Nothing runs before the event.
    std::thread::sleep(Duration::from_millis(500));
    assert!(flow.jobs("demo", &exec).is_empty());
    flow.ok(&["events", "send", "orders.arrived", "data/orders.csv"]);
    flow.wait(&exec, "demo", &["--job", "report", "--timeout", "180s"]);
    let order: Vec<String> = flow
        .jobs("demo", &exec)
        .iter()
        .map(|j| {
            format!(
                "{}={}",
                j["job"].as_str().unwrap(),
                j["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        order,
        ["clean=FINISHED", "totals=FINISHED", "report=FINISHED"]
    );

    // The report equals the same aggregation computed here from the raw file.
    let mut expected: std::collections::BTreeMap<String, (i64, i64, f64)> = Default::default();
    let raw = std::fs::read_to_string(dir.join("data/orders.csv")).unwrap();
    for line in raw.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let amount: f64 = f[2].parse().unwrap();
        if f[4] == "paid" && amount > 0.0 {
            let e = expected.entry(f[1].to_string()).or_default();
            e.0 += 1;
            e.1 += f[3].parse::<i64>().unwrap();
            e.2 += amount;
        }
    }
    let report = std::fs::read_to_string(dir.join("out/report.jsonl")).unwrap();
    let got: Vec<(String, i64, i64, f64)> = report
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["category"].as_str().unwrap().to_string(),
                v["orders"].as_i64().unwrap(),
                v["items"].as_i64().unwrap(),
                v["revenue"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for ((c, n, items, revenue), (ec, (en, eitems, erevenue))) in got.iter().zip(&expected) {
        assert_eq!((c, n, items), (ec, en, eitems));
        assert!(
            (revenue - erevenue).abs() < 0.01,
            "{c}: {revenue} vs {erevenue}"
        );
    }
}
