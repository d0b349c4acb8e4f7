//! Fidelity against PyTorch: every fixture checkpoint, fused here and run in the real ONNX
//! Runtime on the Pillow reference crops, reproduces the logits the official PyTorch code gave
//! (`reference/logits.json`), and fused and unfused graphs agree for every named variant.

mod common;

use std::path::Path;

use common::*;
use repvgg_serve::inference::{Backend, Engine, EngineConfig, SharedModel};
use repvgg_serve::model::{self, init, onnx, variants, ModelSource, RepVgg};

/// The reference doc's bound: max absolute logit error against PyTorch.
const MAX_ABS_ERROR: f32 = 1e-3;

fn engine(onnx: &[u8], classes: usize) -> Engine {
    Engine::new(onnx, classes, &EngineConfig::default(), None).expect("ONNX Runtime session")
}

fn check_checkpoint_against_pytorch(path: &Path, reference_model: &str) {
    check_within(path, reference_model, MAX_ABS_ERROR, 5);
}

/// Logits within `bound` of PyTorch's and the same top-`top` classes for every image.
fn check_within(path: &Path, reference_model: &str, bound: f32, top: usize) {
    let prepared = model::prepare(&ModelSource::Checkpoint(path.to_owned()), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(prepared.info.fused);
    // The serving path: ONNX Runtime's optimised graph with shared weights.
    let mut engine = SharedModel::load(&prepared, None)
        .and_then(|shared| shared.session(&EngineConfig::default()))
        .expect("ONNX Runtime session");
    let reference = Reference::load();
    let batch: Vec<f32> = IMAGES
        .iter()
        .flat_map(|i| reference_crop_tensor(i))
        .collect();
    let logits = engine
        .run(&batch, IMAGES.len(), 224, 224)
        .expect("inference");
    let classes = prepared.info.num_classes;
    for (i, image) in IMAGES.iter().enumerate() {
        let ours = &logits[i * classes..(i + 1) * classes];
        let want = reference.logits(reference_model, image);
        let err = max_abs_diff(ours, &want);
        assert!(
            err <= bound,
            "{}: {image}: max abs error {err} > {bound}",
            path.display()
        );
        assert_eq!(
            top_k(ours, top),
            reference.top5(reference_model, image)[..top],
            "{image} top-{top}"
        );
    }
}

#[test]
fn tiny_official_training_checkpoint_matches_pytorch() {
    check_checkpoint_against_pytorch(&fixture("checkpoints/tiny_official_train.pth"), "tiny");
}

#[test]
fn tiny_official_deploy_checkpoint_matches_pytorch() {
    check_checkpoint_against_pytorch(&fixture("checkpoints/tiny_official_deploy.pth"), "tiny");
}

#[test]
fn tiny_timm_safetensors_checkpoint_matches_pytorch() {
    check_checkpoint_against_pytorch(&fixture("checkpoints/tiny_timm_train.safetensors"), "tiny");
}

/// The second start finds the fused model in the cache (keyed by the checkpoint's sha256) and
/// skips fusion; the cached graph is the one the first start exported.
#[test]
fn fused_model_is_cached_by_checkpoint_hash() {
    let cache = tempfile::tempdir().expect("tempdir");
    let source = ModelSource::Checkpoint(fixture("checkpoints/tiny_official_train.pth"));
    let first = model::prepare(&source, Some(cache.path())).expect("first start");
    let second = model::prepare(&source, Some(cache.path())).expect("second start");
    assert!(!first.from_cache && second.from_cache);
    assert!(matches!(second.graph, model::FusedGraph::File(_)));
    assert!(
        first.graph.bytes().expect("graph") == second.graph.bytes().expect("graph"),
        "cached graph differs"
    );
    assert_eq!(first.info, second.info);
    // The graph and its facts (so a cached start never parses the graph).
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("cache dir").count(),
        2
    );
}

/// A training script's wrapper: `{"state_dict": {"module.<name>": ...}, "epoch": ...}`.
#[test]
fn wrapped_checkpoint_with_module_prefixes_matches_pytorch() {
    check_checkpoint_against_pytorch(&fixture("checkpoints/tiny_wrapped_module.pth"), "tiny");
}

/// fp16 weights are converted to fp32; rounding the weights to fp16 moves logits slightly.
#[test]
fn fp16_safetensors_loads_close_to_pytorch() {
    check_within(
        &fixture("checkpoints/tiny_timm_fp16.safetensors"),
        "tiny",
        0.05,
        1,
    );
}

#[test]
fn a0_official_training_checkpoint_matches_pytorch() {
    if let Some(path) = shared_fixture("checkpoints/a0_official_train.pth") {
        check_checkpoint_against_pytorch(&path, "a0");
    }
}

/// Fused and three-branch graphs of every named variant (random weights, randomised BN) agree
/// to 1e-4 of the logits' standard deviation, at 64x64 to keep it quick.
#[test]
fn fused_and_unfused_graphs_agree_for_every_variant() {
    const SIZE: usize = 64;
    const BATCH: usize = 2;
    let input: Vec<f32> = (0..BATCH * 3 * SIZE * SIZE)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    for v in variants::VARIANTS.iter() {
        let unfused =
            RepVgg::from_checkpoint(init::random_checkpoint(v, 7, 1000)).expect("random model");
        let classes = unfused.arch.num_classes;
        let unfused_onnx = onnx::export(&unfused, &[]);
        let fused_onnx = onnx::export(&unfused.fused(), &[]);
        let a = engine(&unfused_onnx, classes)
            .run(&input, BATCH, SIZE, SIZE)
            .expect("unfused");
        drop(unfused_onnx);
        let b = engine(&fused_onnx, classes)
            .run(&input, BATCH, SIZE, SIZE)
            .expect("fused");
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let std = (a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / a.len() as f32).sqrt();
        let diff = max_abs_diff(&a, &b);
        eprintln!(
            "{}: logits std {std:.4}, max |fused - unfused| {diff:.3e}",
            v.name
        );
        assert!(std > 1e-3, "{}: degenerate logits (std {std})", v.name);
        assert!(
            diff <= 1e-4 * std,
            "{}: max diff {diff} > 1e-4 x std {std}",
            v.name
        );
    }
}

/// The checkpoint is read once: hash, allowlist check and tensors all come from the same bytes,
/// so a file replaced (or removed) on disk after it was read cannot change the loaded weights.
#[test]
fn a_checkpoint_changed_after_it_was_read_cannot_change_the_loaded_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.pth");
    std::fs::copy(fixture("checkpoints/tiny_official_train.pth"), &path).expect("copy");
    let bytes = std::fs::read(&path).expect("read");
    let before = model::Checkpoint::from_bytes(&path, &bytes).expect("load");
    // Other weights under the same name (the fused form: other tensors), then no file at all.
    std::fs::copy(fixture("checkpoints/tiny_official_deploy.pth"), &path).expect("replace");
    let replaced = model::Checkpoint::from_bytes(&path, &bytes).expect("load from the bytes");
    std::fs::remove_file(&path).expect("remove");
    let removed = model::Checkpoint::from_bytes(&path, &bytes).expect("load from the bytes");
    for after in [replaced, removed] {
        assert_eq!(after.sha256, before.sha256);
        assert_eq!(
            after.tensors.keys().collect::<Vec<_>>(),
            before.tensors.keys().collect::<Vec<_>>()
        );
        for (name, tensor) in &before.tensors {
            assert_eq!(after.tensors[name].shape, tensor.shape, "{name}");
            assert_eq!(after.tensors[name].data, tensor.data, "{name}");
        }
    }
}
