//! The AI Graph: nodes joined by data edges inside jobs, jobs joined by control rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use ferroflow_meta::ModelStage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, WorkflowError};
use crate::events::JOB_STATUS_CHANGED;
use crate::periodic::Periodic;
use crate::rules::{Action, ConditionType, EventCondition, Life, Rule, ValueCondition};
use crate::status::JobStatus;

/// What a node does, as its spec names it (`read_dataset:`, `train:`, ...). The graph does
/// not know the kinds: the plugin of the node's job type reads the ones it runs and refuses
/// the others, naming them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKind(String);

impl NodeKind {
    /// The longest kind name accepted.
    pub const MAX_LEN: usize = 64;

    /// A kind name: a lowercase letter, then lowercase letters, digits and `_`.
    pub fn new(name: &str) -> std::result::Result<NodeKind, String> {
        let mut chars = name.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name.len() <= Self::MAX_LEN;
        if !ok {
            return Err(format!(
                "'{name}' is not a node kind (lowercase letters, digits and '_', at most {} characters)",
                Self::MAX_LEN
            ));
        }
        Ok(NodeKind(name.to_string()))
    }

    /// The name used in specs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// The job it belongs to.
    pub job: String,
    /// What it does.
    pub kind: NodeKind,
    /// Nodes whose output it reads (data edges; same job only).
    pub inputs: Vec<String>,
    /// Kind-specific settings, checked by the job type's plugin.
    pub config: Value,
}

impl Node {
    /// A node of `kind` in `job`.
    pub fn new(
        id: impl Into<String>,
        job: impl Into<String>,
        kind: NodeKind,
        config: Value,
    ) -> Self {
        Node {
            id: id.into(),
            job: job.into(),
            kind,
            inputs: vec![],
            config,
        }
    }

    /// Read from these nodes.
    pub fn inputs<I: IntoIterator<Item = S>, S: Into<String>>(mut self, inputs: I) -> Self {
        self.inputs = inputs.into_iter().map(Into::into).collect();
        self
    }

    /// A string setting of the config.
    pub fn str_config(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }
}

/// A condition as written: an event, a job's status or a model's stage. In YAML, a map
/// with one key: `event:`, `after:` or `model:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ConditionRepr", into = "ConditionRepr")]
pub enum Condition {
    /// Any event, by patterns.
    Event(EventSpec),
    /// A job of this workflow reached a status (default FINISHED).
    After(JobStatusCondition),
    /// A model version reached a stage.
    Model(ModelCondition),
}

/// The YAML shape of a [`Condition`] (YAML enums would otherwise need tags).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<EventSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<JobStatusCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<ModelCondition>,
}

impl TryFrom<ConditionRepr> for Condition {
    type Error = String;
    fn try_from(r: ConditionRepr) -> Result<Self, String> {
        match (r.event, r.after, r.model) {
            (Some(e), None, None) => Ok(Condition::Event(e)),
            (None, Some(a), None) => Ok(Condition::After(a)),
            (None, None, Some(m)) => Ok(Condition::Model(m)),
            _ => Err("a condition is exactly one of 'event', 'after' and 'model'".into()),
        }
    }
}

impl From<Condition> for ConditionRepr {
    fn from(c: Condition) -> Self {
        match c {
            Condition::Event(e) => ConditionRepr {
                event: Some(e),
                ..Default::default()
            },
            Condition::After(a) => ConditionRepr {
                after: Some(a),
                ..Default::default()
            },
            Condition::Model(m) => ConditionRepr {
                model: Some(m),
                ..Default::default()
            },
        }
    }
}

/// An event condition as written; `*` is a wildcard and is the default of every pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Namespace pattern.
    #[serde(default = "star")]
    pub namespace: String,
    /// Event type pattern.
    #[serde(default = "star")]
    pub event_type: String,
    /// Sender pattern.
    #[serde(default = "star")]
    pub sender: String,
    /// Key pattern.
    #[serde(default = "star")]
    pub key: String,
    /// Expected value; with it the condition is EQUALS unless `value_condition` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// EQUALS or UPDATED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_condition: Option<ValueCondition>,
    /// ONCE (default) or REPEATED.
    #[serde(default)]
    pub life: Life,
}

