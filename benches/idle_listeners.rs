//! What waiting clients cost a real `ferroflow server` on loopback: its CPU time (from
//! `/proc/<pid>/stat`) over an idle stretch with no clients, then with 500 long-poll
//! listeners and 50 SSE streams connected; and send latency (p50/p99) without and with them.
//!
//! `cargo bench --bench idle_listeners` (it runs the `ferroflow` binary of this build).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token-0123456789";
const IDLE: Duration = Duration::from_secs(10);

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferroflow"))
        .args(["server", "--bind", "127.0.0.1:0", "--max-listeners", "2000"])
        .arg("--data-dir")
        .arg(data)
        .env("FERROFLOW_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    Server { child, addr }
}

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // Fields 14 and 15 (utime, stime) are 11 and 12 after the state field.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn request(addr: &str, method: &str, path: &str, body: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Send latency in ms (p50, p99) over `n` sends of one event each.
fn send_latency(addr: &str, n: usize) -> (f64, f64) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut lat: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            agent
                .post(format!("http://{addr}/api/events"))
                .header("authorization", &format!("Bearer {TOKEN}"))
                .send_json(serde_json::json!({"key": "bench", "value": i.to_string()}))
                .unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (lat[n / 2], lat[n * 99 / 100])
}

fn idle_cpu(server: &Server) -> f64 {
    let before = cpu_seconds(server.child.id());
    thread::sleep(IDLE);
    (cpu_seconds(server.child.id()) - before) / IDLE.as_secs_f64() * 100.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.clone();
    // Some history, so the listeners' filter has rows to pass over.
    send_latency(&addr, 2000);
    thread::sleep(Duration::from_secs(1));
    let cpu_alone = idle_cpu(&server);
    let (p50_alone, p99_alone) = send_latency(&addr, 500);

    // 500 long polls (each re-issued when it returns) on a key nobody sends, and 50 streams.
    let stop = Arc::new(AtomicBool::new(false));
    let polls: Vec<_> = (0..500)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut s = request(
                            &addr,
                            "GET",
                            "/api/events/listen?after=0&keys=nobody&timeout_ms=60000",
                            "",
                        );
                        // Blocks without waking until the answer (or the server's exit):
                        // the clients must not load the machine the server is measured on.
                        let mut buf = [0u8; 256];
                        if s.read(&mut buf).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    let streams: Vec<_> = (0..50)
        .map(|_| {
            let mut s = request(
                &addr,
                "GET",
                "/api/events/stream?after=1000000&keys=nobody",
                "",
            );
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            s
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    let cpu_waiting = idle_cpu(&server);
    let (p50_waiting, p99_waiting) = send_latency(&addr, 500);
    stop.store(true, Ordering::Relaxed);
    drop(streams);

    println!("ferroflow server, SQLite, {IDLE:?} idle:");
    println!("  no clients:                     CPU {cpu_alone:5.2} % of a core");
    println!("  500 long polls + 50 SSE streams: CPU {cpu_waiting:5.2} % of a core");
    println!(
        "  send latency without them: p50 {p50_alone:.2} ms, p99 {p99_alone:.2} ms; with them: p50 {p50_waiting:.2} ms, p99 {p99_waiting:.2} ms (ratio of medians {:.2})",
        p50_waiting / p50_alone
    );
    drop(server);
    for p in polls {
        let _ = p.join();
    }
}
