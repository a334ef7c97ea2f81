//! A node the engine or SQL refuses fails the spec naming the file, line and node, with the
//! library's error kept as the source (not flattened to text).

use std::error::Error;

const SPEC: &str = "name: bad
sources:
  - name: events
    type: generator
    rows: 10
    seed: 1
    columns:
      - {name: id, kind: sequence}
nodes:
  - name: pick
    input: events
    filter: \"nope > 1\"
sinks:
  - name: out
    input: pick
    type: print
";

#[test]
fn a_refused_node_keeps_the_library_error_as_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let Err(err) = ferroflow_jobspec::build(SPEC, "bad.yaml", dir.path()) else {
        panic!("a filter on a missing column is refused")
    };
    let text = err.to_string();
    assert!(text.starts_with("bad.yaml:10: node 'pick': "), "{text}");
    assert!(text.contains("nope"), "{text}");
    assert!(
        matches!(err, ferroflow_jobspec::SpecError::Node { ref node, .. } if node == "pick"),
        "{err:?}"
    );
    let source = err.source().expect("the cause is kept");
    assert!(source.to_string().contains("nope"), "{source}");
}

fn build_err(spec: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    match ferroflow_jobspec::build(spec, "job.yaml", dir.path()) {
        Ok(_) => panic!("the spec is refused:\n{spec}"),
        Err(e) => e.to_string(),
    }
}

const GEN: &str = "name: j
sources:
  - name: events
    type: generator
    rows: 10
    columns:
      - {name: id, kind: sequence}
";

#[test]
fn a_setting_a_source_type_does_not_take_is_refused_naming_it() {
    let e = build_err(&format!(
        "{GEN}    path: oops.csv\nsinks:\n  - {{name: out, input: events, type: print}}\n"
    ));
    assert!(
        e.starts_with("job.yaml:3: node 'events': ") && e.contains("unknown field `path`"),
        "{e}"
    );
}

#[test]
fn a_wrongly_typed_setting_names_its_path() {
    let spec = "name: j
sources:
  - name: events
    type: generator
    columns:
      - {name: id, kind: sequence}
      - {name: k, kind: int, min: 0, max: ten}
sinks:
  - {name: out, input: events, type: print}
";
    let e = build_err(spec);
    assert!(
        e.starts_with("job.yaml:3: node 'events': columns[1]"),
        "{e}"
    );
    let spec = spec.replace("kind: int, min: 0, max: ten", "kind: gauss");
    let e = build_err(&spec);
    assert!(e.contains("unknown variant `gauss`"), "{e}");
}

#[test]
fn sink_settings_are_checked_by_the_sink_type() {
    let e = build_err(&format!(
        "{GEN}sinks:\n  - name: out\n    input: events\n    type: print\n    options: {{a: b}}\n"
    ));
    assert!(
        e.contains("node 'out'") && e.contains("unknown field `options`"),
        "{e}"
    );
    let e = build_err(&format!(
        "{GEN}sinks:\n  - {{name: out, input: events, type: kafka}}\n"
    ));
    assert!(
        e.contains("unknown sink type 'kafka' (known: file, print, stdout)"),
        "{e}"
    );
}

#[test]
fn a_node_has_exactly_one_known_operation() {
    let sink = "sinks:\n  - {name: out, input: n, type: print}\n";
    let e = build_err(&format!(
        "{GEN}nodes:\n  - {{name: n, input: events, filter: \"id > 1\", select: [id]}}\n{sink}"
    ));
    assert!(
        e.contains("exactly one operation, found 'filter' and 'select'"),
        "{e}"
    );
    let e = build_err(&format!(
        "{GEN}nodes:\n  - {{name: n, input: events}}\n{sink}"
    ));
    assert!(e.contains("a node needs one operation"), "{e}");
    let e = build_err(&format!(
        "{GEN}nodes:\n  - {{name: n, input: events, filtr: \"id > 1\"}}\n{sink}"
    ));
    assert!(
        e.starts_with("job.yaml:9: node 'n': unknown operation 'filtr' (known: filter, select"),
        "{e}"
    );
}
