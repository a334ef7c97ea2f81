//! Turning a [`JobSpec`] into an engine [`JobGraph`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferroflow_engine::{
    Aggregate, ChannelBound, CheckpointConfig, DataStream, JobBuilder, JobConfig, JobGraph,
    JoinType, WatermarkStrategy, WindowSpec,
};
use ferroflow_sql::{ExprStreamExt, StreamingSql};

use crate::context::{BuildContext, Place};
use crate::error::{Result, SpecError};
use crate::registry::{Factories, NodeInputs};
use crate::spec::*;
use crate::values::{parse_aggregate, parse_bytes, parse_sort_key};

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
        place: Place { text, origin, base },
        factories,
    }
    .compile(spec)
}

struct Compiler<'a> {
    place: Place<'a>,
    factories: &'a Factories,
}

impl Compiler<'_> {
    fn compile(&self, spec: &JobSpec) -> Result<JobGraph> {
        let mut config = JobConfig::default();
        if let Some(p) = spec.parallelism {
            if p == 0 {
                return Err(self.place.err(&spec.name, "parallelism must be at least 1"));
            }
            config.parallelism = p;
        }
        if let Some(c) = &spec.channel {
            let mut bound = ChannelBound::default();
            if let Some(r) = c.max_rows {
                bound.max_rows = r.max(1);
            }
            if let Some(b) = &c.max_bytes {
                bound.max_bytes = parse_bytes(b)
                    .map_err(|e| self.place.err(&spec.name, e))?
                    .max(1);
            }
            config.channel_bound = bound;
        }
        let mut job = JobBuilder::with_config(&spec.name, config);
        if let Some(c) = &spec.checkpoint {
            let interval = self.place.duration("checkpoint", &c.interval)?;
            if interval.is_zero() {
                return Err(self
                    .place
                    .err("checkpoint", "checkpoint interval must be above 0"));
            }
            if c.retain == Some(0) {
                return Err(self.place.err("checkpoint", "retain must be at least 1"));
            }
            if c.dir.trim().is_empty() {
                return Err(self
                    .place
                    .err("checkpoint", "checkpoint dir must not be empty"));
            }
            job = job.with_checkpointing(
                CheckpointConfig::new(self.place.path(&c.dir), interval)
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
                return Err(self.place.err(n, format!("the name '{n}' is used twice")));
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
                return Err(self.place.err(
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
                .map_err(|e| self.place.err_from(&s.name, e))?;
        }
        job.build().map_err(|e| self.place.err_from(&spec.name, e))
    }

    fn ctx<'b>(&'b self, node: &'b str) -> BuildContext<'b> {
        BuildContext {
            place: &self.place,
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
                let tables =
                    StreamingSql::tables_of(sql).map_err(|e| self.place.err_from(&n.name, e))?;
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
            return Err(self.place.err(&n.name, "the node names no input"));
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
            self.place.err(
                node,
                format!("input '{input}' is not a source or node of this job"),
            )
        })?;
        match input.strip_prefix(base).and_then(|t| t.strip_prefix('.')) {
            Some(tag) if !tag.is_empty() => {
                s.side_output(tag).map_err(|e| self.place.err_from(node, e))
            }
            _ => Ok(s.clone()),
        }
    }

    fn source(&self, job: &JobBuilder, s: &SourceSpec) -> Result<DataStream> {
        let e = |m: String| self.place.err(&s.name, m);
        let ctx = self.ctx(&s.name);
        let source = self
            .factories
            .source(&s.kind)
            .map_err(|m| ctx.err(m))?
            .build(&s.settings, &ctx)?;
        let mut stream = job
            .source(&s.name, source)
            .map_err(|x| self.place.err_from(&s.name, x))?;
        if s.watermark.is_some() && s.processing_time.is_some() {
            return Err(e(
                "a source has either 'watermark' (event time) or 'processing_time', not both"
                    .into(),
            ));
        }
        if let Some(col) = &s.processing_time {
            stream = stream
                .with_processing_time(col)
                .map_err(|x| self.place.err_from(&s.name, x))?;
        }
        if let Some(w) = &s.watermark {
            let ooo = match &w.max_out_of_orderness {
                Some(d) => self.place.duration(&s.name, d)?,
                None => Duration::ZERO,
            };
            let mut strategy = WatermarkStrategy::bounded_out_of_orderness(&w.column, ooo);
            if let Some(t) = &w.idle_timeout {
                strategy = strategy.with_idle_timeout(self.place.duration(&s.name, t)?);
            }
            stream = stream
                .with_watermarks(strategy)
                .map_err(|x| self.place.err_from(&s.name, x))?;
        }
        if let Some(p) = s.parallelism {
            stream = stream
                .parallelism(p)
                .map_err(|x| self.place.err_from(&s.name, x))?;
        }
        Ok(stream)
    }

    fn node(&self, n: &NodeSpec, streams: &HashMap<String, DataStream>) -> Result<DataStream> {
        let e = |m: String| self.place.err(&n.name, m);
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
        let engine = |r: ferroflow_engine::Result<DataStream>| {
            r.map_err(|x| self.place.err_from(&n.name, x))
        };
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
                            WindowSpec::tumbling(time, self.place.duration(&n.name, t)?)
                        }
                        (None, Some(s), None) => WindowSpec::sliding(
                            time,
                            self.place.duration(&n.name, &s.size)?,
                            self.place.duration(&n.name, &s.slide)?,
                        ),
                        (None, None, Some(g)) => {
                            WindowSpec::session(time, self.place.duration(&n.name, g)?)
                        }
                        _ => {
                            return Err(e(
                                "a window has exactly one of tumbling, sliding, session, count"
                                    .into(),
                            ));
                        }
                    };
                    if let Some(l) = &w.allowed_lateness {
                        spec = spec.with_allowed_lateness(self.place.duration(&n.name, l)?);
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
                        self.place.signed_ms(&n.name, &iv.lower)?,
                        self.place.signed_ms(&n.name, &iv.upper)?,
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
                    .map_err(|x| self.place.err_from(&n.name, x))?
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
            out = out
                .parallelism(p)
                .map_err(|x| self.place.err_from(&n.name, x))?;
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
        let path = self.place.path(&p.model);
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
                    Some(t) => self.place.duration(&n.name, t)?,
                    None => d.target_latency,
                },
                max_latency: match &b.max_latency {
                    Some(t) => self.place.duration(&n.name, t)?,
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
        r.map_err(|x| self.place.err_from(&n.name, x))
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
    fn errors_point_at_the_entry_not_at_a_column_of_the_same_name() {
        let text = "name: id\nsources:\n  - name: src\n    columns:\n      - {name: id, kind: sequence}\n  - {name: 'id', type: generator}\n";
        let c = Place {
            text,
            origin: "t.yaml",
            base: Path::new("."),
        };
        // The job's own name (indent 0) wins over deeper entries.
        assert_eq!(c.line_of("id"), Some(1));
        assert_eq!(c.line_of("src"), Some(3));
        assert_eq!(c.line_of("nope"), None);
        let text = "sources:\n  - name: src\n    columns:\n      - {name: x, kind: sequence}\n  - {name: \"x\", type: generator}\n";
        let c = Place { text, ..c };
        assert_eq!(c.line_of("x"), Some(5));
    }
}
