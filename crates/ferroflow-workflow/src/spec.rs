//! The YAML workflow spec: the same expressiveness as [`AiGraph`], written down.
//!
//! ```yaml
//! workflow: batch_train_predict
//! project: demo
//! jobs:
//!   train:
//!     type: native
//!     periodic: { interval: 10m, run_at_start: true }
//!   validate:
//!     type: native
//!     rules:
//!       - when: [ { model: { name: churn, stage: GENERATED } } ]
//!         action: START
//!   report:
//!     type: process
//!     command: [python3, report.py]
//!     rules:
//!       - when: [ { after: { job: validate, status: FINISHED } } ]
//!         action: START
//! nodes:
//!   - id: read
//!     job: train
//!     read_dataset: { path: data/train.csv }
//!   - id: fit
//!     job: train
//!     inputs: [read]
//!     train: { model: churn, stage: { className: LogisticRegression } }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, WorkflowError};
use crate::graph::{AiGraph, JobConfig, Locate, Node, NodeKind, RuleSpec};
use crate::periodic::Periodic;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowSpec {
    workflow: String,
    #[serde(default = "default_project")]
    project: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    jobs: BTreeMap<String, JobSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<NodeSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    workflow_rules: Vec<RuleSpec>,
}

fn default_project() -> String {
    "default".into()
}

#[derive(Debug, Serialize, Deserialize)]
struct JobSpec {
    #[serde(rename = "type")]
    job_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    periodic: Option<Periodic>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rules: Vec<RuleSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_with_execution: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::restart::spec_form"
    )]
    restart: Option<crate::restart::RestartPolicy>,
    #[serde(flatten)]
    properties: Map<String, Value>,
}

/// A node as written: `id`, `job`, `inputs` and one more key, its kind, holding its settings
/// (`train: {...}`). Which kinds exist is the job type's business, not the spec's.
#[derive(Debug, Serialize, Deserialize)]
struct NodeSpec {
    id: String,
    job: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<String>,
    #[serde(flatten)]
    kind: BTreeMap<String, Value>,
}

impl NodeSpec {
    fn from_node(n: &Node) -> NodeSpec {
        NodeSpec {
            id: n.id.clone(),
            job: n.job.clone(),
            inputs: n.inputs.clone(),
            kind: BTreeMap::from([(n.kind.as_str().to_string(), n.config.clone())]),
        }
    }
}

/// Finds the line of an item in the spec's text, for error messages.
pub(crate) struct Lines<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Lines<'_> {
    fn find(&self, pred: impl Fn(&str) -> bool, what: String) -> String {
        match self.text.lines().position(|l| pred(l.trim())) {
            Some(i) => format!("{}:{}", self.file, i + 1),
            None => format!("{}: {what}", self.file),
        }
    }
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches(|c| c == '"' || c == '\'')
}

impl Locate for Lines<'_> {
    fn node(&self, id: &str) -> String {
        self.find(
            |l| {
                // `- id: x` or `- {id: x, job: ...}`
                let l = l.strip_prefix('-').unwrap_or(l).trim_start();
                let l = l.strip_prefix('{').unwrap_or(l).trim_start();
                l.strip_prefix("id:")
                    .is_some_and(|v| unquote(v.split([',', '}']).next().unwrap_or_default()) == id)
            },
            format!("node '{id}'"),
        )
    }

    fn job(&self, name: &str) -> String {
        // The first `name:` line after `jobs:`.
        let start = self.text.lines().position(|l| l.trim_end() == "jobs:");
        let found = self
            .text
            .lines()
            .enumerate()
            .skip(start.unwrap_or(0))
            .find(|(_, l)| {
                // `  name:` or `  name: {type: ...}`
                l.starts_with([' ', '\t'])
                    && l.trim().split_once(':').is_some_and(|(k, rest)| {
                        unquote(k) == name && (rest.is_empty() || rest.starts_with(' '))
                    })
            });
        match found {
            Some((i, _)) => format!("{}:{}", self.file, i + 1),
            None => format!("{}: job '{name}'", self.file),
        }
    }

    fn workflow_rules(&self) -> String {
        self.find(
            |l| l.starts_with("workflow_rules:"),
            "workflow rules".into(),
        )
    }
}

