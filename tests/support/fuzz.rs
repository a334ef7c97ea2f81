//! Shared by the fuzz tests of every crate (each includes it with `#[path]`): a bounded
//! number of cases, and mutations of valid inputs.
#![allow(dead_code)]

/// Bounded fuzzing on stable: cases per property from `FERROFLOW_FUZZ_CASES` (CI's default
/// is small; `FERROFLOW_FUZZ_CASES=20000 cargo test --test fuzz_...` is a longer run).
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("FERROFLOW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A valid input with random edits: bytes deleted, duplicated, or replaced by characters that
/// matter to the format (and numbers that overflow), so most cases get past the first
/// parsing step and exercise what comes after it.
pub(crate) fn mutate(seed: &str, edits: &[(usize, u8, u8)]) -> String {
    const PIECES: &[&str] = &[
        "",
        " ",
        "\n",
        ":",
        "-",
        "{",
        "}",
        "[",
        "]",
        ",",
        "'",
        "\"",
        "#",
        "&a",
        "*a",
        "!!",
        "0",
        "-1",
        "99999999999999999999",
        "1e308",
        "NaN",
        "null",
        "true",
        "~",
        "\t",
        "é",
        "\u{0}",
        "..",
        "/",
        "%",
        "?",
    ];
    let mut s: Vec<char> = seed.chars().collect();
    for &(at, kind, piece) in edits {
        if s.is_empty() {
            break;
        }
        let at = at % s.len();
        let piece: Vec<char> = PIECES[piece as usize % PIECES.len()].chars().collect();
        match kind % 4 {
            0 => {
                let end = (at + 1 + piece.len()).min(s.len());
                s.drain(at..end);
            }
            1 => {
                s.splice(at..at, piece);
            }
            2 => {
                let end = (at + 1).min(s.len());
                s.splice(at..end, piece);
            }
            _ => {
                let end = (at + 8).min(s.len());
                let copy: Vec<char> = s[at..end].to_vec();
                s.splice(at..at, copy);
            }
        }
    }
    s.into_iter().collect()
}
