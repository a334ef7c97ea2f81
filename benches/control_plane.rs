//! Control-plane benchmarks against a real server on loopback: durable send throughput with
//! and without client-side batching (SQLite, and PostgreSQL when FERROFLOW_TEST_PG_URL is
//! set), and listen latency under load.
//!
//! `cargo bench --no-default-features --bench control_plane`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferroflow_server::{Server, ServerConfig};
use serde_json::{Value, json};

fn start(config: ServerConfig) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::bind(config)).unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    rt.spawn(server.serve(std::future::pending()));
    (rt, base)
}

const TOKEN: &str = "bench-admin-token-0123456789";

/// Sends the admin token on every request.
fn with_token(
    mut req: ureq::http::Request<ureq::SendBody>,
    next: ureq::middleware::MiddlewareNext,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    next.handle(req)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .middleware(with_token)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Events per second stored by `clients` threads for `secs`, `batch` events per request.
fn throughput(base: &str, clients: usize, batch: usize, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, sent, base) = (stop.clone(), sent.clone(), base.to_string());
            thread::spawn(move || {
                let a = agent();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if batch == 1 {
                        a.post(format!("{base}/api/events"))
                            .send_json(json!({"key": format!("k{c}"), "value": i.to_string(), "event_type": "BENCH"}))
                            .unwrap();
                    } else {
                        let events: Vec<Value> = (0..batch)
                            .map(|j| json!({"key": format!("k{c}"), "value": format!("{i}.{j}"), "event_type": "BENCH"}))
                            .collect();
                        a.post(format!("{base}/api/events/batch")).send_json(json!(events)).unwrap();
                    }
                    i += 1;
                    sent.fetch_add(batch as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    sent.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

/// Milliseconds from the start of a send to a waiting listener receiving it, under a
/// background load of senders; returns (p50, p99).
fn listen_latency(base: &str, samples: usize) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, base) = (stop.clone(), base.to_string());
            thread::spawn(move || {
                let a = agent();
                while !stop.load(Ordering::Relaxed) {
                    a.post(format!("{base}/api/events"))
                        .send_json(json!({"key": "noise"}))
                        .unwrap();
                }
            })
        })
        .collect();
    let a = agent();
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let after: i64 = a
            .get(format!("{base}/api/health"))
            .call()
            .unwrap()
            .body_mut()
            .read_json::<Value>()
            .unwrap()["latest_offset"]
            .as_i64()
            .unwrap();
        let url = format!("{base}/api/events/listen?keys=ping&after={after}&timeout_ms=10000");
        let listener = thread::spawn(move || {
            let mut r = agent().get(url).call().unwrap();
            let got: Value = r.body_mut().read_json().unwrap();
            (Instant::now(), got)
        });
        thread::sleep(Duration::from_millis(5)); // the listener is waiting
        let t = Instant::now();
        a.post(format!("{base}/api/events"))
            .send_json(json!({"key": "ping", "value": i.to_string()}))
            .unwrap();
        let (got_at, got) = listener.join().unwrap();
        assert_eq!(got[0]["value"], i.to_string());
        lat.push(got_at.duration_since(t).as_secs_f64() * 1e3);
    }
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.join().unwrap();
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (lat[lat.len() / 2], lat[(lat.len() * 99) / 100])
}

fn main() {
    let mut backends = vec![("sqlite", None)];
    if let Ok(url) = std::env::var("FERROFLOW_TEST_PG_URL") {
        backends.push(("postgres", Some(url)));
    }
    for (name, url) in backends {
        let dir = tempfile::tempdir().unwrap();
        let database_url = url.map(|u| {
            let db = format!("ff_bench_{}", std::process::id());
            std::process::Command::new("psql")
                .arg(&u)
                .arg("-qc")
                .arg(format!("CREATE DATABASE {db}"))
                .status()
                .unwrap();
            format!("{}/{db}", u.rsplit_once('/').unwrap().0)
        });
        let (_rt, base) = start(ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database_url,
            token: Some(TOKEN.into()),
            body_limit: 64 << 20,
            ..Default::default()
        });
        let single = throughput(&base, 8, 1, 5.0);
        let batched = throughput(&base, 8, 100, 5.0);
        let (p50, p99) = listen_latency(&base, 300);
        println!("{name}: durable send, 8 clients, 1 event/request:    {single:>9.0} events/s");
        println!("{name}: durable send, 8 clients, 100 events/request: {batched:>9.0} events/s");
        println!("{name}: listen latency under load (2 senders): p50 {p50:.2} ms, p99 {p99:.2} ms");
    }
}
