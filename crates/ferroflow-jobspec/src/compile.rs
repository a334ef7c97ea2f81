//! Turning a [`JobSpec`] into an engine [`JobGraph`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ferroflow_connectors::{
    DirectoryWatchSource, FileFormat, FileSink, FileSource, GenColumn, GeneratorSource, PrintSink,
};
use ferroflow_engine::{
    AggFunc, Aggregate, ChannelBound, CheckpointConfig, DataStream, JobBuilder, JobConfig,
    JobGraph, JoinType, SortKey, WatermarkStrategy, WindowSpec,
};
use ferroflow_sql::{ExprStreamExt, StreamingSql, split_alias};

use crate::error::{Result, SpecError};
use crate::spec::*;

/// Read, validate and build the job spec at `path`. Relative paths inside it are resolved
/// against the spec file's directory.
pub fn load(path: &Path) -> Result<JobGraph> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
        file: path.display().to_string(),
        source: e,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    build(&text, &path.display().to_string(), &base)
}

/// Parse YAML text into a spec; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<JobSpec> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        SpecError::Yaml {
            file: origin.to_string(),
            line,
            column,
            message: e.to_string(),
        }
    })
}

/// Parse and build a job from YAML text.
pub fn build(text: &str, origin: &str, base: &Path) -> Result<JobGraph> {
    build_spec(&parse(text, origin)?, text, origin, base)
}

/// Build a job from a parsed (possibly adjusted) spec; `text` is the YAML it came from, used
/// to point errors at lines.
pub fn build_spec(spec: &JobSpec, text: &str, origin: &str, base: &Path) -> Result<JobGraph> {
    Compiler { text, origin, base }.compile(spec)
}

struct Compiler<'a> {
    text: &'a str,
    origin: &'a str,
    base: &'a Path,
}

/// Parse a duration such as `10s`, `500ms`, `2m` (a leading `-` allowed).
pub fn parse_duration(s: &str) -> std::result::Result<(Duration, bool), String> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    if t == "0" {
        return Ok((Duration::ZERO, neg));
    }
    humantime::parse_duration(t)
        .map(|d| (d, neg))
        .map_err(|e| format!("'{s}' is not a duration ({e}); write e.g. 500ms, 10s, 2m"))
}

fn parse_bytes(v: &serde_yaml_ng::Value) -> std::result::Result<usize, String> {
    match v {
        serde_yaml_ng::Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("{n} is not a byte count")),
        serde_yaml_ng::Value::String(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: usize = num
                .parse()
                .map_err(|_| format!("'{s}' is not a byte count"))?;
            let mult = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                other => return Err(format!("unknown byte unit '{other}' in '{s}'")),
            };
            Ok(n * mult)
        }
        other => Err(format!("{other:?} is not a byte count")),
    }
}

/// Parse a type name of a declared schema.
pub fn parse_type(t: &str) -> std::result::Result<DataType, String> {
    Ok(match t.trim().to_ascii_lowercase().as_str() {
        "utf8" | "string" | "str" | "text" | "varchar" => DataType::Utf8,
        "int64" | "bigint" | "long" | "i64" => DataType::Int64,
        "int32" | "int" | "integer" | "i32" => DataType::Int32,
        "float64" | "double" | "f64" => DataType::Float64,
        "float32" | "float" | "real" | "f32" => DataType::Float32,
        "bool" | "boolean" => DataType::Boolean,
        "timestamp" | "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp_s" => DataType::Timestamp(TimeUnit::Second, None),
        "date" | "date32" => DataType::Date32,
        other => {
            return Err(format!(
                "unknown type '{other}' (known: utf8, int64, int32, float64, float32, boolean, timestamp_ms, timestamp_us, timestamp_s, date)"
            ));
        }
    })
}