fn star() -> String {
    "*".into()
}

/// `after: {job, status}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStatusCondition {
    /// A job of the same workflow.
    pub job: String,
    /// The status (default FINISHED).
    #[serde(default = "finished")]
    pub status: String,
    /// ONCE (default) or REPEATED.
    #[serde(default)]
    pub life: Life,
}

fn finished() -> String {
    "FINISHED".into()
}

/// `model: {name, stage}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCondition {
    /// Model name (pattern).
    pub name: String,
    /// GENERATED, VALIDATED, DEPLOYED, DEPRECATED or DELETED.
    pub stage: String,
    /// ONCE (default) or REPEATED.
    #[serde(default)]
    pub life: Life,
}

impl Condition {
    /// Job `job` of this workflow reached `status`.
    pub fn after(job: impl Into<String>, status: JobStatus) -> Self {
        Condition::After(JobStatusCondition {
            job: job.into(),
            status: status.as_str().into(),
            life: Life::Once,
        })
    }

    /// A version of `model` reached `stage`.
    pub fn model(model: impl Into<String>, stage: ModelStage) -> Self {
        Condition::Model(ModelCondition {
            name: model.into(),
            stage: stage.as_str().into(),
            life: Life::Once,
        })
    }

    /// Events of `event_type` with `key` (patterns).
    pub fn event(event_type: impl Into<String>, key: impl Into<String>) -> Self {
        Condition::Event(EventSpec {
            namespace: star(),
            event_type: event_type.into(),
            sender: star(),
            key: key.into(),
            value: None,
            value_condition: None,
            life: Life::Once,
        })
    }

    /// The event condition it stands for in workflow `workflow`.
    pub fn resolve(&self, workflow: &str) -> Result<EventCondition, String> {
        Ok(match self {
            Condition::Event(e) => {
                let vc = e.value_condition.unwrap_or(if e.value.is_some() {
                    ValueCondition::Equals
                } else {
                    ValueCondition::Updated
                });
                if vc == ValueCondition::Equals && e.value.is_none() {
                    return Err("an EQUALS condition needs a 'value'".into());
                }
                EventCondition {
                    namespace: e.namespace.clone(),
                    event_type: e.event_type.clone(),
                    sender: e.sender.clone(),
                    key: e.key.clone(),
                    value: e.value.clone(),
                    value_condition: vc,
                    life: e.life,
                }
            }
            Condition::After(a) => {
                let status: JobStatus = a.status.parse()?;
                EventCondition::new(
                    JOB_STATUS_CHANGED,
                    crate::JobKey::new(workflow, &a.job).to_string(),
                )
                .equals(status.as_str())
                .life(a.life)
            }
            Condition::Model(m) => {
                let stage: ModelStage = m.stage.parse().map_err(|e| format!("{e}"))?;
                EventCondition::new(stage.event_type(), m.name.clone()).life(m.life)
            }
        })
    }
}

/// A control rule as written: conditions, how they combine, the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The conditions.
    pub when: Vec<Condition>,
    /// ALL (default) or ANY.
    #[serde(default)]
    pub meet: Meet,
    /// START, STOP, RESTART or NONE.
    pub action: Action,
}

/// `meet:` of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Meet {
    /// MEET_ALL.
    #[default]
    All,
    /// MEET_ANY.
    Any,
}

impl RuleSpec {
    /// A rule.
    pub fn new(when: Vec<Condition>, action: Action) -> Self {
        RuleSpec {
            when,
            meet: Meet::All,
            action,
        }
    }

    /// Combine with MEET_ANY.
    pub fn any(mut self) -> Self {
        self.meet = Meet::Any;
        self
    }

