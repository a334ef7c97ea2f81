//! Helpers shared by the connector tests and the end-to-end tests (which include this file).
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// Write a clicks CSV of `n` rows: ts (ms), user, amount. Event times grow by `step_ms` per row
/// and are pushed back by up to `disorder_ms` (deterministic).
pub(crate) fn write_clicks_csv(
    path: &Path,
    n: usize,
    users: usize,
    step_ms: i64,
    disorder_ms: i64,
) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "ts,user,amount").unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = if disorder_ms > 0 {
            (x % disorder_ms as u64) as i64
        } else {
            0
        };
        let ts = 1_700_000_000_000 + i as i64 * step_ms - delay;
        let user = format!("user{}", (x >> 20) % users as u64);
        let amount = ((x >> 8) % 10_000) as f64 / 100.0;
        writeln!(f, "{ts},{user},{amount}").unwrap();
    }
}

/// Sorted rows of batches, each row rendered as strings (floats rounded to 6 places).
pub(crate) fn rows(batches: &[arrow_array::RecordBatch]) -> Vec<Vec<String>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let mut row = Vec::new();
            for c in b.columns() {
                let v = if c.is_null(r) {
                    "NULL".to_string()
                } else if c.data_type() == &arrow_schema::DataType::Float64 {
                    format!("{:.6}", c.as_primitive::<Float64Type>().value(r))
                } else {
                    arrow_cast::display::array_value_to_string(c, r).unwrap()
                };
                row.push(v);
            }
            out.push(row);
        }
    }
    out.sort();
    out
}