/// Parse and check a workflow spec; `file` names it in errors (`file:line: ...`).
pub fn parse_workflow(text: &str, file: &str) -> Result<AiGraph> {
    let spec: WorkflowSpec = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = match e.location() {
            Some(l) => format!("{file}:{}:{}", l.line(), l.column()),
            None => file.to_string(),
        };
        WorkflowError::spec(at, e.to_string())
    })?;
    let lines = Lines { file, text };
    let mut graph = AiGraph::new(spec.workflow);
    graph.project = spec.project;
    graph.description = spec.description;
    graph.workflow_rules = spec.workflow_rules;
    for (name, j) in spec.jobs {
        graph.jobs.insert(
            name.clone(),
            JobConfig {
                name,
                job_type: j.job_type,
                periodic: j.periodic,
                rules: j.rules,
                start_with_execution: j.start_with_execution,
                restart: j.restart,
                properties: j.properties,
            },
        );
    }
    for n in spec.nodes {
        let at = || lines.node(&n.id);
        if n.kind.len() != 1 {
            let message = if n.kind.is_empty() {
                format!(
                    "node '{}' has no kind: besides id, job and inputs, give the key of what it does (read_dataset, transform, train, ...)",
                    n.id
                )
            } else {
                let keys: Vec<&str> = n.kind.keys().map(String::as_str).collect();
                format!(
                    "node '{}' has several kinds ({}); a node does one thing",
                    n.id,
                    keys.join(", ")
                )
            };
            return Err(WorkflowError::spec(at(), message));
        }
        let (kind, config) = n.kind.into_iter().next().expect("exactly one kind");
        let kind = NodeKind::new(&kind)
            .map_err(|e| WorkflowError::spec(at(), format!("node '{}': {e}", n.id)))?;
        graph.nodes.push(Node {
            id: n.id,
            job: n.job,
            kind,
            inputs: n.inputs,
            config,
        });
    }
    graph.validate_with(&lines)?;
    Ok(graph)
}

/// Read, parse and check a spec file; relative paths in it resolve against its directory.
pub fn load_workflow(path: &Path) -> Result<AiGraph> {
    Ok(load_workflow_text(path)?.1)
}

/// [`load_workflow`], also returning the file's text (for [`check_job_types`], which points
/// at its lines).
pub fn load_workflow_text(path: &Path) -> Result<(String, AiGraph)> {
    let text = std::fs::read_to_string(path).map_err(|e| WorkflowError::io(path, e))?;
    let mut g = parse_workflow(&text, &path.display().to_string())?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    g.base_dir = Some(std::path::absolute(dir).map_err(|e| WorkflowError::io(dir, e))?);
    Ok((text, g))
}

