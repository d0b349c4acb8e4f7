//! Raw ONNX Runtime throughput of a model, no HTTP: the ceiling the server is compared to.
//!
//! cargo run --release --example ort_throughput -- MODEL.onnx BATCH SECONDS [INTRA_THREADS]
//! Prints one JSON line: {"model", "batch", "threads", "images_per_second", "batches"}.

use std::time::{Duration, Instant};

use repvgg_serve::inference::{Engine, EngineConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, batch, seconds, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: ort_throughput MODEL.onnx BATCH SECONDS [INTRA_THREADS]");
    };
    let batch: usize = batch.parse()?;
    let window = Duration::from_secs_f64(seconds.parse()?);
    let threads = match rest.first() {
        Some(t) => t.parse()?,
        None => EngineConfig::default().intra_threads,
    };
    let bytes = std::fs::read(model)?;
    let probe =
        repvgg_serve::model::prepare(&repvgg_serve::model::ModelSource::Onnx(model.into()), None)?;
    let config = EngineConfig {
        intra_threads: threads,
        spinning: false,
    };
    let mut engine = Engine::new(&bytes, probe.info.num_classes, &config, None)?;
    let size = probe.info.crop as usize;
    let input: Vec<f32> = (0..batch * 3 * size * size)
        .map(|i| ((i % 255) as f32 / 127.0) - 1.0)
        .collect();
    engine.run(&input, batch, size, size)?; // warm-up
    let started = Instant::now();
    let mut batches = 0u64;
    while started.elapsed() < window {
        engine.run(&input, batch, size, size)?;
        batches += 1;
    }
    let rate = (batches * batch as u64) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"model": model, "batch": batch, "threads": threads, "images_per_second": rate, "batches": batches})
    );
    Ok(())
}
