//! Fuzzing the job spec parser and compiler (bounded, on stable): mutated and random specs
//! give an error naming a place, never a panic.

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;

use proptest::prelude::*;

const SEED: &str = include_str!("../../../examples/clickstream.yaml");

fn check(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    if let Ok(spec) = ferroflow_jobspec::parse(text, "fuzz.yaml") {
        // Built against an empty directory: missing files must be an error.
        let _ = ferroflow_jobspec::build_spec(&spec, text, "fuzz.yaml", dir.path());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz::cases(256), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_specs_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12)) {
        check(&fuzz::mutate(SEED, &edits));
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        check(&text);
    }
}
