//! Time from a training checkpoint to a ready ONNX Runtime session (load + fuse + export +
//! ONNX Runtime optimisation + session + one batch-1 run), then the same from the fused-model cache.
//!
//! cargo run --release --example time_to_ready -- CHECKPOINT [CACHE_DIR]

use std::time::Instant;

use repvgg_serve::inference::{Backend, EngineConfig, SharedModel};
use repvgg_serve::model::{prepare, ModelSource};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let checkpoint = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: time_to_ready CHECKPOINT [CACHE_DIR]"))?;
    let cache = tempfile_dir(args.next());
    std::fs::create_dir_all(&cache)?;
    let source = ModelSource::Checkpoint(checkpoint.clone().into());
    for pass in ["cold (fuse)", "cached"] {
        let started = Instant::now();
        let prepared = prepare(&source, Some(&cache))?;
        let fused = started.elapsed();
        let mut engine = SharedModel::load(&prepared, None)?.session(&EngineConfig::default())?;
        let size = prepared.info.crop as usize;
        engine.run(&vec![0.0; 3 * size * size], 1, size, size)?;
        println!(
            "{}",
            serde_json::json!({
                "checkpoint": checkpoint, "pass": pass, "from_cache": prepared.from_cache,
                "variant": prepared.info.variant,
                "prepare_s": fused.as_secs_f64(), "ready_s": started.elapsed().as_secs_f64()
            })
        );
    }
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}

fn tempfile_dir(given: Option<String>) -> std::path::PathBuf {
    given.map_or_else(
        || std::env::temp_dir().join(format!("repvgg-ttr-{}", std::process::id())),
        Into::into,
    )
}
