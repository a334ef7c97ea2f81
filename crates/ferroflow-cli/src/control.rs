//! `ferroflow events ...` and `ferroflow models ...`: the control plane from the command line,
//! through a server (`--server URL`) or, without one, on the embedded SQLite store directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use ferroflow_meta::{
    EventFilter, MetaStore, ModelStage, NewEvent, NewModelVersion, NewRecord, Notifier, RecordKind,
    SqliteStore,
};
use serde_json::{Value, json};

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
    fn filter(&self) -> EventFilter {
        let list = |v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    s.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        EventFilter {
            keys: list(&self.keys),
            event_types: list(&self.types),
            ..Default::default()
        }
    }

    fn query(&self) -> String {
        let mut q = format!("after={}", self.after);
        if let Some(k) = &self.keys {
            q.push_str(&format!("&keys={k}"));
        }
        if let Some(t) = &self.types {
            q.push_str(&format!("&event_types={t}"));
        }
        q
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

pub(crate) enum Client {
    Http {
        agent: ureq::Agent,
        base: String,
        token: Option<String>,
    },
    Embedded {
        notifier: Notifier,
        store: Arc<dyn MetaStore>,
        rt: tokio::runtime::Runtime,
    },
}

impl Client {
    pub(crate) fn open(t: &Target) -> Result<Client, AnyError> {
        Ok(match &t.server {
            Some(url) => Client::Http {
                agent: ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build()
                    .into(),
                base: url.trim_end_matches('/').to_string(),
                token: match &t.token {
                    Some(tok) => Some(tok.clone()),
                    None => ferroflow_server::auth::read_token(&t.data_dir)?,
                },
            },
            None => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let store: Arc<dyn MetaStore> =
                    Arc::new(rt.block_on(SqliteStore::open(&t.data_dir.join("meta.db")))?);
                Client::Embedded {
                    notifier: Notifier::new(store.clone()),
                    store,
                    rt,
                }
            }
        })
    }

    /// One HTTP call; a non-2xx answer becomes an error carrying the server's message.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AnyError> {
        let Client::Http { agent, base, token } = self else {
            unreachable!("HTTP call on the embedded client")
        };
        let url = format!("{base}{path}");
        let auth = token.as_ref().map(|t| format!("Bearer {t}"));
        let mut resp = match (method, body) {
            ("GET", _) => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()?
            }
            ("DELETE", _) => {
                let mut r = agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()?
            }
            (m, b) => {
                let mut r = match m {
                    "PUT" => agent.put(&url),
                    _ => agent.post(&url),
                };
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send_json(b.cloned().unwrap_or(Value::Null))?
            }
        };
        let status = resp.status().as_u16();
        // JSON, or text (a job log) as a string.
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let msg = body["message"].as_str().unwrap_or("no message");
            return Err(format!("server answered {status}: {msg}").into());
        }
        Ok(body)
    }
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
    let client = Client::open(target)?;
    match cmd {
        TokensCommand::Create { name, role } => {
            let role: ferroflow_meta::Role = role.parse()?;
            let created = match &client {
                Client::Http { .. } => client.call(
                    "POST",
                    "/api/tokens",
                    Some(&json!({"name": name, "role": role})),
                )?,
                Client::Embedded { store, rt, .. } => {
                    let secret = ferroflow_meta::new_secret()?;
                    let t = rt.block_on(store.create_token(
                        &name,
                        role,
                        &ferroflow_meta::secret_hash(&secret),
                    ))?;
                    json!({"name": t.name, "role": t.role, "create_time": t.create_time, "secret": secret})
                }
            };
            eprintln!(
                "token '{}' ({}) created; its secret is shown this once:",
                created["name"].as_str().unwrap_or_default(),
                created["role"].as_str().unwrap_or_default()
            );
            println!("{}", created["secret"].as_str().unwrap_or_default());
        }
        TokensCommand::List => {
            let list = match &client {
                Client::Http { .. } => client.call("GET", "/api/tokens", None)?,
                Client::Embedded { store, rt, .. } => {
                    serde_json::to_value(rt.block_on(store.list_tokens())?)?
                }
            };
            for t in list.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<9} created {}",
                    t["name"].as_str().unwrap_or_default(),
                    t["role"].as_str().unwrap_or_default(),
                    t["create_time"]
                );
            }
        }
        TokensCommand::Revoke { name } => {
            match &client {
                Client::Http { .. } => {
                    client.call("DELETE", &format!("/api/tokens/{name}"), None)?;
                }
                Client::Embedded { store, rt, .. } => rt.block_on(store.revoke_token(&name))?,
            }
            println!("revoked token '{name}'");
        }
    }
    Ok(())
}

