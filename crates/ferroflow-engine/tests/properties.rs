//! Property tests: window results equal a plain reference computation for any input order,
//! batch split and parallelism.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use ferroflow_connectors::{MemorySink, MemorySource};
use ferroflow_engine::{
    AggFunc, Aggregate, JobBuilder, JobConfig, Runtime, WatermarkStrategy, WindowSpec,
};
use proptest::prelude::*;

type Event = (i64, i64, i64); // key, ts, value

fn batches(events: &[Event], split: usize) -> Vec<RecordBatch> {
    events
        .chunks(split.max(1))
        .map(|c| {
            RecordBatch::try_from_iter(vec![
                (
                    "k",
                    Arc::new(Int64Array::from_iter_values(c.iter().map(|e| e.0)))
                        as arrow_array::ArrayRef,
                ),
                (
                    "ts",
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        c.iter().map(|e| e.1),
                    )) as _,
                ),
                (
                    "v",
                    Arc::new(Int64Array::from_iter_values(c.iter().map(|e| e.2))) as _,
                ),
            ])
            .unwrap()
        })
        .collect()
}

fn run(
    events: &[Event],
    split: usize,
    parallelism: usize,
    spec: WindowSpec,
) -> BTreeMap<(i64, i64), (i64, i64)> {
    let job = JobBuilder::with_config(
        "prop",
        JobConfig {
            parallelism,
            ..Default::default()
        },
    );
    let sink = MemorySink::new();
    job.source(
        "src",
        Arc::new(MemorySource::from_batches(batches(events, split)).unwrap()),
    )
    .unwrap()
    // Out-of-orderness larger than the whole time range: nothing is ever late.
    .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
        "ts",
        Duration::from_secs(1_000),
    ))
    .unwrap()
    .key_by(&["k"])
    .unwrap()
    .window(
        "w",
        spec,
        &[
            Aggregate::count_star("n"),
            Aggregate::new(AggFunc::Sum, "v", "s"),
        ],
    )
    .unwrap()
    .sink("mem", Arc::new(sink.clone()))
    .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for b in sink.batches() {
        let k = b.column(0).as_primitive::<Int64Type>();
        let ws = b.column(1).as_primitive::<TimestampMillisecondType>();
        let n = b.column(3).as_primitive::<Int64Type>();
        let s = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let prev = out.insert((k.value(i), ws.value(i)), (n.value(i), s.value(i)));
            assert!(prev.is_none(), "a window fired twice without late data");
        }
    }
    out
}

fn reference(events: &[Event], size: i64, slide: i64) -> BTreeMap<(i64, i64), (i64, i64)> {
    let mut out: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for &(k, ts, v) in events {
        let mut start = ts - ts.rem_euclid(slide);
        while start > ts - size {
            let e = out.entry((k, start)).or_default();
            e.0 += 1;
            e.1 += v;
            start -= slide;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_and_sliding_match_reference(
        events in prop::collection::vec((0i64..6, -50_000i64..200_000, -100i64..100), 1..400),
        split in 1usize..64,
        parallelism in 1usize..5,
        size_s in 1i64..30,
        hop_div in 1i64..4,
    ) {
        let size = size_s * 1000;
        let got = run(&events, split, parallelism, WindowSpec::tumbling("ts", Duration::from_millis(size as u64)));
        prop_assert_eq!(got, reference(&events, size, size));
        let slide = (size / hop_div).max(1);
        let got = run(&events, split, parallelism, WindowSpec::sliding("ts", Duration::from_millis(size as u64), Duration::from_millis(slide as u64)));
        prop_assert_eq!(got, reference(&events, size, slide));
    }

    #[test]
    fn session_windows_partition_each_keys_events(
        events in prop::collection::vec((0i64..3, 0i64..100_000, 0i64..10), 1..200),
        split in 1usize..32,
        gap_ms in 100i64..20_000,
    ) {
        let got = run(&events, split, 2, WindowSpec::session("ts", Duration::from_millis(gap_ms as u64)));
        // Reference: sort each key's times; a gap of >= `gap` starts a new session.
        let mut want: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
        for key in 0..3 {
            let mut ev: Vec<(i64, i64)> = events.iter().filter(|e| e.0 == key).map(|e| (e.1, e.2)).collect();
            ev.sort();
            let mut cur: Option<(i64, i64, i64, i64)> = None; // start, last, n, sum
            for (ts, v) in ev {
                cur = match cur {
                    Some((s, last, n, sum)) if ts < last + gap_ms => Some((s, ts, n + 1, sum + v)),
                    Some((s, _, n, sum)) => { want.insert((key, s), (n, sum)); Some((ts, ts, 1, v)) }
                    None => Some((ts, ts, 1, v)),
                };
            }
            if let Some((s, _, n, sum)) = cur { want.insert((key, s), (n, sum)); }
        }
        prop_assert_eq!(got, want);
    }
}
