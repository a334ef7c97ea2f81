//! A `flink` job's nodes as Flink SQL: DDL for every file it reads and writes, a view per
//! transform, one INSERT per write (run together as one Flink job).
//!
//! Translated: `read_dataset` (`path` to `.csv` with a header row, `.jsonl`/`.json`),
//! `transform` with `sql` (or a `SQLTransformer` stage), `write_dataset` (`.csv` without a
//! header, `.jsonl`; Flink writes a *directory* of part files at the path). Column types
//! are the ones a native job sees (planned by DataFusion over the same files), so both
//! runs agree on the schema. Anything else is refused with the node and the reason: the
//! job never falls back to running natively.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_schema::{DataType, Schema, TimeUnit};
use ferroflow_workflow::{Node, SubGraph};

use crate::error::{FlinkError, Result};

/// The statements of a job and what it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// DDL, views, then INSERTs.
    pub statements: Vec<String>,
    /// Directories the job writes (each a `write_dataset`).
    pub outputs: Vec<PathBuf>,
}

impl Translation {
    /// The statements in the runner's format: each followed by a line holding only `;`.
    pub fn script(&self) -> String {
        self.statements
            .iter()
            .map(|s| format!("{s}\n;\n"))
            .collect()
    }
}

fn refuse(n: &Node, message: impl Into<String>) -> FlinkError {
    FlinkError::Untranslatable {
        node: n.id.clone(),
        kind: n.kind.to_string(),
        message: message.into(),
    }
}

/// `name` quoted for Flink SQL.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn flink_type(n: &Node, column: &str, t: &DataType) -> Result<&'static str> {
    Ok(match t {
        DataType::Boolean => "BOOLEAN",
        DataType::Int8 => "TINYINT",
        DataType::Int16 => "SMALLINT",
        DataType::Int32 => "INT",
        DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => "BIGINT",
        DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => "STRING",
        DataType::Date32 => "DATE",
        DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, None) => "TIMESTAMP(3)",
        DataType::Timestamp(_, None) => "TIMESTAMP(6)",
        other => {
            return Err(refuse(
                n,
                format!(
                    "column '{column}' has type {other}, which the translation does not map to Flink SQL"
                ),
            ));
        }
    })
}

fn format_of(n: &Node, path: &Path) -> Result<&'static str> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok("csv"),
        Some("jsonl") | Some("json") => Ok("json"),
        Some("parquet") => Err(refuse(
            n,
            "Parquet is not in the Flink distribution this runs on (no flink-parquet jar in lib/); use .csv or .jsonl",
        )),
        other => Err(refuse(
            n,
            format!("unknown file format {other:?} (use .csv or .jsonl)"),
        )),
    }
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The node kinds that translate to Flink SQL (of the workflow spec's native kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Translated {
    /// `read_dataset`: a filesystem table.
    Read,
    /// `transform` with SQL: a view.
    Transform,
    /// `write_dataset`: a filesystem sink and an INSERT.
    Write,
}

/// The kind of `n` if it translates, else why it cannot run on Flink.
fn translated(n: &Node) -> Result<Translated> {
    Ok(match n.kind.as_str() {
        "read_dataset" => Translated::Read,
        "transform" => Translated::Transform,
        "write_dataset" => Translated::Write,
        "dataset_validate" => {
            return Err(refuse(
                n,
                "dataset checks run in native jobs; express the check in SQL or move the node",
            ));
        }
        "user_defined" => {
            return Err(refuse(
                n,
                "a Rust function cannot run on a Flink cluster; use a native job",
            ));
        }
        "train" | "predict" | "evaluate" | "model_validate" | "push_model" => {
            return Err(refuse(
                n,
                "it needs ferroflow's ML library and the Model Center; run it in a native job",
            ));
        }
        other => {
            return Err(refuse(
                n,
                format!(
                    "no node kind '{other}' translates to Flink (read_dataset, transform and write_dataset do)"
                ),
            ));
        }
    })
}

/// A read or write node's path (as written) and its Flink format.
fn file_of(n: &Node) -> Result<(&str, &'static str)> {
    let Some(p) = n.str_config("path") else {
        return Err(refuse(
            n,
            match n.kind.as_str() {
                "read_dataset" => "give `path` (a dataset record is not translated)",
                _ => "give `path`",
            },
        ));
    };
    Ok((p, format_of(n, Path::new(p))?))
}

/// A transform node's SQL (`sql`, or a SQLTransformer's `statement`).
fn sql_of(n: &Node) -> Result<String> {
    let sql = match (n.str_config("sql"), n.config.get("stage")) {
        (Some(sql), _) => sql.to_string(),
        (None, Some(stage))
            if stage["className"]
                .as_str()
                .is_some_and(|c| c.ends_with("SQLTransformer")) =>
        {
            stage["paramMap"]["statement"]
                .as_str()
                .ok_or_else(|| refuse(n, "the SQLTransformer has no `statement`"))?
                .to_string()
        }
        (None, Some(stage)) => {
            return Err(refuse(
                n,
                format!(
                    "stage {} is an ML stage of ferroflow's library; only SQL transforms translate to Flink (run ML stages in a native job)",
                    stage["className"]
                ),
            ));
        }
        (None, None) => {
            return Err(refuse(
                n,
                "a saved model (`model_dir`) cannot run on Flink; only `sql`",
            ));
        }
    };
    if !sql.contains("__THIS__") {
        return Err(refuse(n, "the SQL must read its input as __THIS__"));
    }
    Ok(sql)
}