    /// The rule it stands for in `workflow`.
    pub fn resolve(&self, workflow: &str) -> Result<Rule, String> {
        Ok(Rule {
            conditions: self
                .when
                .iter()
                .map(|c| c.resolve(workflow))
                .collect::<Result<_, _>>()?,
            condition_type: match self.meet {
                Meet::All => ConditionType::MeetAll,
                Meet::Any => ConditionType::MeetAny,
            },
            action: self.action,
        })
    }
}

/// A job: its type, triggers and type-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// Unique name within the workflow.
    pub name: String,
    /// `native`, `process`, `flink` or a plugin's type.
    pub job_type: String,
    /// Periodic restarts.
    pub periodic: Option<Periodic>,
    /// Control rules, tried in order.
    pub rules: Vec<RuleSpec>,
    /// Whether the job starts when its execution starts; by default it does unless it has a
    /// START rule or is periodic (then `run_at_start` says). A streaming job restarted by a
    /// RESTART rule, say, runs from the start anyway.
    pub start_with_execution: Option<bool>,
    /// What to do when a run fails (`None`: the job stays FAILED, failing its execution).
    pub restart: Option<crate::restart::RestartPolicy>,
    /// Settings for the job type (`command`, `env`, ...).
    pub properties: Map<String, Value>,
}

impl JobConfig {
    /// A job of `job_type`.
    pub fn new(name: impl Into<String>, job_type: impl Into<String>) -> Self {
        JobConfig {
            name: name.into(),
            job_type: job_type.into(),
            periodic: None,
            rules: vec![],
            start_with_execution: None,
            restart: None,
            properties: Map::new(),
        }
    }

    /// Add a rule.
    pub fn rule(mut self, rule: RuleSpec) -> Self {
        self.rules.push(rule);
        self
    }

    /// Restart periodically.
    pub fn periodic(mut self, p: Periodic) -> Self {
        self.periodic = Some(p);
        self
    }

    /// Set a type-specific property.
    pub fn property(mut self, key: &str, value: Value) -> Self {
        self.properties.insert(key.into(), value);
        self
    }

    /// Has a rule that starts it.
    pub fn has_start_rule(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.action, Action::Start | Action::Restart))
    }

    /// Starts when its execution starts: as `start_with_execution` says; without it, no
    /// START rule and no period, or a period that asks for it.
    pub fn starts_with_execution(&self) -> bool {
        if let Some(s) = self.start_with_execution {
            return s;
        }
        match &self.periodic {
            Some(p) => p.run_at_start,
            None => !self.has_start_rule(),
        }
    }

    /// Waits for events or ticks (its execution runs until stopped).
    pub fn is_triggered(&self) -> bool {
        self.periodic.is_some() || !self.rules.is_empty()
    }
}

/// Where an item of a graph is written, for error messages.
pub trait Locate {
    /// `file:line` of the node, or a description.
    fn node(&self, id: &str) -> String;
    /// `file:line` of the job, or a description.
    fn job(&self, name: &str) -> String;
    /// `file:line` of the workflow rules, or a description.
    fn workflow_rules(&self) -> String;
}

/// Names items without a file (graphs built in code).
pub struct Described<'a>(pub &'a str);

impl Locate for Described<'_> {
    fn node(&self, id: &str) -> String {
        format!("workflow '{}', node '{id}'", self.0)
    }
    fn job(&self, name: &str) -> String {
        format!("workflow '{}', job '{name}'", self.0)
    }
    fn workflow_rules(&self) -> String {
        format!("workflow '{}', workflow rules", self.0)
    }
}

/// The AI Graph of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct AiGraph {
    /// Workflow name.
    pub name: String,
    /// Project (namespace) it belongs to.
    pub project: String,
    /// Free text.
    pub description: String,
    /// Jobs by name.
    pub jobs: BTreeMap<String, JobConfig>,
    /// Nodes in declaration order.
    pub nodes: Vec<Node>,
    /// Rules that start (START) or stop (STOP) whole executions.
    pub workflow_rules: Vec<RuleSpec>,
    /// Directory relative paths in the graph are resolved against.
    pub base_dir: Option<PathBuf>,
}

