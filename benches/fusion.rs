//! Fusion (three branches + BN -> one 3x3 conv per block, in f64) plus ONNX export, per
//! variant, from a training-form network already in memory (random weights, seed 1).
//!
//! cargo bench --bench fusion

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use repvgg_serve::model::{init, onnx, variants, RepVgg};

fn fusion(c: &mut Criterion) {
    let mut group = c.benchmark_group("fuse_and_export");
    group.sample_size(10);
    for variant in &variants::VARIANTS {
        let model = RepVgg::from_checkpoint(init::random_checkpoint(variant, 1, 1000))
            .expect("random checkpoint loads");
        group.bench_with_input(
            BenchmarkId::from_parameter(variant.name),
            &model,
            |b, model| {
                b.iter_batched(
                    || model.clone(),
                    |m| onnx::export(&m.fused(), &[]),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fusion);
criterion_main!(benches);
