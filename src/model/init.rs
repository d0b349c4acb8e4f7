//! Random training-form weights for demos, tests and benchmarks, deterministic per seed.
//!
//! BatchNorm statistics and affine parameters are randomised (not the near-identity defaults),
//! so a wrong fusion shows up in the logits instead of hiding behind gamma = 1, mean = 0.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use std::path::PathBuf;

use super::arch::Architecture;
use super::variants::Variant;
use super::{Checkpoint, Dialect, Tensor};

/// A training-form checkpoint with random weights, in memory.
pub fn random_checkpoint(v: &Variant, seed: u64, num_classes: usize) -> Checkpoint {
    Checkpoint {
        path: PathBuf::from(format!("<random {} seed {seed}>", v.name)),
        sha256: String::new(),
        dialect: Dialect::Official,
        tensors: random_training_weights(&v.architecture(num_classes), seed),
    }
}

/// Official-name tensors of a training-form network with random weights.
pub fn random_training_weights(arch: &Architecture, seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    let mut prefixes = vec!["stage0".to_owned()];
    for (s, blocks) in arch.stages.iter().enumerate().skip(1) {
        prefixes.extend((0..blocks.len()).map(|j| format!("stage{s}.{j}")));
    }
    for (prefix, spec) in prefixes.iter().zip(arch.blocks()) {
        let (o, i) = (spec.out_channels, spec.in_per_group());
        out.insert(
            format!("{prefix}.rbr_dense.conv.weight"),
            normal(&mut rng, vec![o, i, 3, 3], (2.0 / (9 * i) as f32).sqrt()),
        );
        out.insert(
            format!("{prefix}.rbr_1x1.conv.weight"),
            normal(&mut rng, vec![o, i, 1, 1], (2.0 / i as f32).sqrt()),
        );
        let mut bns = vec![
            format!("{prefix}.rbr_dense.bn"),
            format!("{prefix}.rbr_1x1.bn"),
        ];
        if spec.identity {
            bns.push(format!("{prefix}.rbr_identity"));
        }
        for bn in bns {
            // Three branches are summed: gammas around 1/sqrt(3) keep activations in range.
            out.insert(format!("{bn}.weight"), uniform(&mut rng, o, 0.3, 0.8));
            out.insert(format!("{bn}.bias"), normal(&mut rng, vec![o], 0.1));
            out.insert(format!("{bn}.running_mean"), normal(&mut rng, vec![o], 0.2));
            out.insert(format!("{bn}.running_var"), uniform(&mut rng, o, 0.5, 2.0));
        }
        if let Some(h) = spec.se_channels {
            out.insert(
                format!("{prefix}.se.down.weight"),
                normal(&mut rng, vec![h, o, 1, 1], (1.0 / o as f32).sqrt()),
            );
            out.insert(
                format!("{prefix}.se.down.bias"),
                normal(&mut rng, vec![h], 0.1),
            );
            out.insert(
                format!("{prefix}.se.up.weight"),
                normal(&mut rng, vec![o, h, 1, 1], (1.0 / h as f32).sqrt()),
            );
            out.insert(
                format!("{prefix}.se.up.bias"),
                normal(&mut rng, vec![o], 0.1),
            );
        }
    }
    let features = arch.features();
    out.insert(
        "linear.weight".into(),
        normal(
            &mut rng,
            vec![arch.num_classes, features],
            (1.0 / features as f32).sqrt(),
        ),
    );
    out.insert(
        "linear.bias".into(),
        normal(&mut rng, vec![arch.num_classes], 0.01),
    );
    out
}

fn normal(rng: &mut ChaCha8Rng, shape: Vec<usize>, std: f32) -> Tensor {
    let dist = Normal::new(0.0, std).expect("a positive standard deviation");
    let len = shape.iter().product();
    Tensor::new(shape, (0..len).map(|_| dist.sample(rng)).collect())
}

fn uniform(rng: &mut ChaCha8Rng, len: usize, low: f32, high: f32) -> Tensor {
    Tensor::new(
        vec![len],
        (0..len).map(|_| rng.random_range(low..high)).collect(),
    )
}