/// Parse `func(column) [AS alias]`, e.g. `count(*) AS n`, `count(distinct user) AS users`.
pub fn parse_aggregate(s: &str) -> std::result::Result<Aggregate, String> {
    let (body, alias) = split_alias(s);
    let open = body
        .find('(')
        .ok_or_else(|| format!("'{s}' is not func(column)"))?;
    if !body.ends_with(')') {
        return Err(format!("'{s}' is not func(column)"));
    }
    let func_name = body[..open].trim();
    let mut arg = body[open + 1..body.len() - 1].trim().to_string();
    let mut func = AggFunc::parse(func_name).map_err(|e| e.to_string())?;
    if func == AggFunc::Count && arg.to_ascii_lowercase().starts_with("distinct ") {
        func = AggFunc::CountDistinct;
        arg = arg[9..].trim().to_string();
    }
    let column = if arg == "*" {
        if func != AggFunc::Count {
            return Err(format!("'{s}': only count takes *"));
        }
        None
    } else if arg.is_empty() {
        return Err(format!("'{s}': missing column"));
    } else {
        Some(arg.trim_matches('"').to_string())
    };
    let alias = alias.unwrap_or_else(|| match &column {
        None => format!("{}_all", func_name.to_ascii_lowercase()),
        Some(c) => format!("{}_{c}", func_name.to_ascii_lowercase()),
    });
    Ok(Aggregate {
        func,
        column,
        alias,
    })
}

fn parse_sort_key(s: &str) -> std::result::Result<SortKey, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let Some((col, rest)) = words.split_first() else {
        return Err("empty sort key".into());
    };
    let mut key = SortKey::asc(col);
    let rest: Vec<String> = rest.iter().map(|w| w.to_ascii_lowercase()).collect();
    match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["asc"] => {}
        ["desc"] => key.descending = true,
        ["asc", "nulls", "first"] | ["nulls", "first"] => key.nulls_first = true,
        ["desc", "nulls", "first"] => {
            key.descending = true;
            key.nulls_first = true;
        }
        ["desc", "nulls", "last"] => key.descending = true,
        ["asc", "nulls", "last"] | ["nulls", "last"] => {}
        _ => {
            return Err(format!(
                "cannot read sort key '{s}' (write: column [ASC|DESC] [NULLS FIRST|LAST])"
            ));
        }
    }
    Ok(key)
}