/// The nodes of one job, in an order where every node comes after its inputs.
#[derive(Debug, Clone)]
pub struct SubGraph<'a> {
    /// The whole graph.
    pub graph: &'a AiGraph,
    /// The job.
    pub job: &'a JobConfig,
    /// Its nodes, inputs first.
    pub nodes: Vec<&'a Node>,
}

impl AiGraph {
    /// An empty graph for workflow `name` in project `default`.
    pub fn new(name: impl Into<String>) -> Self {
        AiGraph {
            name: name.into(),
            project: "default".into(),
            description: String::new(),
            jobs: BTreeMap::new(),
            nodes: vec![],
            workflow_rules: vec![],
            base_dir: None,
        }
    }

    /// Set the project.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = project.into();
        self
    }

    /// Add a job.
    pub fn job(mut self, job: JobConfig) -> Self {
        self.jobs.insert(job.name.clone(), job);
        self
    }

    /// Add a node.
    pub fn node(mut self, node: Node) -> Self {
        self.nodes.push(node);
        self
    }

    /// Add a workflow rule (START or STOP an execution).
    pub fn workflow_rule(mut self, rule: RuleSpec) -> Self {
        self.workflow_rules.push(rule);
        self
    }

    /// Check the graph's structure; errors name the item at fault through `at`.
    pub fn validate_with(&self, at: &dyn Locate) -> Result<()> {
        let err = |where_: String, m: String| Err(WorkflowError::spec(where_, m));
        if self.name.is_empty() || self.name.contains(['/', '.']) {
            return err(
                at.workflow_rules(),
                format!(
                    "'{}': a workflow name must be non-empty without '/' or '.'",
                    self.name
                ),
            );
        }
        for job in self.jobs.values() {
            if job.name.is_empty() || job.name.contains(['/', '.']) {
                return err(
                    at.job(&job.name),
                    format!(
                        "'{}': a job name must be non-empty without '/' or '.'",
                        job.name
                    ),
                );
            }
            if let Some(p) = &job.periodic
                && let Err(m) = p.validate()
            {
                return err(at.job(&job.name), m);
            }
            for (i, r) in job.rules.iter().enumerate() {
                self.check_rule(r, &at.job(&job.name), &format!("rule {}", i + 1))?;
            }
        }
        for (i, r) in self.workflow_rules.iter().enumerate() {
            self.check_rule(r, &at.workflow_rules(), &format!("workflow rule {}", i + 1))?;
            if !matches!(r.action, Action::Start | Action::Stop) {
                return err(
                    at.workflow_rules(),
                    format!(
                        "workflow rule {}: action {:?} is not for executions (START or STOP)",
                        i + 1,
                        r.action
                    ),
                );
            }
        }
        let mut by_id: HashMap<&str, &Node> = HashMap::new();
        for n in &self.nodes {
            if by_id.insert(&n.id, n).is_some() {
                return err(at.node(&n.id), format!("node id '{}' is used twice", n.id));
            }
            if !self.jobs.contains_key(&n.job) {
                return err(
                    at.node(&n.id),
                    format!(
                        "node '{}' names unknown job '{}' (jobs: {})",
                        n.id,
                        n.job,
                        self.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        for n in &self.nodes {
            for input in &n.inputs {
                let Some(src) = by_id.get(input.as_str()) else {
                    return err(
                        at.node(&n.id),
                        format!("node '{}' reads from unknown node '{input}'", n.id),
                    );
                };
                if src.job != n.job {
                    return err(
                        at.node(&n.id),
                        format!(
                            "data edge '{input}' -> '{}' crosses jobs ('{}' -> '{}'); jobs exchange data through datasets and models, and are linked by rules",
                            n.id, src.job, n.job
                        ),
                    );
                }
            }
        }
        // Cycles: a depth-first search over data edges.
        let mut state: HashMap<&str, u8> = HashMap::new(); // 1 visiting, 2 done
        fn visit<'a>(
            id: &'a str,
            by_id: &HashMap<&'a str, &'a Node>,
            state: &mut HashMap<&'a str, u8>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match state.get(id) {
                Some(2) => return None,
                Some(1) => {
                    let start = path.iter().position(|p| *p == id).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(id.to_string());
                    return Some(cycle);
                }
                _ => {}
            }
            state.insert(id, 1);
            path.push(id);
            for input in &by_id[id].inputs {
                if let Some(c) = visit(input, by_id, state, path) {
                    return Some(c);
                }
            }
            path.pop();
            state.insert(id, 2);
            None
        }
        for n in &self.nodes {
            if let Some(cycle) = visit(&n.id, &by_id, &mut state, &mut vec![]) {
                return err(
                    at.node(&n.id),
                    format!("data edges form a cycle: {}", cycle.join(" <- ")),
                );
            }
        }
        Ok(())
    }

    fn check_rule(&self, r: &RuleSpec, at: &str, what: &str) -> Result<()> {
        if r.when.is_empty() {
            return Err(WorkflowError::spec(at, format!("{what} has no conditions")));
        }
        for c in &r.when {
            if let Condition::After(a) = c
                && !self.jobs.contains_key(&a.job)
            {
                return Err(WorkflowError::spec(
                    at,
                    format!("{what} names unknown job '{}'", a.job),
                ));
            }
            c.resolve(&self.name)
                .map_err(|m| WorkflowError::spec(at, format!("{what}: {m}")))?;
        }
        Ok(())
    }

    /// Check the structure, naming items as `workflow 'w', node 'n'`.
    pub fn validate(&self) -> Result<()> {
        self.validate_with(&Described(&self.name))
    }

    /// The nodes of `job`, inputs first.
    pub fn sub_graph(&self, job: &str) -> Result<SubGraph<'_>> {
        let cfg = self.jobs.get(job).ok_or_else(|| WorkflowError::NotFound {
            kind: "job",
            name: crate::JobKey::new(&self.name, job).to_string(),
        })?;
        let mine: Vec<&Node> = self.nodes.iter().filter(|n| n.job == job).collect();
        let mut done: HashSet<&str> = HashSet::new();
        let mut order = Vec::with_capacity(mine.len());
        while order.len() < mine.len() {
            let before = order.len();
            for n in &mine {
                if !done.contains(n.id.as_str())
                    && n.inputs.iter().all(|i| done.contains(i.as_str()))
                {
                    done.insert(&n.id);
                    order.push(*n);
                }
            }
            if order.len() == before {
                return Err(WorkflowError::spec(
                    Described(&self.name).job(job),
                    "data edges form a cycle",
                ));
            }
        }
        Ok(SubGraph {
            graph: self,
            job: cfg,
            nodes: order,
        })
    }

    /// The resolved control rules of `job`.
    pub fn rules_of(&self, job: &str) -> Result<Vec<Rule>> {
        let cfg = self.jobs.get(job).ok_or_else(|| WorkflowError::NotFound {
            kind: "job",
            name: crate::JobKey::new(&self.name, job).to_string(),
        })?;
        cfg.rules
            .iter()
            .map(|r| {
                r.resolve(&self.name)
                    .map_err(|m| WorkflowError::spec(Described(&self.name).job(job), m))
            })
            .collect()
    }

    /// The resolved workflow rules.
    pub fn resolved_workflow_rules(&self) -> Result<Vec<Rule>> {
        self.workflow_rules
            .iter()
            .map(|r| {
                r.resolve(&self.name)
                    .map_err(|m| WorkflowError::spec(Described(&self.name).workflow_rules(), m))
            })
            .collect()
    }

    /// Does an execution wait for events or ticks (and so run until stopped)?
    pub fn is_triggered(&self) -> bool {
        self.jobs.values().any(JobConfig::is_triggered)
    }

    /// A path from the graph resolved against its base directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }
}
