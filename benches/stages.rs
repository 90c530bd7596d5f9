//! Criterion benchmarks of the pipeline on the four bench workloads.
//!
//! `cargo bench --bench stages` times the whole `pipeline::process` call
//! and, separately, its decode, resize and encode stages. A stage's time
//! comes from the `Timings` that `process` records, so the stages are
//! measured inside the real pipeline, with the real shrink-on-load and
//! scratch buffers, and no pipeline internals need to be public.
//!
//! The images are read from `../shared/bench-images` beside the repository,
//! or from `IMGFLUX_BENCH_IMAGES` when that is set.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use imgflux::options::{FormatRequest, ProcessOptions};
use imgflux::pipeline::{process, Job, Limits, Output, Scratch};

/// One bench request: the image and the query it is sent with.
struct Workload {
    name: &'static str,
    file: &'static str,
    width: u32,
    format: FormatRequest,
    quality: Option<u8>,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "a_2mp_w800_png",
        file: "photo-2mp-1600x1200.jpg",
        width: 800,
        format: FormatRequest::Png,
        quality: None,
    },
    Workload {
        name: "b_2mp_w800_jpeg_q80",
        file: "photo-2mp-1600x1200.jpg",
        width: 800,
        format: FormatRequest::Jpeg,
        quality: Some(80),
    },
    Workload {
        name: "c_icon_w64_png",
        file: "icon-256x256.png",
        width: 64,
        format: FormatRequest::Png,
        quality: None,
    },
    Workload {
        name: "d_12mp_w1024_jpeg",
        file: "photo-12mp-4032x3024.jpg",
        width: 1024,
        format: FormatRequest::Jpeg,
        quality: None,
    },
];

/// Stages whose time is benchmarked on its own, by their name in `Timings`.
const STAGES: [&str; 3] = ["decode", "resize", "encode"];

fn images_folder() -> PathBuf {
    if let Some(folder) = std::env::var_os("IMGFLUX_BENCH_IMAGES") {
        return folder.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench-images")
}

fn read_image(file: &str) -> Vec<u8> {
    let path = images_folder().join(file);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read the bench image {}: {error}; set IMGFLUX_BENCH_IMAGES to its folder",
            path.display()
        )
    })
}

fn options_for(workload: &Workload) -> ProcessOptions {
    let mut options = ProcessOptions {
        width: Some(workload.width),
        format: workload.format,
        ..ProcessOptions::default()
    };
    if let Some(quality) = workload.quality {
        options.quality = quality;
    }
    options
}

fn run(input: &[u8], options: &ProcessOptions, limits: &Limits, scratch: &mut Scratch) -> Output {
    let job = Job {
        options,
        limits,
        accept_webp: false,
        deadline: None,
    };
    process(input, &job, scratch).expect("the bench image processes")
}

/// Returns the time `output` spent in the stage called `stage`.
fn stage_time(output: &Output, stage: &str) -> Duration {
    output
        .timings
        .stages
        .iter()
        .find(|(name, _)| *name == stage)
        .map(|(_, time)| *time)
        .unwrap_or_else(|| panic!("the pipeline has no stage called {stage}"))
}

fn bench_workloads(criterion: &mut Criterion) {
    let limits = Limits::default();
    for workload in &WORKLOADS {
        let input = read_image(workload.file);
        let options = options_for(workload);
        let mut group = criterion.benchmark_group(workload.name);
        group.sample_size(20);
        // Reused across iterations, as a worker reuses it across requests.
        let mut scratch = Scratch::new();

        group.bench_function("process", |bencher| {
            bencher.iter(|| run(&input, &options, &limits, &mut scratch))
        });
        for stage in STAGES {
            group.bench_function(BenchmarkId::new("stage", stage), |bencher| {
                bencher.iter_custom(|iterations| {
                    (0..iterations)
                        .map(|_| stage_time(&run(&input, &options, &limits, &mut scratch), stage))
                        .sum()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_workloads);
criterion_main!(benches);