impl Compiler<'_> {
    /// The line where `name: <name>` appears, to point errors at the spec.
    fn line_of(&self, name: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|l| {
                let t = l.trim_start().trim_start_matches("- ").trim();
                t == format!("name: {name}")
                    || t == format!("name: \"{name}\"")
                    || t == format!("name: '{name}'")
            })
            .map(|i| i + 1)
    }

    fn err(&self, node: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.origin.to_string(),
            line: self.line_of(node),
            node: node.to_string(),
            message: message.into(),
        }
    }

    /// `source`, a library's error, as the error of `node`.
    fn err_from(
        &self,
        node: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SpecError {
        SpecError::Node {
            file: self.origin.to_string(),
            line: self.line_of(node),
            node: node.to_string(),
            source: source.into(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&self, node: &str, s: &str) -> Result<Duration> {
        match parse_duration(s) {
            Ok((d, false)) => Ok(d),
            Ok((_, true)) => Err(self.err(node, format!("duration '{s}' must not be negative"))),
            Err(e) => Err(self.err(node, e)),
        }
    }

    fn signed_ms(&self, node: &str, s: &str) -> Result<i64> {
        let (d, neg) = parse_duration(s).map_err(|e| self.err(node, e))?;
        let ms = d.as_millis() as i64;
        Ok(if neg { -ms } else { ms })
    }

    fn compile(&self, spec: &JobSpec) -> Result<JobGraph> {
        let mut config = JobConfig::default();
        if let Some(p) = spec.parallelism {
            if p == 0 {
                return Err(self.err(&spec.name, "parallelism must be at least 1"));
            }
            config.parallelism = p;
        }
        if let Some(c) = &spec.channel {
            let mut bound = ChannelBound::default();
            if let Some(r) = c.max_rows {
                bound.max_rows = r.max(1);
            }
            if let Some(b) = &c.max_bytes {
                bound.max_bytes = parse_bytes(b).map_err(|e| self.err(&spec.name, e))?.max(1);
            }
            config.channel_bound = bound;
        }
        let mut job = JobBuilder::with_config(&spec.name, config);
        if let Some(c) = &spec.checkpoint {
            let interval = self.duration("checkpoint", &c.interval)?;
            if interval.is_zero() {
                return Err(self.err("checkpoint", "checkpoint interval must be above 0"));
            }
            if c.retain == Some(0) {
                return Err(self.err("checkpoint", "retain must be at least 1"));
            }
            if c.dir.trim().is_empty() {
                return Err(self.err("checkpoint", "checkpoint dir must not be empty"));
            }
            job = job.with_checkpointing(
                CheckpointConfig::new(self.path(&c.dir), interval)
                    .with_retain(c.retain.unwrap_or(3)),
            );
            if let Some(m) = c.max_parallelism {
                job = job.with_max_parallelism(m);
            }
        }
        let mut streams: HashMap<String, DataStream> = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for n in spec
            .sources
            .iter()
            .map(|s| &s.name)
            .chain(spec.nodes.iter().map(|n| &n.name))
            .chain(spec.sinks.iter().map(|s| &s.name))
        {
            if !names.insert(n.clone()) {
                return Err(self.err(n, format!("the name '{n}' is used twice")));
            }
        }
        for s in &spec.sources {
            let stream = self.source(&job, s)?;
            streams.insert(s.name.clone(), stream);
        }
        // Nodes may be listed in any order: build each once its inputs exist.
        let mut pending: Vec<&NodeSpec> = spec.nodes.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for n in pending {
                let inputs = self.inputs_of(n)?;
                if inputs.iter().all(|i| streams.contains_key(base_name(i))) {
                    let s = self.node(n, &streams)?;
                    streams.insert(n.name.clone(), s);
                } else {
                    rest.push(n);
                }
            }
            if rest.len() == before {
                let n = rest[0];
                let missing: Vec<String> = self
                    .inputs_of(n)?
                    .into_iter()
                    .filter(|i| !streams.contains_key(base_name(i)))
                    .collect();
                let known = names.contains(base_name(&missing[0]));
                return Err(self.err(
                    &n.name,
                    if known {
                        format!("its inputs {missing:?} form a cycle with it")
                    } else {
                        format!("input '{}' is not a source or node of this job", missing[0])
                    },
                ));
            }
            pending = rest;
        }
        for s in &spec.sinks {
            let input = self.input(&s.name, &s.input, &streams)?;
            let sink: Arc<dyn ferroflow_engine::Sink> = match s.kind.as_str() {
                "print" | "stdout" => Arc::new(match s.max_rows {
                    Some(n) => PrintSink::with_max_rows(n),
                    None => PrintSink::new(),
                }),
                "file" => {
                    let path = s
                        .path
                        .as_ref()
                        .ok_or_else(|| self.err(&s.name, "a file sink needs 'path'"))?;
                    let path = self.path(path);
                    match &s.format {
                        Some(f) => Arc::new(FileSink::new(
                            &path,
                            FileFormat::parse(f).map_err(|e| self.err_from(&s.name, e))?,
                        )),
                        None => Arc::new(
                            FileSink::from_path(&path).map_err(|e| self.err_from(&s.name, e))?,
                        ),
                    }
                }
                other => {
                    return Err(self.err(
                        &s.name,
                        format!("unknown sink type '{other}' (known: file, print)"),
                    ));
                }
            };
            input
                .sink(&s.name, sink)
                .map_err(|e| self.err_from(&s.name, e))?;
        }
        job.build().map_err(|e| self.err_from(&spec.name, e))
    }

    fn inputs_of(&self, n: &NodeSpec) -> Result<Vec<String>> {
        let mut v = Vec::new();
        if let Some(i) = &n.input {
            v.push(i.clone());
        }
        if let Some(u) = &n.union {
            v.extend(u.iter().cloned());
        }
        if let Some(j) = &n.join {
            v.push(j.left.clone());
            v.push(j.right.clone());
        }
        if let Some(versions) = n.predict.as_ref().and_then(|p| p.versions.as_ref()) {
            v.push(versions.clone());
        }
        if let Some(sql) = &n.sql {
            let tables = StreamingSql::tables_of(sql).map_err(|e| self.err_from(&n.name, e))?;
            v.extend(tables);
        }
        if v.is_empty() {
            return Err(self.err(&n.name, "the node names no input"));
        }
        Ok(v)
    }

    fn input(
        &self,
        node: &str,
        input: &str,
        streams: &HashMap<String, DataStream>,
    ) -> Result<DataStream> {
        let base = base_name(input);
        let s = streams.get(base).ok_or_else(|| {
            self.err(
                node,
                format!("input '{input}' is not a source or node of this job"),
            )
        })?;
        match input.strip_prefix(base).and_then(|t| t.strip_prefix('.')) {
            Some(tag) if !tag.is_empty() => s.side_output(tag).map_err(|e| self.err_from(node, e)),
            _ => Ok(s.clone()),
        }
    }

    fn schema(&self, node: &str, cols: &[ColumnSpec]) -> Result<SchemaRef> {
        let fields = cols
            .iter()
            .map(|c| {
                let t = parse_type(&c.data_type)
                    .map_err(|e| self.err(node, format!("column '{}': {e}", c.name)))?;
                Ok(Field::new(&c.name, t, c.nullable.unwrap_or(true)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    fn source(&self, job: &JobBuilder, s: &SourceSpec) -> Result<DataStream> {
        let e = |m: String| self.err(&s.name, m);
        let format = s
            .format
            .as_ref()
            .map(|f| FileFormat::parse(f).map_err(|x| self.err_from(&s.name, x)))
            .transpose()?;
        let source: Arc<dyn ferroflow_engine::Source> = match s.kind.as_str() {
            "file" => {
                let path = self.path(
                    s.path
                        .as_ref()
                        .ok_or_else(|| e("a file source needs 'path'".into()))?,
                );
                let format = match format {
                    Some(f) => f,
                    None => FileFormat::from_path(&path)
                        .or_else(|| {
                            // A directory: take the format of its first data file.
                            std::fs::read_dir(&path)
                                .ok()?
                                .filter_map(|d| d.ok())
                                .find_map(|d| FileFormat::from_path(&d.path()))
                        })
                        .ok_or_else(|| {
                            e(format!(
                                "{}: cannot tell the format; set 'format'",
                                path.display()
                            ))
                        })?,
                };
                let mut src = match &s.schema {
                    Some(cols) => {
                        FileSource::with_declared_schema(&path, format, self.schema(&s.name, cols)?)
                    }
                    None => FileSource::new(&path, format),
                }
                .map_err(|x| self.err_from(&s.name, x))?;
                if let Some(b) = s.batch_size {
                    src = src.with_batch_size(b);
                }
                if let Some(d) = &s.dead_letter {
                    src = src.with_dead_letter(self.path(d));
                }
                Arc::new(src)
            }
            "directory" | "dir" | "directory_watch" => {
                let path = self.path(
                    s.path
                        .as_ref()
                        .ok_or_else(|| e("a directory source needs 'path'".into()))?,
                );
                let cols = s.schema.as_ref().ok_or_else(|| {
                    e("a directory source needs 'schema' (the directory may start empty)".into())
                })?;
                let format = format.ok_or_else(|| e("a directory source needs 'format'".into()))?;
                let mut src = DirectoryWatchSource::new(&path, format, self.schema(&s.name, cols)?)
                    .map_err(|x| self.err_from(&s.name, x))?;
                if let Some(p) = &s.poll_interval {
                    src = src.with_poll_interval(self.duration(&s.name, p)?);
                }
                if let Some(b) = s.batch_size {
                    src = src.with_batch_size(b);
                }
                Arc::new(src)
            }
            "generator" => {
                let cols = s
                    .columns
                    .as_ref()
                    .ok_or_else(|| e("a generator needs 'columns'".into()))?;
                let cols = cols
                    .iter()
                    .map(|c| Ok((c.name.clone(), self.gen_column(&s.name, c)?)))
                    .collect::<Result<Vec<_>>>()?;
                let mut g = GeneratorSource::new(cols, s.rows, s.seed.unwrap_or(0))
                    .map_err(|x| self.err_from(&s.name, x))?;
                if let Some(r) = s.rate {
                    g = g.with_rate(r);
                }
                if let Some(b) = s.batch_size {
                    g = g.with_batch_size(b);
                }
                Arc::new(g)
            }
            other => {
                return Err(e(format!(
                    "unknown source type '{other}' (known: file, directory, generator)"
                )));
            }
        };
        let mut stream = job
            .source(&s.name, source)
            .map_err(|x| self.err_from(&s.name, x))?;
        if s.watermark.is_some() && s.processing_time.is_some() {
            return Err(e(
                "a source has either 'watermark' (event time) or 'processing_time', not both"
                    .into(),
            ));
        }
        if let Some(col) = &s.processing_time {
            stream = stream
                .with_processing_time(col)
                .map_err(|x| self.err_from(&s.name, x))?;
        }
        if let Some(w) = &s.watermark {
            let ooo = match &w.max_out_of_orderness {
                Some(d) => self.duration(&s.name, d)?,
                None => Duration::ZERO,
            };
            let mut strategy = WatermarkStrategy::bounded_out_of_orderness(&w.column, ooo);
            if let Some(t) = &w.idle_timeout {
                strategy = strategy.with_idle_timeout(self.duration(&s.name, t)?);
            }
            stream = stream
                .with_watermarks(strategy)
                .map_err(|x| self.err_from(&s.name, x))?;
        }
        if let Some(p) = s.parallelism {
            stream = stream
                .parallelism(p)
                .map_err(|x| self.err_from(&s.name, x))?;
        }
        Ok(stream)
    }

    fn gen_column(&self, node: &str, c: &GenColumnSpec) -> Result<GenColumn> {
        let need = |v: Option<f64>, what: &str| {
            v.ok_or_else(|| {
                self.err(
                    node,
                    format!("generator column '{}' needs '{what}'", c.name),
                )
            })
        };
        Ok(match c.kind.as_str() {
            "sequence" => GenColumn::Sequence,
            "int" => GenColumn::Int {
                min: need(c.min, "min")? as i64,
                max: need(c.max, "max")? as i64,
            },
            "float" => GenColumn::Float {
                min: need(c.min, "min")?,
                max: need(c.max, "max")?,
            },
            "choice" => GenColumn::Choice(c.values.clone().ok_or_else(|| {
                self.err(
                    node,
                    format!("generator column '{}' needs 'values'", c.name),
                )
            })?),
            "event_time" => GenColumn::EventTime {
                start_ms: c.start_ms.unwrap_or(0),
                step_ms: c.step_ms.unwrap_or(1),
                max_disorder_ms: c.max_disorder_ms.unwrap_or(0),
            },
            other => {
                return Err(self.err(
                    node,
                    format!(
                        "generator column '{}': unknown kind '{other}' (known: sequence, int, float, choice, event_time)",
                        c.name
                    ),
                ));
            }
        })
    }

    fn node(&self, n: &NodeSpec, streams: &HashMap<String, DataStream>) -> Result<DataStream> {
        let e = |m: String| self.err(&n.name, m);
        let ops = [
            n.filter.is_some(),
            n.select.is_some(),
            n.window.is_some(),
            n.aggregate.is_some(),
            n.union.is_some(),
            n.join.is_some(),
            n.sort.is_some(),
            n.top_n.is_some(),
            n.sql.is_some(),
            n.predict.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if ops != 1 {
            return Err(e(format!(
                "a node has exactly one of filter, select, window, aggregate, union, join, sort, top_n, sql, predict (found {ops})"
            )));
        }
        let input = || -> Result<DataStream> {
            let i = n
                .input
                .as_ref()
                .ok_or_else(|| e("this node needs 'input'".into()))?;
            self.input(&n.name, i, streams)
        };
        let aggs = |v: &[String]| -> Result<Vec<Aggregate>> {
            v.iter().map(|a| parse_aggregate(a).map_err(&e)).collect()
        };
        let engine =
            |r: ferroflow_engine::Result<DataStream>| r.map_err(|x| self.err_from(&n.name, x));
        let mut out = if let Some(p) = &n.filter {
            engine(input()?.filter(&n.name, p))?
        } else if let Some(cols) = &n.select {
            engine(input()?.select(&n.name, &strs(cols)))?
        } else if let Some(w) = &n.window {
            let stream = input()?;
            let a = aggs(&w.aggregates)?;
            if let Some(size) = w.count {
                if w.key_by.is_empty() {
                    return Err(e("a count window needs 'key_by'".into()));
                }
                engine(
                    stream
                        .key_by(&strs(&w.key_by))
                        .and_then(|k| k.count_window(&n.name, size, &a)),
                )?
            } else {
                let time = w
                    .time_column
                    .as_ref()
                    .ok_or_else(|| e("a time window needs 'time_column'".into()))?;
                let mut spec = match (&w.tumbling, &w.sliding, &w.session) {
                    (Some(t), None, None) => WindowSpec::tumbling(time, self.duration(&n.name, t)?),
                    (None, Some(s), None) => WindowSpec::sliding(
                        time,
                        self.duration(&n.name, &s.size)?,
                        self.duration(&n.name, &s.slide)?,
                    ),
                    (None, None, Some(g)) => WindowSpec::session(time, self.duration(&n.name, g)?),
                    _ => {
                        return Err(e(
                            "a window has exactly one of tumbling, sliding, session, count".into(),
                        ));
                    }
                };
                if let Some(l) = &w.allowed_lateness {
                    spec = spec.with_allowed_lateness(self.duration(&n.name, l)?);
                }
                match w.late.as_deref() {
                    None | Some("drop") => {}
                    Some("side_output") => spec = spec.with_late_side_output(),
                    Some(other) => {
                        return Err(e(format!("late: '{other}' (known: drop, side_output)")));
                    }
                }
                if w.key_by.is_empty() {
                    engine(stream.window_all(&n.name, spec, &a))?
                } else {
                    engine(
                        stream
                            .key_by(&strs(&w.key_by))
                            .and_then(|k| k.window(&n.name, spec, &a)),
                    )?
                }
            }
        } else if let Some(a) = &n.aggregate {
            let list = aggs(&a.aggregates)?;
            engine(
                input()?
                    .key_by(&strs(&a.key_by))
                    .and_then(|k| k.aggregate(&n.name, &list)),
            )?
        } else if let Some(u) = &n.union {
            let ins = u
                .iter()
                .map(|i| self.input(&n.name, i, streams))
                .collect::<Result<Vec<_>>>()?;
            let (first, rest) = ins
                .split_first()
                .ok_or_else(|| e("union needs inputs".into()))?;
            engine(first.union(&n.name, &rest.iter().collect::<Vec<_>>()))?
        } else if let Some(j) = &n.join {
            let l = self.input(&n.name, &j.left, streams)?;
            let r = self.input(&n.name, &j.right, streams)?;
            match &j.interval {
                Some(iv) => engine(l.interval_join(
                    &n.name,
                    &r,
                    &strs(&j.left_keys),
                    &strs(&j.right_keys),
                    &iv.left_time,
                    &iv.right_time,
                    self.signed_ms(&n.name, &iv.lower)?,
                    self.signed_ms(&n.name, &iv.upper)?,
                ))?,
                None => {
                    let jt = match j.join_type.as_deref() {
                        None | Some("inner") => JoinType::Inner,
                        Some("left") => JoinType::Left,
                        Some(other) => {
                            return Err(e(format!("join type '{other}' (known: inner, left)")));
                        }
                    };
                    engine(l.hash_join(&n.name, &r, &strs(&j.left_keys), &strs(&j.right_keys), jt))?
                }
            }
        } else if let Some(keys) = &n.sort {
            let k = keys
                .iter()
                .map(|s| parse_sort_key(s).map_err(&e))
                .collect::<Result<Vec<_>>>()?;
            engine(input()?.sort(&n.name, &k))?
        } else if let Some(t) = &n.top_n {
            let k =
                t.by.iter()
                    .map(|s| parse_sort_key(s).map_err(&e))
                    .collect::<Result<Vec<_>>>()?;
            engine(input()?.top_n(&n.name, &k, t.n))?
        } else if let Some(sql) = &n.sql {
            let mut ctx = StreamingSql::new();
            for (name, s) in streams {
                ctx.register(name, s.clone());
            }
            ctx.query(&n.name, sql)
                .map_err(|x| self.err_from(&n.name, x))?
        } else if let Some(p) = &n.predict {
            self.predict(n, p, input()?, streams)?
        } else {
            unreachable!("exactly one operation was checked above")
        };
        if let Some(p) = n.parallelism {
            out = out.parallelism(p).map_err(|x| self.err_from(&n.name, x))?;
        }
        Ok(out)
    }
}

impl Compiler<'_> {
    fn predict(
        &self,
        n: &NodeSpec,
        p: &crate::spec::PredictSpec,
        input: DataStream,
        streams: &HashMap<String, DataStream>,
    ) -> Result<DataStream> {
        use ferroflow_inference::{
            BatchConfig, ModelNode, ModelStreamExt, OnnxLoader, OnnxOptions,
        };
        let options = OnnxOptions {
            intra_threads: p.intra_threads.unwrap_or(1),
            ..OnnxOptions::default()
        };
        let path = self.path(&p.model);
        let mut node = ModelNode::new(
            Arc::new(OnnxLoader::new(options)),
            path.display().to_string(),
        );
        for (model_input, cols) in &p.inputs {
            node = node.input(model_input, &strs(cols));
        }
        for (output, col) in &p.outputs {
            node = node.output(output, col);
        }
        if let Some(c) = &p.version_column {
            node = node.version_column(c);
        }
        if let Some(b) = &p.batch {
            let d = BatchConfig::default();
            node = node.batching(BatchConfig {
                max_rows: b.max_rows.unwrap_or(d.max_rows),
                min_rows: b.min_rows.unwrap_or(d.min_rows),
                target_latency: match &b.target_latency {
                    Some(t) => self.duration(&n.name, t)?,
                    None => d.target_latency,
                },
                max_latency: match &b.max_latency {
                    Some(t) => self.duration(&n.name, t)?,
                    None => d.max_latency,
                },
            });
        }
        let r = match &p.versions {
            None => input.predict(&n.name, node),
            Some(v) => {
                let versions = self.input(&n.name, v, streams)?;
                input.predict_with_versions(&n.name, &versions, node)
            }
        };
        r.map_err(|x| self.err_from(&n.name, x))
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn base_name(input: &str) -> &str {
    input.split('.').next().unwrap_or(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_parse() {
        let a = parse_aggregate("count(*) AS n").unwrap();
        assert_eq!(
            (a.func, a.column, a.alias.as_str()),
            (AggFunc::Count, None, "n")
        );
        let a = parse_aggregate("count(distinct user)").unwrap();
        assert_eq!(a.func, AggFunc::CountDistinct);
        assert_eq!(a.alias, "count_user");
        assert!(parse_aggregate("median(x)").is_err());
        assert!(parse_aggregate("sum(*)").is_err());
    }

    #[test]
    fn durations_and_bytes() {
        assert_eq!(
            parse_duration("10s").unwrap(),
            (Duration::from_secs(10), false)
        );
        assert_eq!(
            parse_duration("-5s").unwrap(),
            (Duration::from_secs(5), true)
        );
        assert!(parse_duration("ten").is_err());
        assert_eq!(
            parse_bytes(&serde_yaml_ng::Value::String("16MiB".into())).unwrap(),
            16 << 20
        );
    }
}
