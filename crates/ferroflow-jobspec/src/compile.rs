//! Turning a [`JobSpec`] into an engine [`JobGraph`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ferroflow_engine::{
    AggFunc, Aggregate, ChannelBound, CheckpointConfig, DataStream, JobBuilder, JobConfig,
    JobGraph, JoinType, SortKey, WatermarkStrategy, WindowSpec,
};
use ferroflow_sql::{ExprStreamExt, StreamingSql, split_alias};

use crate::error::{Result, SpecError};
use crate::registry::{BuildContext, Factories, NodeInputs};
use crate::spec::*;

/// Read, validate and build the job spec at `path`. Relative paths inside it are resolved
/// against the spec file's directory.
pub fn load(path: &Path) -> Result<JobGraph> {
    load_with(path, &Factories::builtin())
}

/// [`load`] with the source types, sink types and operations of `factories`.
pub fn load_with(path: &Path, factories: &Factories) -> Result<JobGraph> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
        file: path.display().to_string(),
        source: e,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    build_spec_with(
        &parse(&text, &path.display().to_string())?,
        &text,
        &path.display().to_string(),
        &base,
        factories,
    )
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
    build_spec_with(spec, text, origin, base, &Factories::builtin())
}

/// [`build_spec`] with the source types, sink types and operations of `factories`.
pub fn build_spec_with(
    spec: &JobSpec,
    text: &str,
    origin: &str,
    base: &Path,
    factories: &Factories,
) -> Result<JobGraph> {
    Compiler {
        text,
        origin,
        base,
        factories,
    }
    .compile(spec)
}

