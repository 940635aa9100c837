//! `compile()` at 1,000, 10,000 and 100,000 Ingress rules, in both shapes of
//! `bench/scale.py`: ten rules per Ingress, and one Ingress per rule.
//!
//! Reads the files `scale.py gen` wrote to `PORTICO_SCALE_DIR`; without it, runs the
//! generator into a temporary directory first. Only the compile is timed: parsing the
//! file happens once, before. `PORTICO_SCALE_SIZES=1000,10000` picks the sizes.

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use portico_controller::compile::{CompileOptions, compile, unix_now};
use portico_controller::file::parse;

const SHAPES: [&str; 2] = ["10-per-ingress", "1-per-ingress"];

fn sizes() -> String {
    std::env::var("PORTICO_SCALE_SIZES").unwrap_or_else(|_| "1000,10000,100000".into())
}

/// The directory holding the generated files, generating them when none is given.
fn scale_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTICO_SCALE_DIR") {
        return dir.into();
    }
    let dir = std::env::temp_dir().join("portico-scale");
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/scale.py");
    let status = Command::new("python3")
        .arg(&generator)
        .args(["gen", "--sizes", &sizes(), "--out"])
        .arg(&dir)
        .status()
        .expect("python3 runs bench/scale.py");
    assert!(status.success(), "bench/scale.py gen failed");
    dir
}

fn compile_at_scale(c: &mut Criterion) {
    let dir = scale_dir();
    let opts = CompileOptions {
        generation: 1,
        now: unix_now(),
        ..CompileOptions::default()
    };
    let mut group = c.benchmark_group("compile");
    // A 100,000-rule compile takes long enough that ten flat samples are plenty.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for rules in sizes()
        .split(',')
        .map(|s| s.trim().parse::<usize>().expect("sizes are numbers"))
    {
        for shape in SHAPES {
            let path = dir.join(format!("rules-{rules}-{shape}.yaml"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let snapshot = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let (table, diagnostics) = compile(&snapshot, &opts);
            assert_eq!(table.route_count(), rules, "{}", path.display());
            assert!(diagnostics.iter().all(|d| !d.is_warning()), "{diagnostics:?}");
            group.bench_with_input(BenchmarkId::new(shape, rules), &snapshot, |b, snapshot| {
                b.iter_with_large_drop(|| compile(snapshot, &opts))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, compile_at_scale);
criterion_main!(benches);
