//! The `ferroflow` command line.
//!
//! - `ferroflow run JOB.yaml`: run a job spec; a progress bar for bounded jobs, per-operator
//!   metrics at the end, Ctrl-C (or `--duration`) stops an unbounded job cleanly.
//! - `ferroflow sql QUERY --table NAME=PATH ...`: batch SQL over CSV, JSON-lines, Parquet.
//! - `ferroflow server`: the control-plane server (Notification Service, Model Center).
//! - `ferroflow workflow submit|start|stop|list|executions|jobs|logs|wait`, `ferroflow
//!   scheduler`: the control layer (AI Graph workflows driven by events).
//! - `ferroflow events send|list|listen`, `ferroflow models ...`, `ferroflow meta ...`: its client, against
//!   `--server URL` or, without one, the embedded SQLite store.

mod control;
mod job_types;
mod ml;
mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ferroflow_engine::{JobHandle, JobReport, MetricsSnapshot, Runtime};
use indicatif::{ProgressBar, ProgressStyle};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "ferroflow",
    version,
    about = "A Rust-native dataflow runtime for machine learning"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a YAML job spec.
    Run {
        /// The job spec.
        spec: PathBuf,
        /// Stop an unbounded job after this long (e.g. 30s).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Override the job's parallelism.
        #[arg(long)]
        parallelism: Option<usize>,
        /// No progress bar and no metrics table.
        #[arg(long, short)]
        quiet: bool,
        /// Print metrics every interval while the job runs (e.g. 5s).
        #[arg(long, value_parser = parse_duration)]
        metrics_interval: Option<Duration>,
        /// Take checkpoints in this directory (instead of the spec's `checkpoint.dir`); a
        /// re-run of the same command resumes from the newest complete one.
        #[arg(long)]
        checkpoint_dir: Option<PathBuf>,
        /// Time between checkpoints (e.g. 1s; default: the spec's, else 1s).
        #[arg(long, value_parser = parse_duration)]
        checkpoint_interval: Option<Duration>,
        /// Start from scratch, ignoring the checkpoints in the directory.
        #[arg(long)]
        fresh: bool,
        /// Resume from this savepoint or checkpoint directory (`<dir>/chk-<n>`).
        #[arg(long, conflicts_with = "fresh")]
        from_savepoint: Option<PathBuf>,
    },
    /// Check a YAML job spec and print its nodes without running it.
    Check {
        /// The job spec.
        spec: PathBuf,
    },
    /// Run the control-plane server (Notification Service, Model Center; HTTP/JSON).
    Server {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8420")]
        bind: std::net::SocketAddr,
        /// Directory of the embedded SQLite database.
        #[arg(long, env = "FERROFLOW_DATA_DIR", default_value = ".ferroflow")]
        data_dir: PathBuf,
        /// PostgreSQL URL, to share state between several servers (instead of SQLite).
        #[arg(long, env = "FERROFLOW_DATABASE_URL")]
        database_url: Option<String>,
        /// The admin token (default: the data directory's `token` file, made at first start
        /// with mode 0600; `ferroflow tokens create` makes tokens with fewer rights).
        #[arg(long, env = "FERROFLOW_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Another host name clients reach this server by (requests naming any other `Host`
        /// are refused). Repeatable.
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        /// Another browser origin (`https://ui.example:443`) allowed to call this server.
        /// Repeatable.
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        /// Largest accepted request body, in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        body_limit: usize,
        /// Waiting clients (long-poll listeners, event streams) served at once; more get 429.
        #[arg(long, default_value_t = ferroflow_server::DEFAULT_MAX_LISTENERS)]
        max_listeners: usize,
    },
    /// Notification Service: send, list and listen to events.
    Events {
        #[command(subcommand)]
        command: control::EventsCommand,
        #[command(flatten)]
        target: control::Target,
    },
    /// Model Center: models, versions and stages.
    Models {
        #[command(subcommand)]
        command: control::ModelsCommand,
        #[command(flatten)]
        target: control::Target,
    },
    /// Metadata Service: projects, datasets, workflows, executions, artifacts, metrics.
    Meta {
        #[command(subcommand)]
        command: control::MetaCommand,
        #[command(flatten)]
        target: control::Target,
    },
    /// API tokens and their roles: create, list, revoke.
    Tokens {
        #[command(subcommand)]
        command: control::TokensCommand,
        #[command(flatten)]
        target: control::Target,
    },
    /// Workflows (AI Graphs of jobs driven by events): submit, start, stop, list, logs.
    Workflow {
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
        #[command(flatten)]
        target: control::Target,
    },
    /// Run the event-driven scheduler: it starts and stops workflows' jobs as their rules
    /// say, each job in its own `ferroflow job run` process.
    Scheduler(workflow::SchedulerArgs),
    /// One job execution (launched by the scheduler).
    #[command(hide = true)]
    Job {
        #[command(subcommand)]
        command: workflow::JobCommand,
    },
    /// ML stages compatible with Flink ML: transform, fit, model data.
    Ml {
        #[command(subcommand)]
        command: ml::MlCommand,
    },
    /// Run batch SQL over files.
    Sql {
        /// The query.
        query: String,
        /// A table: NAME=PATH (file or directory; format from the extension). Repeatable.
        #[arg(long = "table", short = 't', value_parser = parse_table)]
        tables: Vec<(String, PathBuf)>,
        /// Write the result to this file (format from the extension) instead of printing.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match ferroflow_jobspec::parse_duration(s)? {
        (d, false) => Ok(d),
        (_, true) => Err(format!("'{s}' is negative")),
    }
}

