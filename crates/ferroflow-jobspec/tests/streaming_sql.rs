//! Streaming SQL's HAVING in a job spec: groups of a window that fail it are dropped, over
//! aggregates selected or not, SELECT aliases and keys, with the hidden aggregates left out
//! of the output.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use ferroflow_connectors::MemorySink;
use ferroflow_engine::Runtime;
use ferroflow_jobspec::{BuildContext, Factories, Result, Settings, SinkFactory};

struct Collect(Arc<MemorySink>);

impl SinkFactory for Collect {
    fn build(&self, _: &Settings, _: &BuildContext<'_>) -> Result<Arc<dyn ferroflow_engine::Sink>> {
        Ok(self.0.clone())
    }
}

/// Window [0, 1000): a ×3 (v 1, 2, 3), b ×1 (v 10), c ×2 (v 0.5, 0.5); window [1000, 2000): a ×1.
const CSV: &str = "ts,k,v\n0,a,1\n100,a,2\n200,b,10\n300,a,3\n400,c,0.5\n500,c,0.5\n1500,a,4\n";

/// (k, window_start, n, and the named columns as f64) of each output row, sorted.
fn run(select: &str, columns: &[&str]) -> Vec<(String, i64, Vec<f64>)> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.csv"), CSV).unwrap();
    let spec = format!(
        "name: having
sources:
  - name: events
    path: events.csv
    schema:
      - {{name: ts, type: int64}}
      - {{name: k, type: utf8}}
      - {{name: v, type: float64}}
    watermark: {{column: ts, max_out_of_orderness: 0s}}
nodes:
  - name: q
    sql: \"{select}\"
sinks:
  - {{name: out, input: q, type: collect}}
"
    );
    let rows = Arc::new(MemorySink::new());
    let factories = Factories::builtin().with_sink("collect", Arc::new(Collect(rows.clone())));
    let parsed = ferroflow_jobspec::parse(&spec, "having.yaml").unwrap();
    let job =
        ferroflow_jobspec::build_spec_with(&parsed, &spec, "having.yaml", dir.path(), &factories)
            .unwrap_or_else(|e| panic!("{select}: {e}"));
    Runtime::new()
        .unwrap()
        .execute(job)
        .unwrap()
        .wait()
        .unwrap();
    let mut out = vec![];
    for b in rows.batches() {
        let names: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with("__agg")),
            "hidden aggregates in the output: {names:?}"
        );
        let k = b.column_by_name("k").unwrap().as_string::<i32>();
        let start = arrow_cast::cast(
            b.column_by_name("w").unwrap(),
            &arrow_schema::DataType::Int64,
        )
        .unwrap();
        let start = start.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let vals = columns
                .iter()
                .map(|c| {
                    let col = arrow_cast::cast(
                        b.column_by_name(c).unwrap(),
                        &arrow_schema::DataType::Float64,
                    )
                    .unwrap();
                    col.as_primitive::<Float64Type>().value(i)
                })
                .collect();
            out.push((k.value(i).to_string(), start.value(i), vals));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

const HEAD: &str = "SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, COUNT(*) AS n";
const GROUP: &str = "FROM events GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)";

#[test]
fn having_keeps_only_the_groups_that_pass() {
    // Without HAVING: every group of every window.
    assert_eq!(run(&format!("{HEAD} {GROUP}"), &["n"]).len(), 4);
    // On a selected aggregate, written out again.
    assert_eq!(
        run(&format!("{HEAD} {GROUP} HAVING COUNT(*) > 1"), &["n"]),
        [("a".into(), 0, vec![3.0]), ("c".into(), 0, vec![2.0])]
    );
    // On a SELECT alias, combined with a key.
    assert_eq!(
        run(
            &format!("{HEAD} {GROUP} HAVING n >= 1 AND k <> 'a'"),
            &["n"]
        ),
        [("b".into(), 0, vec![1.0]), ("c".into(), 0, vec![2.0])]
    );
    // On an aggregate that is not selected: computed, used, not output.
    assert_eq!(
        run(
            &format!("{HEAD} {GROUP} HAVING SUM(v) BETWEEN 2 AND 9"),
            &["n"]
        ),
        [("a".into(), 0, vec![3.0]), ("a".into(), 1000, vec![1.0])]
    );
    // Nested and negated.
    assert_eq!(
        run(
            &format!("{HEAD}, MAX(v) AS top {GROUP} HAVING NOT (MAX(v) < 4)"),
            &["n", "top"]
        ),
        [
            ("a".into(), 1000, vec![1.0, 4.0]),
            ("b".into(), 0, vec![1.0, 10.0])
        ]
    );
}

#[test]
fn having_over_what_it_cannot_see_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.csv"), CSV).unwrap();
    let build = |having: &str| {
        let spec = format!(
            "name: having
sources:
  - name: events
    path: events.csv
    schema: [{{name: ts, type: int64}}, {{name: k, type: utf8}}, {{name: v, type: float64}}]
    watermark: {{column: ts, max_out_of_orderness: 0s}}
nodes:
  - name: q
    sql: \"{HEAD} {GROUP} HAVING {having}\"
sinks:
  - {{name: out, input: q, type: print}}
"
        );
        match ferroflow_jobspec::build(&spec, "having.yaml", dir.path()) {
            Ok(_) => panic!("accepted: {having}"),
            Err(e) => e.to_string(),
        }
    };
    let e = build("v > 1");
    assert!(
        e.contains("node 'q'") && e.contains("HAVING: column 'v' is neither a GROUP BY key"),
        "{e}"
    );
    let e = build("n IN (1, 2)");
    assert!(e.contains("HAVING: 'n IN (1, 2)' is not supported"), "{e}");
}