pub(crate) struct Compiler<'a> {
    text: &'a str,
    origin: &'a str,
    base: &'a Path,
    factories: &'a Factories,
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
    /// The line of the list entry `- name: <name>` (block or flow style) or of the job's
    /// `name:`, to point errors at the spec. The least indented one wins: sources, nodes and sinks are listed above
    /// their columns, which have names too.
    fn line_of(&self, name: &str) -> Option<usize> {
        self.text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| {
                let rest = l.trim_start();
                let indent = l.len() - rest.len();
                // A list entry, or the job's own `name:` at the top.
                let rest = match rest.strip_prefix('-') {
                    Some(r) => r.trim_start(),
                    None if indent == 0 => rest,
                    None => return None,
                };
                let rest = rest.strip_prefix('{').unwrap_or(rest).trim_start();
                let value = rest.strip_prefix("name:")?;
                let value = value.split([',', '}', '#']).next()?.trim();
                let value = value.trim_matches(|c| c == '"' || c == '\'');
                (value == name).then_some((indent, i + 1))
            })
            .min()
            .map(|(_, line)| line)
    }

    pub(crate) fn err(&self, node: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.origin.to_string(),
            line: self.line_of(node),
            node: node.to_string(),
            message: message.into(),
        }
    }

    /// `source`, a library's error, as the error of `node`.
    pub(crate) fn err_from(
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

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(crate) fn duration(&self, node: &str, s: &str) -> Result<Duration> {
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
            let ctx = self.ctx(&s.name);
            let sink = self
                .factories
                .sink(&s.kind)
                .map_err(|m| ctx.err(m))?
                .build(&s.settings, &ctx)?;
            input
                .sink(&s.name, sink)
                .map_err(|e| self.err_from(&s.name, e))?;
        }
        job.build().map_err(|e| self.err_from(&spec.name, e))
    }

    fn ctx<'b>(&'b self, node: &'b str) -> BuildContext<'b> {
        BuildContext {
            compiler: self,
            node,
        }
    }

    fn inputs_of(&self, n: &NodeSpec) -> Result<Vec<String>> {
        let mut v: Vec<String> = n.input.iter().cloned().collect();
        match &n.op {
            NodeOp::Union(u) => v.extend(u.iter().cloned()),
            NodeOp::Join(j) => {
                v.push(j.left.clone());
                v.push(j.right.clone());
            }
            NodeOp::Predict(p) => v.extend(p.versions.iter().cloned()),
            NodeOp::Sql(sql) => {
                let tables = StreamingSql::tables_of(sql).map_err(|e| self.err_from(&n.name, e))?;
                v.extend(tables);
            }
            NodeOp::Extension { op, settings } => {
                let ctx = self.ctx(&n.name);
                let factory = self.factories.node(op).map_err(|m| ctx.err(m))?;
                v.extend(factory.extra_inputs(settings, &ctx)?);
            }
            _ => {}
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

    pub(crate) fn schema(&self, node: &str, cols: &[ColumnSpec]) -> Result<SchemaRef> {
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
        let ctx = self.ctx(&s.name);
        let source = self
            .factories
            .source(&s.kind)
            .map_err(|m| ctx.err(m))?
            .build(&s.settings, &ctx)?;
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

    fn node(&self, n: &NodeSpec, streams: &HashMap<String, DataStream>) -> Result<DataStream> {
        let e = |m: String| self.err(&n.name, m);
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
        let mut out = match &n.op {
            NodeOp::Filter(p) => engine(input()?.filter(&n.name, p))?,
            NodeOp::Select(cols) => engine(input()?.select(&n.name, &strs(cols)))?,
            NodeOp::Window(w) => {
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
                        (Some(t), None, None) => {
                            WindowSpec::tumbling(time, self.duration(&n.name, t)?)
                        }
                        (None, Some(s), None) => WindowSpec::sliding(
                            time,
                            self.duration(&n.name, &s.size)?,
                            self.duration(&n.name, &s.slide)?,
                        ),
                        (None, None, Some(g)) => {
                            WindowSpec::session(time, self.duration(&n.name, g)?)
                        }
                        _ => {
                            return Err(e(
                                "a window has exactly one of tumbling, sliding, session, count"
                                    .into(),
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
            }
            NodeOp::Aggregate(a) => {
                let list = aggs(&a.aggregates)?;
                engine(
                    input()?
                        .key_by(&strs(&a.key_by))
                        .and_then(|k| k.aggregate(&n.name, &list)),
                )?
            }
            NodeOp::Union(u) => {
                let ins = u
                    .iter()
                    .map(|i| self.input(&n.name, i, streams))
                    .collect::<Result<Vec<_>>>()?;
                let (first, rest) = ins
                    .split_first()
                    .ok_or_else(|| e("union needs inputs".into()))?;
                engine(first.union(&n.name, &rest.iter().collect::<Vec<_>>()))?
            }
            NodeOp::Join(j) => {
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
                        engine(l.hash_join(
                            &n.name,
                            &r,
                            &strs(&j.left_keys),
                            &strs(&j.right_keys),
                            jt,
                        ))?
                    }
                }
            }
            NodeOp::Sort(keys) => {
                let k = keys
                    .iter()
                    .map(|s| parse_sort_key(s).map_err(&e))
                    .collect::<Result<Vec<_>>>()?;
                engine(input()?.sort(&n.name, &k))?
            }
            NodeOp::TopN(t) => {
                let k =
                    t.by.iter()
                        .map(|s| parse_sort_key(s).map_err(&e))
                        .collect::<Result<Vec<_>>>()?;
                engine(input()?.top_n(&n.name, &k, t.n))?
            }
            NodeOp::Sql(sql) => {
                let mut ctx = StreamingSql::new();
                for (name, s) in streams {
                    ctx.register(name, s.clone());
                }
                ctx.query(&n.name, sql)
                    .map_err(|x| self.err_from(&n.name, x))?
            }
            NodeOp::Predict(p) => self.predict(n, p, input()?, streams)?,
            NodeOp::Extension { op, settings } => {
                let ctx = self.ctx(&n.name);
                let factory = self.factories.node(op).map_err(|m| ctx.err(m))?;
                let extra = factory
                    .extra_inputs(settings, &ctx)?
                    .iter()
                    .map(|i| self.input(&n.name, i, streams))
                    .collect::<Result<Vec<_>>>()?;
                let input = match &n.input {
                    Some(i) => Some(self.input(&n.name, i, streams)?),
                    None => None,
                };
                factory.build(settings, NodeInputs { input, extra }, &ctx)?
            }
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

    #[test]
    fn errors_point_at_the_entry_not_at_a_column_of_the_same_name() {
        let text = "name: id\nsources:\n  - name: src\n    columns:\n      - {name: id, kind: sequence}\n  - {name: 'id', type: generator}\n";
        let c = Compiler {
            text,
            origin: "t.yaml",
            base: Path::new("."),
            factories: &Factories::empty(),
        };
        // The job's own name (indent 0) wins over deeper entries.
        assert_eq!(c.line_of("id"), Some(1));
        assert_eq!(c.line_of("src"), Some(3));
        assert_eq!(c.line_of("nope"), None);
        let text = "sources:\n  - name: src\n    columns:\n      - {name: x, kind: sequence}\n  - {name: \"x\", type: generator}\n";
        let c = Compiler { text, ..c };
        assert_eq!(c.line_of("x"), Some(5));
    }
}
