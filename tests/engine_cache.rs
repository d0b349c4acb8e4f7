//! The start-up cache never serves stale work: a checkpoint changed on disk is fused again, and
//! an optimised graph made for another runtime build, precision or CPU is never read.

mod common;

use std::path::{Path, PathBuf};

use common::{fixture, max_abs_diff, reference_crop_tensor};
use repvgg_serve::inference::{Backend, EngineConfig, SharedModel};
use repvgg_serve::model::{self, sha256_file, ModelSource};

const IMAGE: &str = "chelsea.png";
/// Two fusions of the same bytes run the same float operations.
const SAME: f32 = 1e-5;

/// Logits of `checkpoint` for the reference crop, served the way the server serves them.
fn logits(checkpoint: &Path, cache: Option<&Path>) -> (Vec<f32>, bool, bool) {
    let prepared = model::prepare(&ModelSource::Checkpoint(checkpoint.to_owned()), cache)
        .unwrap_or_else(|e| panic!("{e}"));
    let shared = SharedModel::load(&prepared, None).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = shared
        .session(&EngineConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let size = prepared.info.crop as usize;
    let logits = engine
        .run(&reference_crop_tensor(IMAGE), 1, size, size)
        .unwrap_or_else(|e| panic!("{e}"));
    (logits, prepared.from_cache, shared.from_cache())
}

#[test]
fn checkpoint_changed_after_a_cached_start_is_fused_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let checkpoint = dir.path().join("model.pth");
    std::fs::copy(fixture("checkpoints/tiny_official_train.pth"), &checkpoint).expect("copy");
    let (before, _, _) = logits(&checkpoint, Some(&cache));
    let (cached, fused_cached, optimised_cached) = logits(&checkpoint, Some(&cache));
    assert!(
        fused_cached && optimised_cached,
        "second start is served from the cache"
    );
    assert!(max_abs_diff(&before, &cached) <= SAME);

    // The same path, other weights (the fp16 copy of the fixture: every weight rounded).
    let replacement = fixture("checkpoints/tiny_timm_fp16.safetensors");
    std::fs::copy(&replacement, &checkpoint).expect("replace");
    let (after, fused_cached, optimised_cached) = logits(&checkpoint, Some(&cache));
    assert!(!fused_cached, "a changed checkpoint must be fused again");
    assert!(
        !optimised_cached,
        "a changed checkpoint must be optimised again"
    );
    let (fresh, _, _) = logits(&replacement, None);
    assert!(
        max_abs_diff(&after, &fresh) <= SAME,
        "served logits are not the new checkpoint's"
    );
    assert!(
        max_abs_diff(&after, &before) > 1e-4,
        "the two checkpoints must differ for this test to mean anything"
    );
    let entries = std::fs::read_dir(&cache).expect("cache").count();
    assert_eq!(entries, 6, "two entries of graph, facts and derived folder");
    let sha = sha256_file(&checkpoint).expect("hash");
    assert!(cache
        .join(format!("{sha}-v{}.onnx", env!("CARGO_PKG_VERSION")))
        .is_file());
}

/// The one optimised-graph folder of the only cache entry.
fn optimised_dir(cache: &Path) -> PathBuf {
    let engines: Vec<PathBuf> = std::fs::read_dir(cache)
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "engines"))
        .collect();
    let [engines] = engines.as_slice() else {
        panic!("one derived folder expected: {engines:?}");
    };
    let dirs: Vec<PathBuf> = std::fs::read_dir(engines)
        .expect("engines")
        .map(|e| e.expect("entry").path())
        .collect();
    let [dir] = dirs.as_slice() else {
        panic!("one optimised graph expected: {dirs:?}");
    };
    dir.clone()
}

/// A change to a stored manifest, named by what it changes.
type ManifestEdit = fn(&mut serde_json::Value);

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("JSON");
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec(&manifest).expect("JSON")).expect("write");
}

/// Makes the stored weights wrong, so that reading them would show in the logits.
fn spoil_weights(dir: &Path) {
    let path = dir.join("weights.bin");
    let len = std::fs::metadata(&path).expect("weights").len();
    std::fs::write(&path, vec![0u8; len as usize]).expect("write");
}

#[test]
fn optimised_graph_of_another_runtime_precision_or_cpu_is_not_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let checkpoint = fixture("checkpoints/tiny_official_train.pth");
    let (reference, _, optimised_cached) = logits(&checkpoint, Some(&cache));
    assert!(!optimised_cached);
    let entry = optimised_dir(&cache);
    let name = entry
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert!(
        name.starts_with("ort-1.31.1-fp32-"),
        "entry named by runtime version and precision: {name}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    assert_eq!(manifest["key"]["precision"], "fp32");

    let edits: [(&str, ManifestEdit); 3] = [
        ("precision", |m| m["key"]["precision"] = "bf16".into()),
        ("runtime", |m| {
            let r = m["key"]["runtime"]
                .as_str()
                .expect("runtime")
                .replace("1.31.1", "1.30.0");
            m["key"]["runtime"] = r.into();
        }),
        ("cpu", |m| {
            m["key"]["cpu"] = "x86_64 | another CPU | sse2".into()
        }),
    ];
    for (what, edit) in edits {
        // An entry under this process's folder name that was made for another key (a hash
        // collision, a copied cache): not read, rebuilt.
        spoil_weights(&entry);
        edit_manifest(&entry, edit);
        let (served, _, optimised_cached) = logits(&checkpoint, Some(&cache));
        assert!(
            !optimised_cached,
            "entry made for another {what} was reused"
        );
        assert!(
            max_abs_diff(&served, &reference) <= SAME,
            "wrong logits after another {what}'s entry"
        );
        assert_eq!(optimised_dir(&cache), entry);
    }

    // Another runtime's entry beside ours (as after an upgrade): ours is made, theirs untouched.
    let other = entry.with_file_name("ort-1.30.0-fp32-0123456789abcdef");
    std::fs::rename(&entry, &other).expect("rename");
    spoil_weights(&other);
    let (served, _, optimised_cached) = logits(&checkpoint, Some(&cache));
    assert!(!optimised_cached, "another runtime's entry was reused");
    assert!(max_abs_diff(&served, &reference) <= SAME);
    assert!(entry.join("manifest.json").is_file() && other.join("manifest.json").is_file());

    // And the rebuilt entry is used from then on.
    let (served, _, optimised_cached) = logits(&checkpoint, Some(&cache));
    assert!(optimised_cached);
    assert!(max_abs_diff(&served, &reference) <= SAME);
}