fn print(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

pub(crate) fn events(target: &Target, cmd: EventsCommand) -> Result<(), AnyError> {
    let client = Client::open(target)?;
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
            let stored = match &client {
                Client::Http { .. } => {
                    client.call("POST", "/api/events", Some(&serde_json::to_value(&e)?))?
                }
                Client::Embedded { notifier, rt, .. } => {
                    serde_json::to_value(rt.block_on(notifier.send(e))?)?
                }
            };
            print(&stored);
        }
        EventsCommand::List { filter, limit } => {
            let list = match &client {
                Client::Http { .. } => client.call(
                    "GET",
                    &format!("/api/events?{}&limit={limit}", filter.query()),
                    None,
                )?,
                Client::Embedded { store, rt, .. } => serde_json::to_value(
                    rt.block_on(store.list_events(&filter.filter(), filter.after, limit))?,
                )?,
            };
            for e in list.as_array().into_iter().flatten() {
                println!("{e}");
            }
        }
        EventsCommand::Listen {
            filter,
            follow,
            timeout,
        } => {
            let mut after = filter.after;
            loop {
                let wait = if follow { 30 } else { timeout };
                let got = match &client {
                    Client::Http { .. } => client.call(
                        "GET",
                        &format!(
                            "/api/events/listen?{}&timeout_ms={}",
                            FilterArgs {
                                after,
                                keys: filter.keys.clone(),
                                types: filter.types.clone()
                            }
                            .query(),
                            wait * 1000
                        ),
                        None,
                    )?,
                    Client::Embedded { notifier, rt, .. } => serde_json::to_value(rt.block_on(
                        notifier.listen(&filter.filter(), after, 1000, Duration::from_secs(wait)),
                    )?)?,
                };
                for e in got.as_array().into_iter().flatten() {
                    println!("{e}");
                    after = after.max(e["offset"].as_i64().unwrap_or(after));
                }
                if !follow {
                    if got.as_array().is_none_or(|a| a.is_empty()) {
                        return Err(format!("no event within {timeout} s").into());
                    }
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn models(target: &Target, cmd: ModelsCommand) -> Result<(), AnyError> {
    let client = Client::open(target)?;
    let out = match cmd {
        ModelsCommand::Register { name, description } => match &client {
            Client::Http { .. } => client.call(
                "POST",
                "/api/models",
                Some(&json!({"name": name, "description": description})),
            )?,
            Client::Embedded { store, rt, .. } => {
                serde_json::to_value(rt.block_on(store.register_model(&name, &description))?)?
            }
        },
        ModelsCommand::List => match &client {
            Client::Http { .. } => client.call("GET", "/api/models", None)?,
            Client::Embedded { store, rt, .. } => {
                serde_json::to_value(rt.block_on(store.list_models(0, 1000))?)?
            }
        },
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
            match &client {
                Client::Http { .. } => client.call(
                    "POST",
                    &format!("/api/models/{name}/versions"),
                    Some(&serde_json::to_value(&v)?),
                )?,
                Client::Embedded { store, rt, .. } => {
                    serde_json::to_value(rt.block_on(store.create_model_version(&name, v))?)?
                }
            }
        }
        ModelsCommand::Versions { name, stage } => match &client {
            Client::Http { .. } => {
                let q = stage.map(|s| format!("?stage={s}")).unwrap_or_default();
                client.call("GET", &format!("/api/models/{name}/versions{q}"), None)?
            }
            Client::Embedded { store, rt, .. } => {
                let stage = stage.as_deref().map(str::parse::<ModelStage>).transpose()?;
                serde_json::to_value(rt.block_on(store.list_model_versions(&name, stage))?)?
            }
        },
        ModelsCommand::Stage {
            name,
            version,
            stage,
        } => match &client {
            Client::Http { .. } => client.call(
                "PUT",
                &format!("/api/models/{name}/versions/{version}/stage"),
                Some(&json!({"stage": stage.to_ascii_uppercase()})),
            )?,
            Client::Embedded { store, rt, .. } => {
                let stage: ModelStage = stage.parse()?;
                serde_json::to_value(rt.block_on(store.set_model_stage(&name, version, stage))?)?
            }
        },
    };
    print(&out);
    Ok(())
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
    let client = Client::open(target)?;
    let out = match cmd {
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
            match &client {
                Client::Http { .. } => client.call(
                    "POST",
                    &format!("/api/meta/{kind}"),
                    Some(&serde_json::to_value(&r)?),
                )?,
                Client::Embedded { store, rt, .. } => serde_json::to_value(
                    rt.block_on(store.create_record(kind.parse::<RecordKind>()?, r))?,
                )?,
            }
        }
        MetaCommand::Get {
            kind,
            project,
            name,
        } => match &client {
            Client::Http { .. } => {
                client.call("GET", &format!("/api/meta/{kind}/{project}/{name}"), None)?
            }
            Client::Embedded { store, rt, .. } => serde_json::to_value(
                rt.block_on(store.get_record(kind.parse()?, &project, &name))?,
            )?,
        },
        MetaCommand::Update {
            kind,
            project,
            name,
            body,
            revision,
        } => {
            let body = json_arg(&body)?;
            match &client {
                Client::Http { .. } => client.call(
                    "PUT",
                    &format!("/api/meta/{kind}/{project}/{name}"),
                    Some(&json!({"body": body, "revision": revision})),
                )?,
                Client::Embedded { store, rt, .. } => serde_json::to_value(rt.block_on(
                    store.update_record(kind.parse()?, &project, &name, body, revision),
                )?)?,
            }
        }
        MetaCommand::Delete {
            kind,
            project,
            name,
        } => {
            match &client {
                Client::Http { .. } => {
                    client.call(
                        "DELETE",
                        &format!("/api/meta/{kind}/{project}/{name}"),
                        None,
                    )?;
                }
                Client::Embedded { store, rt, .. } => {
                    rt.block_on(store.delete_record(kind.parse()?, &project, &name))?;
                }
            }
            json!({"deleted": format!("{kind}/{project}/{name}")})
        }
        MetaCommand::List {
            kind,
            project,
            parent,
        } => match &client {
            Client::Http { .. } => {
                let mut q = vec![];
                if let Some(p) = &project {
                    q.push(format!("project={p}"));
                }
                if let Some(p) = &parent {
                    q.push(format!("parent={p}"));
                }
                client.call("GET", &format!("/api/meta/{kind}?{}", q.join("&")), None)?
            }
            Client::Embedded { store, rt, .. } => {
                serde_json::to_value(rt.block_on(store.list_records(
                    kind.parse()?,
                    project.as_deref(),
                    parent.as_deref(),
                    0,
                    1000,
                ))?)?
            }
        },
    };
    print(&out);
    Ok(())
}
