//! The server is safe by default: a token made at first start (mode 0600) that the CLI
//! finds, roles on every route of the OpenAPI document, workflows that run commands only for
//! admins, `Host`/`Origin` checks against DNS rebinding and cross-site requests, internal
//! records the generic routes cannot write, logs only from the log directory, and a
//! scheduler that never signals a process it cannot prove is its runner.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::flow::{Flow, Server, wait_until};
use serde_json::{Value, json};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// (status, JSON or text body) of `method url` with an optional bearer token and JSON body.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                a.get(url)
            } else {
                a.delete(url)
            };
            if let Some(h) = &auth {
                r = r.header("authorization", h);
            }
            r.call().unwrap()
        }
        _ => {
            let mut r = match method {
                "PUT" => a.put(url),
                "PATCH" => a.patch(url),
                _ => a.post(url),
            };
            if let Some(h) = &auth {
                r = r.header("authorization", h);
            }
            r.send_json(body.cloned().unwrap_or(json!({}))).unwrap()
        }
    };
    let status = resp.status().as_u16();
    // Streams (SSE) are not read to their end: only their status matters here.
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if ct.starts_with("text/event-stream") {
        return (status, Value::Null);
    }
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A raw HTTP/1.1 GET with the headers given (ureq sets `Host` itself).
fn raw_get(url: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

fn admin_token(flow: &Flow) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = flow.data_dir.join("token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private");
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

/// `ferroflow tokens create NAME --role ROLE` through the server (the CLI finds the admin
/// token in the data directory): the new secret.
fn create_token(flow: &Flow, srv: &Server, name: &str, role: &str) -> String {
    flow.ok(&[
        "tokens", "create", name, "--role", role, "--server", &srv.url,
    ])
    .trim()
    .to_string()
}

const PROCESS_SPEC: &str =
    "workflow: shell\nproject: sec\njobs:\n  j: {type: process, command: 'echo hi'}\n";
const NATIVE_FILES_SPEC: &str = "workflow: files\nproject: sec\njobs:\n  j: {type: native}\nnodes:\n  - {id: read, job: j, read_dataset: {path: /etc/passwd}}\n  - {id: out, job: j, inputs: [read], write_dataset: {path: /tmp/ff-copy.csv}}\n";
const NATIVE_MODEL_SPEC: &str = "workflow: promote\nproject: sec\njobs:\n  j: {type: native}\nnodes:\n  - {id: push, job: j, push_model: {model: ctr}}\n";

#[test]
fn every_route_needs_a_token_with_the_right_role() {
    let flow = Flow::new();
    let srv = flow.server(&[]);
    let admin = admin_token(&flow);
    let viewer = create_token(&flow, &srv, "dashboard", "viewer");
    let operator = create_token(&flow, &srv, "pipeline-bot", "operator");
    assert!(viewer.starts_with("fft_") && viewer != operator);

    let (s, doc) = call(
        "GET",
        &format!("{}/api/openapi.json", srv.url),
        Some(&viewer),
        None,
    );
    assert_eq!(s, 200);
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "nope" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            // A listener answers at once instead of waiting for events.
            let url = format!("{}{concrete}?timeout_ms=1", srv.url);
            let at = format!("{method} {path}");
            walked += 1;
            let (none, _) = call(&method, &url, None, None);
            let (bogus, _) = call(&method, &url, Some("fft_not-a-real-token-at-all"), None);
            if path == "/api/health" {
                assert_eq!((none, bogus), (200, 200), "{at}");
                continue;
            }
            assert_eq!(
                (none, bogus),
                (401, 401),
                "{at}: no token or an unknown one"
            );
            let (v, vb) = call(&method, &url, Some(&viewer), None);
            let (o, ob) = call(&method, &url, Some(&operator), None);
            let (a, ab) = call(&method, &url, Some(&admin), None);
            let tokens_route = path.starts_with("/api/tokens");
            if method == "GET" && !tokens_route {
                assert!(![401, 403].contains(&v), "{at}: viewer reads, got {v} {vb}");
            } else {
                assert_eq!(v, 403, "{at}: viewer may not: {vb}");
                assert_eq!(vb["code"], "forbidden", "{at}");
            }
            if tokens_route {
                assert_eq!(o, 403, "{at}: tokens are admin's: {ob}");
            } else {
                assert!(![401, 403].contains(&o), "{at}: operator, got {o} {ob}");
            }
            assert!(![401, 403].contains(&a), "{at}: admin, got {a} {ab}");
            assert!(a < 500, "{at}: a client's mistake is never a 5xx: {a} {ab}");
        }
    }
    assert!(walked >= 30, "walked only {walked} routes");
    // /metrics is outside the document but not open either.
    assert_eq!(
        call("GET", &format!("{}/metrics", srv.url), None, None).0,
        401
    );
    assert_eq!(
        call("GET", &format!("{}/metrics", srv.url), Some(&viewer), None).0,
        200
    );

    // Workflows that run commands or touch host files need admin; the reason is given.
    let submit = |token: &str, spec: &str| {
        call(
            "POST",
            &format!("{}/api/workflows", srv.url),
            Some(token),
            Some(&json!({"spec": spec})),
        )
    };
    let (s, b) = submit(&operator, PROCESS_SPEC);
    assert_eq!(s, 403, "{b}");
    let msg = b["message"].as_str().unwrap();
    assert!(
        msg.contains("admin") && msg.contains("job 'j'") && msg.contains("command"),
        "{msg}"
    );
    let (s, b) = submit(&operator, NATIVE_FILES_SPEC);
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("node 'read'"),
        "{b}"
    );
    let (s, b) = submit(&operator, NATIVE_MODEL_SPEC);
    assert_eq!(s, 201, "a native job on the Model Center only: {b}");
    let (s, b) = submit(&admin, PROCESS_SPEC);
    assert_eq!(s, 201, "{b}");

    // Empty and malformed credentials.
    let models = format!("{}/api/models", srv.url);
    assert_eq!(
        raw_get(
            &srv.url,
            "/api/models",
            &[("host", "127.0.0.1"), ("authorization", "Bearer ")]
        ),
        401
    );
    assert_eq!(
        raw_get(
            &srv.url,
            "/api/models",
            &[("host", "127.0.0.1"), ("authorization", &admin)]
        ),
        401
    );
    // Revoked tokens stop working at once.
    assert_eq!(call("GET", &models, Some(&viewer), None).0, 200);
    flow.ok(&["tokens", "revoke", "dashboard", "--server", &srv.url]);
    assert_eq!(call("GET", &models, Some(&viewer), None).0, 401);
    let list = flow.ok(&["tokens", "list", "--server", &srv.url]);
    assert!(
        list.contains("pipeline-bot") && !list.contains("dashboard"),
        "{list}"
    );
    assert!(!list.contains(&operator), "secrets are never listed");
}

