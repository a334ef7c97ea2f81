//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Spawn `cmd` with stdout piped and wait for its first line (what a server or scheduler
/// prints once it is ready): the child and that line, trimmed.
pub(crate) fn spawn_until_ready(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

// The clicks CSV and the row rendering are shared with the connector tests.
#[path = "../../crates/ferroflow-connectors/tests/common/mod.rs"]
mod clicks;
#[allow(unused_imports)] // not every test binary uses both
pub(crate) use clicks::{rows, write_clicks_csv};

pub(crate) mod flow;
