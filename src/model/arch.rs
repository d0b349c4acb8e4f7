//! The shape of a RepVGG network: blocks per stage, channels, strides, groups, identity
//! branches and SE, plus the parameter and multiply-add counts that follow from it.

use serde::Serialize;

use super::variants::{Variant, VARIANTS};

/// One block: a 3x3 conv (with, in training form, a 1x1 branch and maybe an identity branch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub stride: usize,
    pub groups: usize,
    /// The identity (BN-only) branch: only when in == out and stride == 1.
    pub identity: bool,
    /// Hidden channels of the SE block, when there is one (D2se).
    pub se_channels: Option<usize>,
}

impl BlockSpec {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        groups: usize,
        se_channels: Option<usize>,
    ) -> Self {
        Self {
            in_channels,
            out_channels,
            stride,
            groups,
            identity: in_channels == out_channels && stride == 1,
            se_channels,
        }
    }

    /// Input channels each output channel sees (`in / groups`).
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    fn se_params(&self) -> usize {
        self.se_channels
            .map_or(0, |h| 2 * self.out_channels * h + h + self.out_channels)
    }
}

/// The whole network. `stages[0]` is the stem (one block); stages 1..4 follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Architecture {
    pub stages: Vec<Vec<BlockSpec>>,
    pub num_classes: usize,
}

/// Per-stage summary for `inspect`.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    pub depth: usize,
    pub width: usize,
    /// Largest group count in the stage (1: no grouped conv).
    pub groups: usize,
    /// Group count of every block, in order.
    pub block_groups: Vec<usize>,
}

impl Architecture {
    pub fn blocks(&self) -> impl Iterator<Item = &BlockSpec> {
        self.stages.iter().flatten()
    }

    pub fn features(&self) -> usize {
        self.blocks().last().map_or(0, |b| b.out_channels)
    }

    pub fn head_params(&self) -> usize {
        self.features() * self.num_classes + self.num_classes
    }

    /// Parameters of the fused (deploy) network.
    pub fn params_deploy(&self) -> usize {
        let blocks: usize = self
            .blocks()
            .map(|b| b.out_channels * b.in_per_group() * 9 + b.out_channels + b.se_params())
            .sum();
        blocks + self.head_params()
    }

    /// Learnable parameters of the three-branch training network (BN running statistics are
    /// buffers, not parameters).
    pub fn params_train(&self) -> usize {
        let blocks: usize = self
            .blocks()
            .map(|b| {
                let convs = b.out_channels * b.in_per_group() * (9 + 1);
                let bns = 2 * b.out_channels * (2 + usize::from(b.identity));
                convs + bns + b.se_params()
            })
            .sum();
        blocks + self.head_params()
    }

    /// Floats of the largest block's input plus output for one square image of `size` pixels:
    /// what one image needs live at once, the unit of a session's activation memory.
    pub fn peak_block_io(&self, size: usize) -> usize {
        let mut side = size;
        let mut peak = 0;
        for b in self.blocks() {
            let input = b.in_channels * side * side;
            side = side.div_ceil(b.stride);
            peak = peak.max(input + b.out_channels * side * side);
        }
        peak
    }

    /// Multiply-adds of the fused network for a square input of `size` pixels.
    pub fn macs(&self, size: usize) -> usize {
        let mut side = size;
        let mut total = 0;
        for b in self.blocks() {
            side = side.div_ceil(b.stride);
            total += side * side * b.out_channels * b.in_per_group() * 9;
            total += b.se_channels.map_or(0, |h| 2 * b.out_channels * h);
        }
        total + self.features() * self.num_classes
    }

    pub fn stage_summaries(&self) -> Vec<StageSummary> {
        self.stages
            .iter()
            .map(|blocks| {
                let block_groups: Vec<usize> = blocks.iter().map(|b| b.groups).collect();
                StageSummary {
                    depth: blocks.len(),
                    width: blocks.last().map_or(0, |b| b.out_channels),
                    groups: block_groups.iter().copied().max().unwrap_or(1),
                    block_groups,
                }
            })
            .collect()
    }

    /// The named variant with this body (any number of classes), if there is one.
    pub fn variant(&self) -> Option<&'static Variant> {
        VARIANTS
            .iter()
            .find(|v| v.architecture(self.num_classes).stages == self.stages)
    }
}

#[cfg(test)]
mod tests {
    use super::super::variants;

    /// `params_deploy` (M) and `macs_224` (G) from the reference doc's table.
    const TABLE: [(&str, f64, f64, f64); 14] = [
        ("A0", 8.31, 9.11, 1.36),
        ("A1", 12.79, 14.09, 2.36),
        ("A2", 25.50, 28.21, 5.12),
        ("B0", 14.34, 15.82, 3.06),
        ("B1", 51.83, 57.42, 11.82),
        ("B1g2", 41.36, 45.78, 8.81),
        ("B1g4", 36.13, 39.97, 7.31),
        ("B2", 80.32, 89.02, 18.38),
        ("B2g2", 63.96, 70.85, 13.68),
        ("B2g4", 55.78, 61.76, 11.33),
        ("B3", 110.96, 123.09, 26.21),
        ("B3g2", 87.40, 96.91, 19.45),
        ("B3g4", 75.63, 83.83, 16.06),
        ("D2se", 120.39, 133.33, 32.83),
    ];

    #[test]
    fn counts_match_the_reference_table() {
        for (name, deploy_m, train_m, macs_g) in TABLE {
            let arch = variants::find(name).expect(name).architecture(1000);
            let round = |x: usize, unit: f64| (x as f64 / unit * 100.0).round() / 100.0;
            assert_eq!(
                round(arch.params_deploy(), 1e6),
                deploy_m,
                "{name} deploy params"
            );
            assert_eq!(
                round(arch.params_train(), 1e6),
                train_m,
                "{name} train params"
            );
            assert_eq!(round(arch.macs(224), 1e9), macs_g, "{name} MACs");
            assert_eq!(arch.variant().map(|v| v.name), Some(name));
        }
    }
}
