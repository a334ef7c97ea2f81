//! `ferroflow events ...` and `ferroflow models ...`: the control plane from the command line,
//! through a server (`--server URL`) or, without one, on the embedded SQLite store directly.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use ferroflow_api::Client;
use ferroflow_api::wire::{EventQuery, Page, RecordQuery, RecordUpdate};
use ferroflow_meta::{ModelStage, NewEvent, NewModelVersion, NewRecord, RecordKind};
use serde_json::Value;

use crate::AnyError;

/// Where the control plane is.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// Server URL (e.g. http://127.0.0.1:8420); without it the embedded store is opened.
    #[arg(long, env = "FERROFLOW_SERVER", global = true)]
    pub(crate) server: Option<String>,
    /// Bearer token for the server (default: the `token` file of the data directory, which
    /// a server makes at first start).
    #[arg(long, env = "FERROFLOW_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// Data directory of the embedded store.
    #[arg(
        long,
        env = "FERROFLOW_DATA_DIR",
        default_value = ".ferroflow",
        global = true
    )]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Send an event; prints it with its offset.
    Send {
        /// Event key.
        key: String,
        /// Event value.
        #[arg(default_value = "")]
        value: String,
        /// Event type.
        #[arg(long = "type", default_value = "UNDEFINED")]
        event_type: String,
        /// Namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Sender.
        #[arg(long, default_value = "cli")]
        sender: String,
        /// Execution context.
        #[arg(long)]
        context: Option<String>,
    },
    /// List events after an offset.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Wait for events after an offset and print them; with --follow, keep listening.
    Listen {
        #[command(flatten)]
        filter: FilterArgs,
        /// Keep listening (until Ctrl-C).
        #[arg(long)]
        follow: bool,
        /// Give up after this many seconds without events (not with --follow).
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only events after this offset.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Comma-separated keys.
    #[arg(long)]
    keys: Option<String>,
    /// Comma-separated event types.
    #[arg(long)]
    types: Option<String>,
}