#[test]
fn foreign_hosts_and_origins_are_refused() {
    let flow = Flow::new();
    let srv = flow.server(&["--allowed-host", "ferroflow.internal"]);
    let admin = admin_token(&flow);
    let auth = format!("Bearer {admin}");
    let port = srv.url.rsplit(':').next().unwrap().to_string();
    let host = format!("127.0.0.1:{port}");
    let ok = |h: &[(&str, &str)]| raw_get(&srv.url, "/api/models", h);
    assert_eq!(ok(&[("host", &host), ("authorization", &auth)]), 200);
    assert_eq!(ok(&[("host", "localhost"), ("authorization", &auth)]), 200);
    assert_eq!(
        ok(&[("host", "ferroflow.internal:80"), ("authorization", &auth)]),
        200
    );
    // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
    assert_eq!(
        ok(&[("host", "evil.example:8420"), ("authorization", &auth)]),
        403
    );
    assert_eq!(
        ok(&[("host", "evil.example")]),
        403,
        "refused before any token check"
    );
    // A browser on another site.
    let same = format!("http://{host}");
    assert_eq!(
        ok(&[("host", &host), ("origin", &same), ("authorization", &auth)]),
        200
    );
    assert_eq!(
        ok(&[
            ("host", &host),
            ("origin", "http://evil.example"),
            ("authorization", &auth)
        ]),
        403
    );
    assert_eq!(
        ok(&[
            ("host", &host),
            ("origin", "null"),
            ("authorization", &auth)
        ]),
        403
    );
    assert_eq!(
        ok(&[
            ("host", &host),
            ("sec-fetch-site", "cross-site"),
            ("authorization", &auth)
        ]),
        403
    );
    // The server refuses an empty or short admin token at start.
    let out = flow
        .cmd(&["server", "--bind", "127.0.0.1:0", "--token", ""])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must not be empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn internal_records_and_logs_belong_to_the_server() {
    let mut flow = Flow::new();
    let srv = flow.server(&[]);
    let admin = admin_token(&flow);
    flow.start_scheduler();
    let spec = flow.path("shell.yaml");
    std::fs::write(&spec, PROCESS_SPEC).unwrap();
    flow.ok(&[
        "workflow",
        "submit",
        spec.to_str().unwrap(),
        "--server",
        &srv.url,
    ]);
    let exec = flow
        .ok(&[
            "workflow",
            "start",
            "shell",
            "--project",
            "sec",
            "--server",
            &srv.url,
        ])
        .trim()
        .to_string();
    flow.wait(&exec, "sec", &[]);
    let log_url = format!("{}/api/executions/sec/{exec}/jobs/j/log", srv.url);
    let (s, log) = call("GET", &log_url, Some(&admin), None);
    assert_eq!(s, 200);
    assert!(log.as_str().unwrap().contains("hi"), "{log}");

    // Not even an admin writes the control layer's records through /api/meta.
    let meta = format!("{}/api/meta", srv.url);
    for (method, url) in [
        ("POST", format!("{meta}/job_execution")),
        ("POST", format!("{meta}/execution")),
        ("POST", format!("{meta}/workflow_snapshot")),
        ("POST", format!("{meta}/workflow")),
        ("PUT", format!("{meta}/job_execution/sec/{exec}.j.1")),
        ("PUT", format!("{meta}/execution/sec/{exec}")),
        ("DELETE", format!("{meta}/execution/sec/{exec}")),
    ] {
        let body = json!({"project": "sec", "name": "x", "parent": exec,
                          "body": {"job": "j", "status": "RUNNING", "log": "/proc/self/environ", "pid": 4294967295u32}});
        let (s, b) = call(method, &url, Some(&admin), Some(&body));
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("internal_record")),
            "{method} {url}: {b}"
        );
    }
    let (s, _) = call(
        "GET",
        &format!("{meta}/job_execution?project=sec"),
        Some(&admin),
        None,
    );
    assert_eq!(s, 200, "reads stay open to every role");

    // A record forged behind the server's back (here: the embedded store) still cannot make
    // it read a file outside its log directory, directly or through a link.
    let je = format!("{exec}.j.1");
    let forge = |log: &str| flow.forge_job_execution("sec", &je, |b| b["log"] = log.into());
    forge("/proc/self/environ");
    let (s, b) = call("GET", &log_url, Some(&admin), None);
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("log_outside_root")),
        "{b}"
    );
    let link = flow.data_dir.join("logs/sec/link.log");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    forge(link.to_str().unwrap());
    let (s, b) = call("GET", &log_url, Some(&admin), None);
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("log_outside_root")),
        "{b}"
    );
    let sneaky = flow.data_dir.join("logs/../token");
    forge(sneaky.to_str().unwrap());
    let (s, b) = call("GET", &log_url, Some(&admin), None);
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("log_outside_root")),
        "{b}"
    );
}

