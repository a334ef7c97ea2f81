//! Crates above the job spec add source types, sink types and operations through
//! `Factories`; each reads its own typed settings.

use std::sync::Arc;

use arrow_array::Int64Array;
use ferroflow_connectors::MemorySink;
use ferroflow_engine::{DataStream, Runtime};
use ferroflow_jobspec::{
    BuildContext, Factories, NodeFactory, NodeInputs, Result, Settings, SinkFactory,
};
use ferroflow_sql::ExprStreamExt;

/// `offset: {by: N, also: other}` adds N to `id` (and reads `also` so ordering is tested).
struct Offset;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetSettings {
    by: i64,
    also: Option<String>,
}

impl NodeFactory for Offset {
    fn extra_inputs(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Vec<String>> {
        let s: OffsetSettings = ctx.parse(settings)?;
        Ok(s.also.into_iter().collect())
    }

    fn build(
        &self,
        settings: &Settings,
        inputs: NodeInputs,
        ctx: &BuildContext<'_>,
    ) -> Result<DataStream> {
        let s: OffsetSettings = ctx.parse(settings)?;
        let input = inputs
            .input
            .ok_or_else(|| ctx.err("offset needs 'input'"))?;
        let mut all = vec![input];
        all.extend(inputs.extra);
        let (first, rest) = all.split_first().unwrap();
        let merged = if rest.is_empty() {
            first.clone()
        } else {
            first
                .union(
                    &format!("{}_in", ctx.node()),
                    &rest.iter().collect::<Vec<_>>(),
                )
                .map_err(|e| ctx.err_from(e))?
        };
        merged
            .select(ctx.node(), &[&format!("id + {} AS id", s.by)])
            .map_err(|e| ctx.err_from(e))
    }
}

/// `type: collect`: rows into a shared memory sink.
struct Collect(Arc<MemorySink>);

impl SinkFactory for Collect {
    fn build(
        &self,
        settings: &Settings,
        ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn ferroflow_engine::Sink>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoSettings {}
        let _: NoSettings = ctx.parse(settings)?;
        Ok(self.0.clone())
    }
}

const SPEC: &str = "name: ext
sources:
  - name: a
    type: generator
    rows: 3
    columns: [{name: id, kind: sequence}]
  - name: b
    type: generator
    rows: 2
    columns: [{name: id, kind: sequence}]
nodes:
  - name: shifted
    input: a
    offset: {by: 100, also: b}
sinks:
  - {name: out, input: shifted, type: collect}
";

#[test]
fn registered_operations_and_sinks_build_and_run() {
    let rows = Arc::new(MemorySink::new());
    let factories = Factories::builtin()
        .with_sink("collect", Arc::new(Collect(rows.clone())))
        .with_node("offset", Arc::new(Offset))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ferroflow_jobspec::parse(SPEC, "ext.yaml").unwrap();
    let job = ferroflow_jobspec::build_spec_with(&spec, SPEC, "ext.yaml", dir.path(), &factories)
        .unwrap();
    Runtime::new()
        .unwrap()
        .execute(job)
        .unwrap()
        .wait()
        .unwrap();
    let mut got: Vec<i64> = rows
        .batches()
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("id").unwrap();
            let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
            ids.values().to_vec()
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![100, 100, 101, 101, 102]);

    // The same spec without the registrations names what is missing.
    let Err(e) = ferroflow_jobspec::build(SPEC, "ext.yaml", dir.path()) else {
        panic!("an unregistered operation is refused")
    };
    let e = e.to_string();
    assert!(
        e.starts_with("ext.yaml:12: node 'shifted': unknown operation 'offset'"),
        "{e}"
    );

    // Settings are the factory's to check.
    let bad = SPEC.replace("by: 100", "by: 100, twice: true");
    let Err(e) = ferroflow_jobspec::build_spec_with(
        &ferroflow_jobspec::parse(&bad, "ext.yaml").unwrap(),
        &bad,
        "ext.yaml",
        dir.path(),
        &factories,
    ) else {
        panic!("an unknown setting is refused")
    };
    let e = e.to_string();
    assert!(
        e.contains("node 'shifted'") && e.contains("unknown field `twice`"),
        "{e}"
    );
}

#[test]
fn a_built_in_operation_cannot_be_registered() {
    let e = Factories::builtin()
        .with_node("filter", Arc::new(Offset))
        .unwrap_err();
    assert!(
        e.to_string().contains("'filter' is a built-in operation"),
        "{e}"
    );
}