/// What can be checked of a node without its input files (at submission): its kind, its
/// path's format, its SQL.
pub fn check_node(n: &Node) -> Result<()> {
    match translated(n)? {
        Translated::Read | Translated::Write => file_of(n).map(|_| ()),
        Translated::Transform => sql_of(n).map(|_| ()),
    }
}

/// Translate a job's nodes; relative paths resolve against `base_dir`.
pub fn translate(sub: &SubGraph<'_>, base_dir: Option<&Path>) -> Result<Translation> {
    let resolve = |p: &str| -> PathBuf {
        let path = PathBuf::from(p);
        let path = match base_dir {
            Some(b) if path.is_relative() => b.join(path),
            _ => path,
        };
        std::path::absolute(&path).unwrap_or(path)
    };
    // DataFusion plans the same SQL over the same files: the schema of every node.
    let planner = ferroflow_sql::BatchSql::new().map_err(|e| FlinkError::Config(e.to_string()))?;
    let mut schemas: HashMap<String, Schema> = HashMap::new();
    let mut statements = vec![];
    let mut inserts = vec![];
    let mut outputs = vec![];
    for n in &sub.nodes {
        let input = || -> Result<&String> {
            n.inputs
                .first()
                .filter(|_| n.inputs.len() == 1)
                .ok_or_else(|| refuse(n, format!("reads one input, has {}", n.inputs.len())))
        };
        match translated(n)? {
            Translated::Read => {
                let (p, format) = file_of(n)?;
                let path = resolve(p);
                if !path.exists() {
                    return Err(refuse(n, format!("{} does not exist", path.display())));
                }
                planner
                    .register(&n.id, &path)
                    .map_err(|e| refuse(n, e.to_string()))?;
                let schema = planner
                    .schema_of(&format!("SELECT * FROM {}", df_ident(&n.id)))
                    .map_err(|e| refuse(n, e.to_string()))?;
                let mut cols = vec![];
                for f in schema.fields() {
                    let t = flink_type(n, f.name(), f.data_type())?;
                    cols.push((f.name().clone(), t));
                }
                if format == "csv" {
                    // Flink's CSV format has no header option: read every column as text,
                    // drop the header row (each value equal to its column's name), then cast.
                    let raw = format!("{}__raw", n.id);
                    statements.push(format!(
                        "CREATE TEMPORARY TABLE {} ({}) WITH ('connector' = 'filesystem', 'path' = {}, 'format' = 'csv')",
                        ident(&raw),
                        cols.iter()
                            .map(|(c, _)| format!("{} STRING", ident(c)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        literal(&file_url(&path))
                    ));
                    let select = cols
                        .iter()
                        .map(|(c, t)| {
                            if *t == "STRING" {
                                ident(c)
                            } else {
                                format!("CAST(NULLIF({}, '') AS {t}) AS {}", ident(c), ident(c))
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let header = cols
                        .iter()
                        .map(|(c, _)| format!("{} = {}", ident(c), literal(c)))
                        .collect::<Vec<_>>()
                        .join(" AND ");
                    statements.push(format!(
                        "CREATE TEMPORARY VIEW {} AS SELECT {select} FROM {} WHERE NOT ({header})",
                        ident(&n.id),
                        ident(&raw)
                    ));
                } else {
                    statements.push(format!(
                        "CREATE TEMPORARY TABLE {} ({}) WITH ('connector' = 'filesystem', 'path' = {}, 'format' = 'json', 'json.ignore-parse-errors' = 'false')",
                        ident(&n.id),
                        cols.iter()
                            .map(|(c, t)| format!("{} {t}", ident(c)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        literal(&file_url(&path))
                    ));
                }
                schemas.insert(n.id.clone(), schema.as_ref().clone());
            }
            Translated::Transform => {
                let sql = sql_of(n)?;
                let from = input()?;
                planner
                    .query(&format!(
                        "CREATE VIEW {} AS {}",
                        df_ident(&n.id),
                        sql.replace("__THIS__", &df_ident(from))
                    ))
                    .map_err(|e| refuse(n, e.to_string()))?;
                let schema = planner
                    .schema_of(&format!("SELECT * FROM {}", df_ident(&n.id)))
                    .map_err(|e| refuse(n, e.to_string()))?;
                statements.push(format!(
                    "CREATE TEMPORARY VIEW {} AS {}",
                    ident(&n.id),
                    sql.replace("__THIS__", &ident(from))
                ));
                schemas.insert(n.id.clone(), schema.as_ref().clone());
            }
            Translated::Write => {
                let (p, format) = file_of(n)?;
                let path = resolve(p);
                let from = input()?;
                let schema = &schemas[from];
                let mut cols = vec![];
                for f in schema.fields() {
                    cols.push(format!(
                        "{} {}",
                        ident(f.name()),
                        flink_type(n, f.name(), f.data_type())?
                    ));
                }
                let sink = format!("{}__sink", n.id);
                statements.push(format!(
                    "CREATE TEMPORARY TABLE {} ({}) WITH ('connector' = 'filesystem', 'path' = {}, 'format' = '{format}')",
                    ident(&sink),
                    cols.join(", "),
                    literal(&file_url(&path))
                ));
                inserts.push(format!(
                    "INSERT INTO {} SELECT * FROM {}",
                    ident(&sink),
                    ident(from)
                ));
                outputs.push(path);
            }
        }
    }
    if inserts.is_empty() {
        return Err(FlinkError::Config(format!(
            "job '{}' writes nothing (add a write_dataset node): a Flink job needs a sink",
            sub.job.name
        )));
    }
    statements.extend(inserts);
    Ok(Translation {
        statements,
        outputs,
    })
}

/// `name` quoted for DataFusion.
fn df_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(yaml: &str, files: &[(&str, &str)]) -> Result<Translation> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let g = ferroflow_workflow::parse_workflow(yaml, "t.yaml").unwrap();
        let sub = g.sub_graph("j").unwrap();
        translate(&sub, Some(dir.path()))
    }

    const SPEC: &str = r#"
workflow: w
project: p
jobs:
  j: {type: flink}
nodes:
  - {id: src, job: j, read_dataset: {path: in.csv}}
  - {id: agg, job: j, inputs: [src], transform: {sql: "SELECT k, SUM(v) AS total, COUNT(*) AS n FROM __THIS__ GROUP BY k"}}
  - {id: out, job: j, inputs: [agg], write_dataset: {path: out.jsonl}}
"#;

    #[test]
    fn csv_to_jsonl_with_types_planned_like_a_native_job() {
        let t = translated(SPEC, &[("in.csv", "k,v,label\na,1.5,x\nb,2,\n")]).unwrap();
        let s = &t.statements;
        assert_eq!(s.len(), 5, "{s:#?}");
        // Every CSV column read as text, the header row filtered, non-text columns cast.
        assert!(
            s[0].starts_with(
                "CREATE TEMPORARY TABLE `src__raw` (`k` STRING, `v` STRING, `label` STRING)"
            ),
            "{}",
            s[0]
        );
        assert!(
            s[1].contains("CAST(NULLIF(`v`, '') AS DOUBLE) AS `v`"),
            "{}",
            s[1]
        );
        assert!(
            s[1].contains("WHERE NOT (`k` = 'k' AND `v` = 'v' AND `label` = 'label')"),
            "{}",
            s[1]
        );
        assert_eq!(
            s[2],
            "CREATE TEMPORARY VIEW `agg` AS SELECT k, SUM(v) AS total, COUNT(*) AS n FROM `src` GROUP BY k"
        );
        assert!(
            s[3].contains("(`k` STRING, `total` DOUBLE, `n` BIGINT)")
                && s[3].contains("'format' = 'json'"),
            "{}",
            s[3]
        );
        assert_eq!(s[4], "INSERT INTO `out__sink` SELECT * FROM `agg`");
        assert!(t.outputs[0].ends_with("out.jsonl"));
        assert!(t.script().contains("\n;\n"));
    }

    #[test]
    fn what_cannot_run_on_flink_is_refused_with_the_reason() {
        let e = translated(&SPEC.replace("in.csv", "in.parquet"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 'src' (read_dataset) cannot run on Flink") && e.contains("Parquet"),
            "{e}"
        );
        let e = translated(SPEC, &[]).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let bad_sql = SPEC.replace("FROM __THIS__ GROUP BY k", "FROM src GROUP BY k");
        let e = translated(&bad_sql, &[("in.csv", "k,v\na,1\n")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 'agg' (transform)") && e.contains("__THIS__"),
            "{e}"
        );
        let no_sink = SPEC.replace(
            "  - {id: out, job: j, inputs: [agg], write_dataset: {path: out.jsonl}}\n",
            "",
        );
        let e = translated(&no_sink, &[("in.csv", "k,v\na,1\n")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("writes nothing"), "{e}");
        let typo = SPEC.replace(
            "write_dataset: {path: out.jsonl}",
            "writ_dataset: {path: out.jsonl}",
        );
        let e = translated(&typo, &[("in.csv", "k,v\na,1\n")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 'out'")
                && e.contains("no node kind 'writ_dataset' translates to Flink"),
            "{e}"
        );
        let train = SPEC.replace("write_dataset: {path: out.jsonl}", "train: {model: m}");
        let e = translated(&train, &[("in.csv", "k,v\na,1\n")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("run it in a native job"), "{e}");
    }
}
