//! Structural re-parameterisation: each training block's three branches become one 3x3 conv
//! with bias, exactly as in the RepVGG paper and the official code.
//!
//! For conv + BN with `t = gamma / sqrt(var + eps)`: kernel' = kernel * t (per output channel)
//! and bias' = beta - mean * t. The 1x1 kernel is zero-padded to 3x3 (centre tap); the identity
//! BN is a 3x3 kernel with 1 at `[i, i % (C / groups), 1, 1]`. The three are summed. Arithmetic
//! is done in f64 and rounded once to f32. SE blocks are not fusable and are kept as they are.

use super::weights::{BatchNorm, Branches, ConvBn, RepVgg};
use super::{Form, Tensor};

/// BatchNorm epsilon: PyTorch's default, which RepVGG uses everywhere. Not stored in checkpoints.
pub const BN_EPS: f64 = 1e-5;

impl RepVgg {
    /// The single-branch deploy network. A deploy checkpoint is returned as it is.
    pub fn fused(self) -> RepVgg {
        let blocks = self
            .blocks
            .into_iter()
            .map(|mut block| {
                if let Branches::Train {
                    dense,
                    one_by_one,
                    identity,
                } = &block.branches
                {
                    let in_per_group = block.spec.in_per_group();
                    let (kernel, bias) =
                        fuse_block(dense, one_by_one, identity.as_ref(), in_per_group);
                    block.branches = Branches::Deploy { kernel, bias };
                }
                block
            })
            .collect();
        RepVgg {
            form: Form::Deploy,
            blocks,
            ..self
        }
    }
}

/// Sums the fused 3x3, 1x1 and identity branches into one `[out, in/g, 3, 3]` kernel and bias.
fn fuse_block(
    dense: &ConvBn,
    one_by_one: &ConvBn,
    identity: Option<&BatchNorm>,
    in_per_group: usize,
) -> (Tensor, Vec<f32>) {
    let out = dense.kernel.shape[0];
    let taps = in_per_group * 9;
    let mut kernel = vec![0f64; out * taps];
    let mut bias = vec![0f64; out];

    let mut add_branch = |bn: &BatchNorm, tap: &dyn Fn(usize, usize, usize) -> f64| {
        for o in 0..out {
            let t = f64::from(bn.gamma[o]) / (f64::from(bn.var[o]) + BN_EPS).sqrt();
            bias[o] += f64::from(bn.beta[o]) - f64::from(bn.mean[o]) * t;
            for i in 0..in_per_group {
                for k in 0..9 {
                    kernel[o * taps + i * 9 + k] += tap(o, i, k) * t;
                }
            }
        }
    };
    add_branch(&dense.bn, &|o, i, k| {
        f64::from(dense.kernel.data[o * taps + i * 9 + k])
    });
    // The 1x1 kernel sits at the centre tap (k = 4) of the 3x3 window.
    add_branch(&one_by_one.bn, &|o, i, k| {
        if k == 4 {
            f64::from(one_by_one.kernel.data[o * in_per_group + i])
        } else {
            0.0
        }
    });
    if let Some(bn) = identity {
        add_branch(bn, &|o, i, k| {
            if k == 4 && i == o % in_per_group {
                1.0
            } else {
                0.0
            }
        });
    }
    (
        Tensor::new(
            vec![out, in_per_group, 3, 3],
            kernel.into_iter().map(|v| v as f32).collect(),
        ),
        bias.into_iter().map(|v| v as f32).collect(),
    )
}