fn parse_table(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=PATH"))?;
    Ok((name.trim().to_string(), PathBuf::from(path.trim())))
}

/// Parse the process arguments and run; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn run(cli: Cli) -> Result<(), AnyError> {
    match cli.command {
        Command::Run {
            spec,
            duration,
            parallelism,
            quiet,
            metrics_interval,
            checkpoint_dir,
            checkpoint_interval,
            fresh,
            from_savepoint,
        } => {
            let stop = StopSignals::install()?;
            let text =
                std::fs::read_to_string(&spec).map_err(|e| format!("{}: {e}", spec.display()))?;
            let origin = spec.display().to_string();
            let mut parsed = ferroflow_jobspec::parse(&text, &origin)?;
            if parallelism.is_some() {
                parsed.parallelism = parallelism;
            }
            let base = spec.parent().map(PathBuf::from).unwrap_or_default();
            let mut job = ferroflow_jobspec::build_spec_with(
                &parsed,
                &text,
                &origin,
                &base,
                &job_types::spec_factories(),
            )?;
            let checkpointing = checkpoint_settings(
                job.checkpointing().cloned(),
                checkpoint_dir,
                checkpoint_interval,
                fresh,
                from_savepoint,
            )?;
            job.set_checkpointing(checkpointing);
            let bounded = job.is_bounded();
            let runtime = Runtime::new()?;
            let handle = runtime.execute(job)?;
            if let Some(r) = handle.restored() {
                for s in &r.skipped {
                    eprintln!("passed over a checkpoint: {s}");
                }
                if r.finished {
                    eprintln!(
                        "job '{}' already finished (checkpoint {} in {}); its output is committed and nothing runs again (--fresh runs it anew)",
                        handle.name(),
                        r.id,
                        r.path.display()
                    );
                } else {
                    eprintln!("restored job '{}' from {r}", handle.name());
                }
            }
            stop.attach(handle.clone());
            let report = supervise(&handle, bounded, duration, quiet, metrics_interval)?;
            if !quiet {
                print_metrics(&report);
            }
            Ok(())
        }
        Command::Server {
            bind,
            data_dir,
            database_url,
            token,
            allowed_hosts,
            allowed_origins,
            body_limit,
            max_listeners,
        } => {
            let config = ferroflow_server::ServerConfig {
                bind,
                data_dir,
                database_url,
                token,
                allowed_hosts,
                allowed_origins,
                body_limit,
                max_listeners,
                job_types: crate::job_types::job_types(),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let server = ferroflow_server::Server::bind(config).await?;
                let addr = server.local_addr()?;
                {
                    use std::io::Write;
                    let mut out = std::io::stdout();
                    writeln!(out, "ferroflow server listening on http://{addr}")?;
                    out.flush()?;
                }
                server.serve(shutdown_signal()).await?;
                eprintln!("ferroflow server stopped");
                Ok::<(), AnyError>(())
            })
        }
        Command::Events { command, target } => control::events(&target, command),
        Command::Models { command, target } => control::models(&target, command),
        Command::Meta { command, target } => control::meta(&target, command),
        Command::Tokens { command, target } => control::tokens(&target, command),
        Command::Ml { command } => ml::run(command),
        Command::Workflow { command, target } => workflow::workflow(&target, command),
        Command::Scheduler(args) => workflow::scheduler(args),
        Command::Job { command } => workflow::job(command),
        Command::Check { spec } => {
            let job = ferroflow_jobspec::load_with(&spec, &job_types::spec_factories())?;
            println!(
                "{}: job '{}' is valid ({}): {}",
                spec.display(),
                job.name(),
                if job.is_bounded() {
                    "bounded"
                } else {
                    "unbounded"
                },
                job.node_names().join(" -> ")
            );
            Ok(())
        }
        Command::Sql {
            query,
            tables,
            output,
        } => {
            let sql = ferroflow_sql::BatchSql::new()?;
            for (name, path) in &tables {
                sql.register(name, path)?;
            }
            let batches = sql.query(&query)?;
            match output {
                Some(path) => write_batches(&path, batches)?,
                None => println!("{}", arrow_cast::pretty::pretty_format_batches(&batches)?),
            }
            Ok(())
        }
    }
}