impl FilterArgs {
    /// The API query for events after `after`.
    fn query(&self, after: i64) -> EventQuery {
        EventQuery {
            after: Some(after),
            keys: self.keys.clone(),
            event_types: self.types.clone(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Register a model.
    Register {
        /// Unique name.
        name: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List models.
    List,
    /// Create the next version of a model (stage GENERATED).
    CreateVersion {
        /// Model name.
        name: String,
        /// Where the model files are.
        #[arg(long)]
        uri: String,
        /// onnx, torchscript, ferroflow-ml, other.
        #[arg(long, default_value = "other")]
        flavor: String,
        /// Metrics as NAME=VALUE, repeatable.
        #[arg(long = "metric", value_parser = parse_metric)]
        metrics: Vec<(String, f64)>,
    },
    /// List a model's versions.
    Versions {
        /// Model name.
        name: String,
        /// Only this stage.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Move a version to a stage.
    Stage {
        /// Model name.
        name: String,
        /// Version number.
        version: i64,
        /// GENERATED, VALIDATED, DEPLOYED, DEPRECATED, DELETED.
        stage: String,
    },
}

fn parse_metric(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=VALUE"))?;
    let v: f64 = v.parse().map_err(|_| format!("'{v}' is not a number"))?;
    Ok((k.to_string(), v))
}

/// The control plane this command talks to: the server at `--server`, or the embedded store
/// of `--data-dir` through the server's own router in this process.
pub(crate) fn client(t: &Target) -> Result<Client, AnyError> {
    Ok(match &t.server {
        Some(url) => {
            let token = match &t.token {
                Some(tok) => Some(tok.clone()),
                None => ferroflow_server::auth::read_token(&t.data_dir)?,
            };
            Client::http(url, token.as_deref())
        }
        None => Client::new(ferroflow_server::InProcess::open_sqlite(
            &t.data_dir,
            crate::job_types::job_types(),
        )?),
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a token; prints its secret (shown this once).
    Create {
        /// Unique name of its holder.
        name: String,
        /// viewer (reads), operator (writes; workflows without commands or user code) or
        /// admin (everything).
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// List tokens (names and roles, never secrets).
    List,
    /// Revoke a token: its secret stops working at once.
    Revoke {
        /// Its name.
        name: String,
    },
}

pub(crate) fn tokens(target: &Target, cmd: TokensCommand) -> Result<(), AnyError> {
    let client = client(target)?;
    match cmd {
        TokensCommand::Create { name, role } => {
            let created = client.create_token(&name, role.parse()?)?;
            eprintln!(
                "token '{}' ({}) created; its secret is shown this once:",
                created.token.name, created.token.role
            );
            println!("{}", created.secret);
        }
        TokensCommand::List => {
            for t in client.list_tokens()? {
                println!("{:<24} {:<9} created {}", t.name, t.role, t.create_time);
            }
        }
        TokensCommand::Revoke { name } => {
            client.revoke_token(&name)?;
            println!("revoked token '{name}'");
        }
    }
    Ok(())
}

fn print(v: &impl serde::Serialize) -> Result<(), AnyError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Longest one listen request waits (the API's own limit); longer waits are several.
const LISTEN_CHUNK: Duration = Duration::from_secs(60);

pub(crate) fn events(target: &Target, cmd: EventsCommand) -> Result<(), AnyError> {
    let client = client(target)?;
    match cmd {
        EventsCommand::Send {
            key,
            value,
            event_type,
            namespace,
            sender,
            context,
        } => {
            let e = NewEvent {
                key,
                value,
                event_type,
                namespace,
                sender,
                context,
                ..Default::default()
            };
            print(&client.send_event(&e)?)?;
        }
        EventsCommand::List { filter, limit } => {
            let query = EventQuery {
                limit: Some(limit),
                ..filter.query(filter.after)
            };
            for e in client.list_events(&query)? {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
        EventsCommand::Listen {
            filter,
            follow,
            timeout,
        } => {
            let mut after = filter.after;
            let deadline = std::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let wait = if follow {
                    Duration::from_secs(30)
                } else {
                    deadline
                        .saturating_duration_since(std::time::Instant::now())
                        .min(LISTEN_CHUNK)
                };
                let query = EventQuery {
                    timeout_ms: Some(wait.as_millis() as u64),
                    ..filter.query(after)
                };
                let got = client.listen_events(&query)?;
                for e in &got {
                    println!("{}", serde_json::to_string(e)?);
                    after = after.max(e.offset);
                }
                if !follow {
                    if !got.is_empty() {
                        return Ok(());
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(format!("no event within {timeout} s").into());
                    }
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn models(target: &Target, cmd: ModelsCommand) -> Result<(), AnyError> {
    let client = client(target)?;
    match cmd {
        ModelsCommand::Register { name, description } => {
            print(&client.register_model(&name, &description)?)
        }
        ModelsCommand::List => print(&client.list_models(Page {
            offset: None,
            limit: Some(1000),
        })?),
        ModelsCommand::CreateVersion {
            name,
            uri,
            flavor,
            metrics,
        } => {
            let v = NewModelVersion {
                uri,
                flavor,
                metrics: metrics.into_iter().collect(),
                ..Default::default()
            };
            print(&client.create_model_version(&name, &v)?)
        }
        ModelsCommand::Versions { name, stage } => {
            let stage = stage.as_deref().map(str::parse::<ModelStage>).transpose()?;
            print(&client.list_model_versions(&name, stage)?)
        }
        ModelsCommand::Stage {
            name,
            version,
            stage,
        } => print(&client.set_model_stage(&name, version, stage.parse()?)?),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum MetaCommand {
    /// Create a record: KIND is project, dataset, workflow, workflow_snapshot, execution,
    /// job_execution, artifact or metric.
    Create {
        /// Record kind.
        kind: String,
        /// Project.
        project: String,
        /// Name.
        name: String,
        /// The body, as a JSON object.
        #[arg(long, default_value = "{}")]
        body: String,
        /// Owner (workflow of a snapshot or execution, execution of a job execution...).
        #[arg(long)]
        parent: Option<String>,
    },
    /// Show a record.
    Get {
        /// Record kind.
        kind: String,
        /// Project.
        project: String,
        /// Name.
        name: String,
    },
    /// Replace a record's body.
    Update {
        /// Record kind.
        kind: String,
        /// Project.
        project: String,
        /// Name.
        name: String,
        /// The new body, as a JSON object.
        #[arg(long)]
        body: String,
        /// Only if the record is still at this revision.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Delete a record.
    Delete {
        /// Record kind.
        kind: String,
        /// Project.
        project: String,
        /// Name.
        name: String,
    },
    /// List records of a kind.
    List {
        /// Record kind.
        kind: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only records owned by this parent.
        #[arg(long)]
        parent: Option<String>,
    },
}

fn json_arg(s: &str) -> Result<Value, AnyError> {
    serde_json::from_str(s).map_err(|e| format!("--body is not JSON: {e}").into())
}

pub(crate) fn meta(target: &Target, cmd: MetaCommand) -> Result<(), AnyError> {
    let client = client(target)?;
    match cmd {
        MetaCommand::Create {
            kind,
            project,
            name,
            body,
            parent,
        } => {
            let r = NewRecord {
                project,
                name,
                parent,
                body: json_arg(&body)?,
            };
            print(&client.create_record(kind.parse()?, &r)?)
        }
        MetaCommand::Get {
            kind,
            project,
            name,
        } => print(&client.get_record(kind.parse()?, &project, &name)?),
        MetaCommand::Update {
            kind,
            project,
            name,
            body,
            revision,
        } => {
            let update = RecordUpdate {
                body: json_arg(&body)?,
                revision,
            };
            print(&client.update_record(kind.parse()?, &project, &name, &update)?)
        }
        MetaCommand::Delete {
            kind,
            project,
            name,
        } => {
            let kind: RecordKind = kind.parse()?;
            client.delete_record(kind, &project, &name)?;
            print(&serde_json::json!({"deleted": format!("{kind}/{project}/{name}")}))
        }
        MetaCommand::List {
            kind,
            project,
            parent,
        } => print(&client.list_records(
            kind.parse()?,
            &RecordQuery {
                project,
                parent,
                offset: None,
                limit: Some(1000),
            },
        )?),
    }
}