/// Write a graph as a YAML spec (what is stored with the workflow).
pub fn to_yaml(g: &AiGraph) -> Result<String> {
    let spec = WorkflowSpec {
        workflow: g.name.clone(),
        project: g.project.clone(),
        description: g.description.clone(),
        jobs: g
            .jobs
            .iter()
            .map(|(name, j)| {
                (
                    name.clone(),
                    JobSpec {
                        job_type: j.job_type.clone(),
                        periodic: j.periodic.clone(),
                        rules: j.rules.clone(),
                        start_with_execution: j.start_with_execution,
                        restart: j.restart.clone(),
                        properties: j.properties.clone(),
                    },
                )
            })
            .collect(),
        nodes: g.nodes.iter().map(NodeSpec::from_node).collect(),
        workflow_rules: g.workflow_rules.clone(),
    };
    serde_yaml_ng::to_string(&spec).map_err(|e| WorkflowError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Condition, RuleSpec};
    use crate::rules::Action;

    const GOOD: &str = r#"
workflow: wf
project: p
jobs:
  train:
    type: native
    periodic: { interval: 30s, run_at_start: true }
  validate:
    type: native
    rules:
      - when:
          - model: { name: churn, stage: GENERATED }
        action: START
  report:
    type: process
    command: [echo, hi]
    rules:
      - when: [ { after: { job: validate } } ]
        action: START
nodes:
  - id: read
    job: train
    read_dataset: { path: train.csv }
  - id: fit
    job: train
    inputs: [read]
    train: { model: churn }
"#;

    fn err(text: &str) -> String {
        parse_workflow(text, "w.yaml").unwrap_err().to_string()
    }

    #[test]
    fn parses_and_round_trips() {
        let g = parse_workflow(GOOD, "w.yaml").unwrap();
        assert_eq!(g.jobs.len(), 3);
        assert_eq!(g.nodes[1].inputs, vec!["read"]);
        assert_eq!(g.jobs["report"].properties["command"][0], "echo");
        assert!(g.jobs["train"].starts_with_execution());
        assert!(!g.jobs["validate"].starts_with_execution());
        assert!(g.is_triggered());
        let again = parse_workflow(&to_yaml(&g).unwrap(), "again.yaml").unwrap();
        assert_eq!(again, g);
        let rules = g.rules_of("report").unwrap();
        assert_eq!(rules[0].conditions[0].key, "wf.validate");
        assert_eq!(rules[0].conditions[0].value.as_deref(), Some("FINISHED"));
    }

    #[test]
    fn errors_point_at_the_spec() {
        let e = err(&GOOD.replace(
            "job: train\n    inputs: [read]",
            "job: trian\n    inputs: [read]",
        ));
        assert!(
            e.contains("w.yaml:24") && e.contains("unknown job 'trian'"),
            "{e}"
        );
        let e = err(&GOOD.replace("inputs: [read]", "inputs: [raed]"));
        assert!(
            e.contains("w.yaml:24") && e.contains("unknown node 'raed'"),
            "{e}"
        );
        let e = err(&GOOD.replace("after: { job: validate }", "after: { job: valdate }"));
        assert!(
            e.contains("w.yaml:14") && e.contains("unknown job 'valdate'"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "  - id: read\n    job: train",
            "  - id: read\n    job: report",
        ));
        assert!(e.contains("crosses jobs"), "{e}");
        let e = err(&GOOD.replace(
            "read_dataset: { path: train.csv }",
            "read_dataset: { path: train.csv }\n    inputs: [fit]",
        ));
        assert!(e.contains("cycle") && e.contains("fit <- read"), "{e}");
        // Which kinds exist is the job type's to say (a misspelt kind is refused by the
        // native plugin: ferroflow-native's `settings_are_checked_at_submission`); the spec
        // wants exactly one kind, well formed.
        let e = err(&GOOD.replace("    train: { model: churn }\n", ""));
        assert!(
            e.contains("w.yaml:24") && e.contains("node 'fit' has no kind"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "train: { model: churn }",
            "train: { model: churn }\n    input: [read]",
        ));
        assert!(
            e.contains("w.yaml:24") && e.contains("several kinds (input, train)"),
            "{e}"
        );
        let e = err(&GOOD.replace("train: { model: churn }", "Train: { model: churn }"));
        assert!(
            e.contains("w.yaml:24") && e.contains("'Train' is not a node kind"),
            "{e}"
        );
        let e = err(&GOOD.replace("stage: GENERATED", "stage: GENERATD"));
        assert!(e.contains("unknown stage 'GENERATD'"), "{e}");
        let e = err(&GOOD.replace("interval: 30s", "cron: '99 * * * * *'"));
        assert!(e.contains("w.yaml:5") && e.contains("cron"), "{e}");
        let e = err(&GOOD.replace("action: START\n  report", "action: LAUNCH\n  report"));
        assert!(e.contains("w.yaml:") && e.contains("LAUNCH"), "{e}");
    }

    #[test]
    fn builder_graphs_validate_too() {
        let g = AiGraph::new("wf")
            .job(JobConfig::new("a", "process").rule(RuleSpec::new(
                vec![Condition::after("b", crate::status::JobStatus::Finished)],
                Action::Start,
            )))
            .node(
                Node::new(
                    "n",
                    "a",
                    NodeKind::new("user_defined").unwrap(),
                    Value::Null,
                )
                .inputs(["n"]),
            );
        let e = g.validate().unwrap_err().to_string();
        assert!(e.contains("unknown job 'b'"), "{e}");
    }
}
