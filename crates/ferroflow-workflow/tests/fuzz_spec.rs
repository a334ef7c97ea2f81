//! Fuzzing the workflow spec parser and validation (bounded, on stable): mutated and random
//! specs give an error naming a place, never a panic.

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;

use ferroflow_workflow::{PluginRegistry, check_job_types, parse_workflow};
use proptest::prelude::*;

const SEED: &str = include_str!("../../../examples/batch_train_predict/workflow.yaml");

fn check(text: &str) {
    if let Ok(graph) = parse_workflow(text, "fuzz.yaml") {
        let _ = check_job_types(text, "fuzz.yaml", &graph, &PluginRegistry::with_builtin());
        let _ = PluginRegistry::with_builtin().host_access_jobs(&graph);
        for job in graph.jobs.values() {
            if let Some(p) = &job.periodic {
                let _ = p.next_after(i64::MAX - 1);
                let _ = p.next_after(i64::MIN);
            }
        }
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
