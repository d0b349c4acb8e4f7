//! Raw ONNX Runtime throughput of a model, no HTTP: the ceiling the server is compared to.
//!
//! cargo run --release --example ort_throughput -- MODEL.onnx BATCH SECONDS [INTRA_THREADS] [SESSIONS] [PRECISION]
//! SESSIONS sessions (default 1) run side by side, each on its own thread with INTRA_THREADS
//! intra-op threads (default: cores / SESSIONS), as the server runs them. PRECISION `fp32`
//! (default: ONNX Runtime's CPU provider) or `bf16` (the OpenVINO provider with the bf16 hint,
//! exactly as `serve --precision bf16` builds its sessions; needs scripts/setup-ort-openvino.sh).
//! Prints one JSON line: {"model", "batch", "threads", "sessions", "precision",
//! "images_per_second", "batches"}.

use std::time::{Duration, Instant};

use repvgg_serve::inference::{Backend, Engine, EngineConfig, OpenVinoModel, Precision};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, batch, seconds, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: ort_throughput MODEL.onnx BATCH SECONDS [INTRA_THREADS] [SESSIONS] [fp32|bf16]"
        );
    };
    let batch: usize = batch.parse()?;
    let window = Duration::from_secs_f64(seconds.parse()?);
    let sessions: usize = rest.get(1).map_or(Ok(1), |s| s.parse())?;
    let precision = rest.get(2).map_or(Ok(Precision::Fp32), |p| {
        <Precision as clap::ValueEnum>::from_str(p, false).map_err(anyhow::Error::msg)
    })?;
    let threads = match rest.first() {
        Some(t) => t.parse()?,
        None => (EngineConfig::default().intra_threads / sessions).max(1),
    };
    let probe =
        repvgg_serve::model::prepare(&repvgg_serve::model::ModelSource::Onnx(model.into()), None)?;
    let bytes = std::fs::read(model)?;
    let openvino = match precision {
        Precision::Fp32 => None,
        Precision::Bf16 => Some(OpenVinoModel::load(&probe, None)?),
    };
    let config = EngineConfig {
        intra_threads: threads,
        spinning: false,
    };
    let size = probe.info.crop as usize;
    let input: Vec<f32> = (0..batch * 3 * size * size)
        .map(|i| ((i % 255) as f32 / 127.0) - 1.0)
        .collect();
    let mut engines = (0..sessions)
        .map(|_| {
            let mut engine = match &openvino {
                Some(openvino) => openvino.session(&config)?,
                None => Engine::new(&bytes, probe.info.num_classes, &config, None)?,
            };
            engine.run(&input, batch, size, size)?; // warm-up
            Ok(engine)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let batches = std::thread::scope(|scope| {
        let workers: Vec<_> = engines
            .iter_mut()
            .map(|engine| {
                let input = &input;
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut batches = 0u64;
                    while started.elapsed() < window {
                        engine.run(input, batch, size, size)?;
                        batches += 1;
                    }
                    Ok(batches)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a session thread panicked"))?
            })
            .sum::<anyhow::Result<u64>>()
    })?;
    let rate = (batches * batch as u64) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"model": model, "batch": batch, "threads": threads, "sessions": sessions, "precision": precision.as_str(), "images_per_second": rate, "batches": batches})
    );
    Ok(())
}