fn write_batches(
    path: &std::path::Path,
    batches: Vec<arrow_array::RecordBatch>,
) -> Result<(), AnyError> {
    let sink = ferroflow_connectors::FileSink::from_path(path)?;
    let Some(first) = batches.first() else {
        return Err(format!(
            "the query returned no batches; nothing written to {}",
            path.display()
        )
        .into());
    };
    let info = ferroflow_engine::InstanceInfo {
        node: "output".into(),
        index: 0,
        parallelism: 1,
        run: String::new(),
    };
    use ferroflow_engine::Sink;
    let mut w = sink.create_writer(&info, first.schema())?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Checkpoint settings of `ferroflow run`: the spec's, adjusted by the flags.
fn checkpoint_settings(
    spec: Option<ferroflow_engine::CheckpointConfig>,
    dir: Option<PathBuf>,
    interval: Option<Duration>,
    fresh: bool,
    from_savepoint: Option<PathBuf>,
) -> Result<Option<ferroflow_engine::CheckpointConfig>, AnyError> {
    use ferroflow_engine::{CheckpointConfig, RestoreFrom};
    let mut cfg = spec;
    if let Some(d) = dir {
        let c = cfg.get_or_insert_with(CheckpointConfig::default);
        c.dir = Some(d);
        c.interval = c.interval.or(Some(Duration::from_secs(1)));
    }
    if let Some(i) = interval {
        match cfg.as_mut().filter(|c| c.dir.is_some()) {
            Some(c) if !i.is_zero() => c.interval = Some(i),
            Some(_) => return Err("--checkpoint-interval must be above 0".into()),
            None => {
                return Err(
                    "--checkpoint-interval needs a checkpoint directory (--checkpoint-dir or the spec's checkpoint.dir)"
                        .into(),
                );
            }
        }
    }
    if fresh && let Some(c) = cfg.as_mut() {
        c.restore = RestoreFrom::Fresh;
    }
    if let Some(p) = from_savepoint {
        cfg.get_or_insert_with(CheckpointConfig::default).restore = RestoreFrom::Path(p);
    }
    Ok(cfg)
}

/// Ctrl-C and SIGTERM for `ferroflow run`, listened for from the moment they are
/// installed: a signal that comes before the job has started is kept, and stops the job as
/// soon as it is attached (before, the listener was registered by a thread started after
/// the job, and a signal in between killed the process outright).
struct StopSignals {
    rt: tokio::runtime::Runtime,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, AnyError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        #[cfg(unix)]
        let (term, int) = {
            use tokio::signal::unix::{SignalKind, signal};
            let _entered = rt.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            )
        };
        Ok(StopSignals {
            rt,
            #[cfg(unix)]
            term,
            #[cfg(unix)]
            int,
        })
    }

    /// The first signal stops `handle` with a savepoint (its output committed); a second
    /// one aborts it.
    fn attach(self, handle: JobHandle) {
        std::thread::spawn(move || {
            #[cfg(unix)]
            let StopSignals {
                rt,
                mut term,
                mut int,
            } = self;
            #[cfg(not(unix))]
            let StopSignals { rt } = self;
            rt.block_on(async {
                for n in 0..2 {
                    #[cfg(unix)]
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                    #[cfg(not(unix))]
                    let _ = tokio::signal::ctrl_c().await;
                    if n == 0 {
                        eprintln!(
                            "\nstopping job '{}' (a savepoint, then its output is committed)...",
                            handle.name()
                        );
                        handle.stop();
                    } else {
                        eprintln!("\naborting job '{}'", handle.name());
                        handle.cancel();
                    }
                }
            });
        });
    }
}

