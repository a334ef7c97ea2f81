//! `ferroflow workflow ...`, `ferroflow scheduler` and `ferroflow job run`: the AI Flow
//! control layer from the command line.
//!
//! Workflow commands go to a server (`--server URL`) or, without one, to the embedded store.
//! The scheduler is its own long-running command; it launches every job execution as a
//! `ferroflow job run` child process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ferroflow_api::wire::SubmitRequest;
use ferroflow_meta::{MetaStore, PostgresStore, SqliteStore};
use ferroflow_workflow::service::JobExecutionInfo;
use ferroflow_workflow::{
    CancelToken, JobStatus, Launcher, RunnerOptions, Scheduler, SchedulerConfig,
};

use crate::AnyError;
use crate::control::{Target, client};

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Check a YAML workflow spec and store it (new executions run this version).
    Submit {
        /// The spec file; relative paths in it resolve against its directory.
        spec: PathBuf,
    },
    /// Check a spec without storing it.
    Check {
        /// The spec file.
        spec: PathBuf,
    },
    /// Start a new execution of a submitted workflow; prints its name.
    Start {
        /// The workflow.
        workflow: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Ask the scheduler to stop an execution and its jobs.
    Stop {
        /// The execution (`<workflow>-<n>`).
        execution: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// List submitted workflows.
    List {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a workflow's executions.
    Executions {
        /// The workflow.
        workflow: String,
        #[command(flatten)]
        project: ProjectArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List an execution's job executions.
    Jobs {
        /// The execution.
        execution: String,
        #[command(flatten)]
        project: ProjectArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the log of a job's newest run in an execution.
    Logs {
        /// The execution.
        execution: String,
        /// The job.
        job: String,
        /// Another run than the newest (1 is the first).
        #[arg(long)]
        attempt: Option<u32>,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Wait until an execution ends, or until a job of it has finished some number of runs.
    Wait {
        /// The execution.
        execution: String,
        /// Wait for this job's runs instead of the execution's end.
        #[arg(long)]
        job: Option<String>,
        /// With --job: how many FINISHED runs to wait for.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Give up after this long (e.g. 2m).
        #[arg(long, value_parser = crate::parse_duration, default_value = "5m")]
        timeout: Duration,
        #[command(flatten)]
        project: ProjectArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ProjectArg {
    /// The project.
    #[arg(long, default_value = "default")]
    project: String,
}

/// `ferroflow scheduler`.
#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    /// Data directory: the embedded store, job logs and model files.
    #[arg(long, env = "FERROFLOW_DATA_DIR", default_value = ".ferroflow")]
    data_dir: PathBuf,
    /// PostgreSQL URL of the store (instead of SQLite in the data directory).
    #[arg(long, env = "FERROFLOW_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Period of job heartbeats.
    #[arg(long, value_parser = crate::parse_duration, default_value = "500ms")]
    heartbeat: Duration,
    /// A job without a heartbeat for this long is FAILED.
    #[arg(long, value_parser = crate::parse_duration, default_value = "5s")]
    heartbeat_timeout: Duration,
    /// A STOPPING job still alive after this long is killed.
    #[arg(long, value_parser = crate::parse_duration, default_value = "20s")]
    stop_timeout: Duration,
    /// Longest idle wait (new events wake the scheduler at once; this bounds periodic
    /// triggers and liveness checks).
    #[arg(long, value_parser = crate::parse_duration, default_value = "50ms")]
    poll: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Run one job execution (what the scheduler launches; not for direct use).
    Run {
        /// Data directory of the store.
        #[arg(long, env = "FERROFLOW_DATA_DIR")]
        data_dir: PathBuf,
        /// PostgreSQL URL of the store.
        #[arg(long, env = "FERROFLOW_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Project.
        #[arg(long)]
        project: String,
        /// The job execution record's name.
        #[arg(long)]
        job_execution: String,
        /// The launch token the scheduler wrote.
        #[arg(long)]
        launch_id: String,
        /// Heartbeat period, in milliseconds.
        #[arg(long, default_value_t = 500)]
        heartbeat_ms: u64,
    },
}

async fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn MetaStore>, AnyError> {
    Ok(match database_url {
        Some(url) => Arc::new(PostgresStore::connect(url).await?),
        None => Arc::new(SqliteStore::open(&data_dir.join("meta.db")).await?),
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, AnyError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print_json(v: &impl serde::Serialize) -> Result<(), AnyError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `HH:MM:SS.mmm` UTC of milliseconds since the epoch, or `-`.
fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".to_string();
    };
    let day = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day % 3600 / 60,
        day % 60,
        ms.rem_euclid(1000)
    )
}

pub(crate) fn workflow(target: &Target, cmd: WorkflowCommand) -> Result<(), AnyError> {
    if let WorkflowCommand::Check { spec } = &cmd {
        let (text, graph) = read_spec(spec)?;
        ferroflow_workflow::check_job_types(
            &text,
            &spec.display().to_string(),
            &graph,
            &crate::job_types::job_types(),
        )?;
        println!(
            "{}: workflow '{}' is valid: {} job(s), {} node(s)",
            spec.display(),
            graph.name,
            graph.jobs.len(),
            graph.nodes.len()
        );
        return Ok(());
    }
    let client = client(target)?;
    match cmd {
        WorkflowCommand::Check { .. } => unreachable!("handled above"),
        WorkflowCommand::Submit { spec } => {
            let (text, graph) = read_spec(spec.as_path())?;
            let base_dir = graph.base_dir.as_ref().map(|p| p.display().to_string());
            let info = client.submit_workflow(&SubmitRequest {
                spec: text,
                file: Some(spec.display().to_string()),
                base_dir,
            })?;
            println!(
                "submitted workflow '{}' to project '{}' (snapshot {})",
                info.name, info.project, info.snapshot
            );
        }
        WorkflowCommand::Start { workflow, project } => {
            println!(
                "{}",
                client
                    .start_execution(&project.project, &workflow)?
                    .execution
            );
        }
        WorkflowCommand::Stop { execution, project } => {
            client.stop_execution(&project.project, &execution)?;
            println!("stop requested for {execution}");
        }
        WorkflowCommand::List { project, json } => {
            let list = client.list_workflows(project.as_deref())?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<16} {:<28} {:>10}  snapshot",
                "project", "workflow", "executions"
            );
            for w in list {
                println!(
                    "{:<16} {:<28} {:>10}  {}",
                    w.project, w.name, w.executions, w.snapshot
                );
            }
        }
        WorkflowCommand::Executions {
            workflow,
            project,
            json,
        } => {
            let list = client.executions(&project.project, &workflow)?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<28} {:<10} {:<13} {:<13} jobs",
                "execution", "status", "created", "ended"
            );
            for e in list {
                let jobs: Vec<String> = e
                    .body
                    .jobs
                    .iter()
                    .map(|(j, s)| {
                        format!("{j}={}", s.status.map(|s| s.as_str()).unwrap_or("waiting"))
                    })
                    .collect();
                println!(
                    "{:<28} {:<10} {:<13} {:<13} {}",
                    e.name,
                    e.body.status,
                    time(Some(e.body.create_time)),
                    time(e.body.end_time),
                    jobs.join(" ")
                );
            }
        }
        WorkflowCommand::Jobs {
            execution,
            project,
            json,
        } => {
            let list = client.job_executions(&project.project, &execution)?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<36} {:<16} {:>7} {:<9} {:<13} {:<13} {:>5}  error",
                "job execution", "job", "attempt", "status", "started", "ended", "exit"
            );
            for j in list {
                let b = &j.body;
                println!(
                    "{:<36} {:<16} {:>7} {:<9} {:<13} {:<13} {:>5}  {}",
                    j.name,
                    b.job,
                    b.attempt,
                    b.status,
                    time(b.start_time),
                    time(b.end_time),
                    b.exit_code.map(|c| c.to_string()).unwrap_or("-".into()),
                    b.error.as_deref().unwrap_or("")
                );
            }
        }
        WorkflowCommand::Logs {
            execution,
            job,
            attempt,
            project,
        } => {
            print!(
                "{}",
                client.job_log(&project.project, &execution, &job, attempt)?
            );
        }
        WorkflowCommand::Wait {
            execution,
            job,
            runs,
            timeout,
            project,
        } => {
            let p = &project.project;
            let started = Instant::now();
            loop {
                let done = match &job {
                    None => {
                        let e = client.execution(p, &execution)?;
                        if e.body.status.is_terminal() {
                            println!("{execution}: {}", e.body.status);
                            return match e.body.status {
                                ferroflow_workflow::ExecutionStatus::Failed => Err(format!(
                                    "execution {execution} FAILED: {}",
                                    e.body.error.unwrap_or_default()
                                )
                                .into()),
                                _ => Ok(()),
                            };
                        }
                        false
                    }
                    Some(j) => {
                        let list = client.job_executions(p, &execution)?;
                        let mine: Vec<&JobExecutionInfo> =
                            list.iter().filter(|r| &r.body.job == j).collect();
                        if let Some(f) = mine.iter().find(|r| r.body.status == JobStatus::Failed) {
                            return Err(format!(
                                "job execution {} FAILED: {}",
                                f.name,
                                f.body.error.as_deref().unwrap_or("")
                            )
                            .into());
                        }
                        let finished = mine
                            .iter()
                            .filter(|r| r.body.status == JobStatus::Finished)
                            .count();
                        if finished >= runs {
                            println!("{execution}: {j} finished {finished} run(s)");
                        }
                        finished >= runs
                    }
                };
                if done {
                    return Ok(());
                }
                if started.elapsed() >= timeout {
                    return Err(format!(
                        "{execution}: not done within {:.1}s",
                        timeout.as_secs_f64()
                    )
                    .into());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Ok(())
}

fn read_spec(path: &Path) -> Result<(String, ferroflow_workflow::AiGraph), AnyError> {
    Ok(ferroflow_workflow::load_workflow_text(path)?)
}

pub(crate) fn scheduler(args: SchedulerArgs) -> Result<(), AnyError> {
    let data_dir = std::path::absolute(&args.data_dir)?;
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let program = std::env::current_exe()?;
    if let Some(url) = &args.database_url {
        // SAFETY: no other thread runs yet (the runtime is built below). Job processes
        // inherit the variable and open the same store; the URL never shows in `ps`.
        unsafe { std::env::set_var("FERROFLOW_DATABASE_URL", url) };
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let store = open_store(&data_dir, args.database_url.as_deref()).await?;
        let cfg = SchedulerConfig {
            poll: args.poll,
            heartbeat_timeout: args.heartbeat_timeout,
            stop_timeout: args.stop_timeout,
            runner: RunnerOptions {
                heartbeat: args.heartbeat,
                data_dir: data_dir.clone(),
            },
            ..Default::default()
        };
        let launcher = Launcher::Process {
            program,
            args: vec![],
        };
        let sched = Scheduler::new(store, launcher, cfg);
        {
            use std::io::Write;
            let mut out = std::io::stdout();
            writeln!(
                out,
                "ferroflow scheduler running on {} (pid {})",
                data_dir.display(),
                std::process::id()
            )?;
            out.flush()?;
        }
        sched.run(crate::shutdown_signal()).await?;
        eprintln!("ferroflow scheduler stopped (running jobs keep running)");
        Ok::<(), AnyError>(())
    })
}

pub(crate) fn job(cmd: JobCommand) -> Result<(), AnyError> {
    let JobCommand::Run {
        data_dir,
        database_url,
        project,
        job_execution,
        launch_id,
        heartbeat_ms,
    } = cmd;
    let rt = runtime()?;
    let name = job_execution.clone();
    let status = rt.block_on(async move {
        let store = open_store(&data_dir, database_url.as_deref()).await?;
        let cancel = CancelToken::new();
        let c = cancel.clone();
        // SIGTERM (from the scheduler's stop) or Ctrl-C: stop the job cleanly.
        tokio::spawn(async move {
            crate::shutdown_signal().await;
            c.cancel();
        });
        let opts = RunnerOptions {
            heartbeat: Duration::from_millis(heartbeat_ms),
            data_dir,
        };
        let registry = crate::job_types::job_types();
        let status = ferroflow_workflow::run_job_execution(
            store,
            &registry,
            &project,
            &job_execution,
            &launch_id,
            &opts,
            cancel,
        )
        .await?;
        Ok::<JobStatus, AnyError>(status)
    })?;
    match status {
        JobStatus::Failed => Err(format!("job execution {name} FAILED").into()),
        _ => Ok(()),
    }
}