/// The pid recorded for a runner now belongs to an unrelated process (the runner died and
/// its pid was recycled): the scheduler declares the run failed but does not signal it.
#[test]
fn a_recycled_pid_is_never_signalled() {
    let mut flow = Flow::new();
    let spec = "workflow: long\nproject: sec\njobs:\n  j: {type: process, command: 'sleep 120'}\n";
    let exec = flow.launch_text("long.yaml", spec, "long", "sec");
    let je = format!("{exec}.j.1");
    wait_until("the job runs", Duration::from_secs(60), || {
        flow.runs("sec", &exec, "j").iter().any(|s| s == "RUNNING")
    });
    let rec = flow.json(&["meta", "get", "job_execution", "sec", &je]);
    let runner_pid = rec["body"]["pid"].as_i64().unwrap() as i32;
    assert!(
        rec["body"]["process"]["start_ticks"].as_u64().is_some(),
        "{rec}"
    );
    // The scheduler goes away; the runner and its command die without a word.
    flow.kill_schedulers();
    // SAFETY: kill(2) on the runner's process group, which this test's scheduler started.
    unsafe { libc::kill(-runner_pid, libc::SIGKILL) };
    wait_until("the runner is gone", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{runner_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{runner_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    // An unrelated process now has the recorded pid.
    let mut bystander = std::process::Command::new("sleep")
        .arg("120")
        .spawn()
        .unwrap();
    let pid = bystander.id();
    flow.forge_job_execution("sec", &je, |b| {
        b["pid"] = pid.into();
        b["process"]["pid"] = pid.into();
    });
    flow.start_scheduler();
    wait_until(
        "the run is declared failed",
        Duration::from_secs(60),
        || flow.runs("sec", &exec, "j").iter().any(|s| s == "FAILED"),
    );
    let rec = flow.json(&["meta", "get", "job_execution", "sec", &je]);
    assert!(
        rec["body"]["error"]
            .as_str()
            .unwrap()
            .contains("no heartbeat"),
        "{rec}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander with the recycled pid was signalled"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
}