fn supervise(
    handle: &JobHandle,
    bounded: bool,
    duration: Option<Duration>,
    quiet: bool,
    metrics_interval: Option<Duration>,
) -> Result<JobReport, AnyError> {
    let started = Instant::now();
    let bar = (!quiet && bounded).then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message(handle.name().to_string());
        b
    });
    let mut last_metrics = Instant::now();
    let mut stop_asked: Option<Instant> = None;
    let mut shown = 0;
    loop {
        let done = handle.wait_timeout(Duration::from_millis(100))?;
        if !quiet {
            let cks = handle.checkpoints();
            for c in cks.iter().skip(shown) {
                eprintln!("{}", checkpoint_line(c));
            }
            shown = cks.len();
        }
        if let Some(report) = done {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Ok(report);
        }
        if let (Some(b), Some(p)) = (&bar, handle.progress()) {
            if let Some(t) = p.total {
                b.set_length(t);
            }
            b.set_position(p.done);
        }
        if let Some(d) = duration
            && started.elapsed() >= d
        {
            match stop_asked {
                None => {
                    handle.stop();
                    stop_asked = Some(Instant::now());
                }
                // A stop that cannot complete (a task stuck) must not hang the command.
                Some(t) if t.elapsed() > Duration::from_secs(60) => handle.cancel(),
                Some(_) => {}
            }
        }
        if let Some(i) = metrics_interval
            && last_metrics.elapsed() >= i
            && !quiet
        {
            last_metrics = Instant::now();
            eprintln!("-- metrics at {:.1}s", started.elapsed().as_secs_f64());
            eprint!("{}", metrics_table(&handle.metrics()));
        }
    }
}

fn metrics_table(m: &[(String, MetricsSnapshot)]) -> String {
    let mut s = format!(
        "{:<24} {:>12} {:>12} {:>10} {:>10} {:>12}\n",
        "node", "rows in", "rows out", "busy ms", "bp ms", "counters"
    );
    for (name, x) in m {
        let counters: Vec<String> = x.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(
            "{:<24} {:>12} {:>12} {:>10} {:>10} {}\n",
            name,
            x.rows_in,
            x.rows_out,
            x.busy_ns / 1_000_000,
            x.backpressure_ns / 1_000_000,
            counters.join(" ")
        ));
    }
    s
}

fn checkpoint_line(c: &ferroflow_engine::CheckpointStats) -> String {
    format!(
        "{} {} complete: {:.1} ms, {} bytes, alignment {:.1} ms",
        if c.savepoint {
            "savepoint"
        } else {
            "checkpoint"
        },
        c.id,
        c.duration.as_secs_f64() * 1e3,
        c.bytes,
        c.alignment.as_secs_f64() * 1e3
    )
}

fn print_metrics(report: &JobReport) {
    eprintln!(
        "job {:?} in {:.3}s",
        report.status,
        report.elapsed.as_secs_f64()
    );
    eprint!("{}", metrics_table(&report.metrics));
}
