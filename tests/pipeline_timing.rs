//! Per-stage timing of the benchmark workloads, for a person to read.
//!
//! Ignored by default because timings mean something only in release mode:
//! `cargo test --release --test pipeline_timing -- --ignored --nocapture`.
//! It prints the median of each stage over 15 runs after 3 warm-up runs.

use std::time::Duration;

use imgflux::options::{FormatRequest, ProcessOptions};
use imgflux::pipeline::{process, Job, Limits, Output, Scratch, STAGE_COUNT};

const WARM_UP_RUNS: usize = 3;
const MEASURED_RUNS: usize = 15;

fn bench_image(name: &str) -> Vec<u8> {
    let beside = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench-images");
    let folder = if beside.is_dir() {
        beside
    } else {
        "/work/shared/bench-images".into()
    };
    std::fs::read(folder.join(name)).unwrap_or_else(|error| panic!("cannot read {name}: {error}"))
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn report(label: &str, input: &[u8], options: &ProcessOptions) {
    let limits = Limits::default();
    let job = Job {
        options,
        limits: &limits,
        accept_webp: false,
        deadline: None,
    };
    let mut outputs: Vec<Output> = Vec::new();
    let mut scratch = Scratch::new();
    for run in 0..WARM_UP_RUNS + MEASURED_RUNS {
        let output = process(input, &job, &mut scratch).expect("the bench image processes");
        if run >= WARM_UP_RUNS {
            outputs.push(output);
        }
    }
    let last = outputs.last().unwrap();
    println!(
        "{label}: {}x{} -> {}x{} {:?}, {} bytes",
        last.input_size.0,
        last.input_size.1,
        last.output_size.0,
        last.output_size.1,
        last.format,
        last.bytes.len()
    );
    for index in 0..STAGE_COUNT {
        let name = last.timings.stages[index].0;
        let times = outputs.iter().map(|o| o.timings.stages[index].1).collect();
        println!("  {name:<8} {:>9.2?}", median(times));
    }
    let totals = outputs
        .iter()
        .map(|o| o.timings.decode + o.timings.transform + o.timings.encode)
        .collect();
    println!("  total    {:>9.2?}", median(totals));
}

#[test]
#[ignore = "timing report; run in release mode with --ignored --nocapture"]
fn bench_workload_stage_times() {
    let photo = bench_image("photo-2mp-1600x1200.jpg");
    let to_png = ProcessOptions {
        width: Some(800),
        format: FormatRequest::Png,
        ..ProcessOptions::default()
    };
    report("2 MP JPEG to w=800 PNG", &photo, &to_png);

    let to_jpeg = ProcessOptions {
        width: Some(800),
        format: FormatRequest::Jpeg,
        quality: 80,
        ..ProcessOptions::default()
    };
    report("2 MP JPEG to w=800 JPEG q=80", &photo, &to_jpeg);

    let to_webp = ProcessOptions {
        width: Some(800),
        format: FormatRequest::Webp,
        quality: 80,
        ..ProcessOptions::default()
    };
    report("2 MP JPEG to w=800 WebP q=80", &photo, &to_webp);

    let icon = bench_image("icon-256x256.png");
    let to_icon = ProcessOptions {
        width: Some(64),
        format: FormatRequest::Png,
        ..ProcessOptions::default()
    };
    report("256 px PNG icon to w=64 PNG", &icon, &to_icon);

    let large = bench_image("photo-12mp-4032x3024.jpg");
    let to_1024 = ProcessOptions {
        width: Some(1024),
        format: FormatRequest::Jpeg,
        ..ProcessOptions::default()
    };
    report("12 MP JPEG to w=1024 JPEG q=80", &large, &to_1024);
}
