//! ONNX Runtime inference of A0 (random weights, seed 1, 224x224), fused vs the three-branch
//! training graph, at batch 1 and 8, with as many intra-op threads as the server's default.
//!
//! cargo bench --bench inference

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use repvgg_serve::inference::{Backend, Engine, EngineConfig};
use repvgg_serve::model::{init, onnx, variants, RepVgg};

fn inference(c: &mut Criterion) {
    let a0 = variants::find("A0").expect("A0");
    let unfused = RepVgg::from_checkpoint(init::random_checkpoint(a0, 1, 1000)).expect("A0");
    let fused = unfused.clone().fused();
    let config = EngineConfig::default();
    let mut group = c.benchmark_group("ort_a0");
    for (form, model) in [("fused", &fused), ("unfused", &unfused)] {
        let mut engine =
            Engine::new(&onnx::export(model, &[]), 1000, &config, None).expect("session");
        for batch in [1usize, 8] {
            let input: Vec<f32> = (0..batch * 3 * 224 * 224)
                .map(|i| (i % 255) as f32 / 127.0 - 1.0)
                .collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(form, format!("batch{batch}")),
                &input,
                |b, input| b.iter(|| engine.run(input, batch, 224, 224).expect("runs")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
