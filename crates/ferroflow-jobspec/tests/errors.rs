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
