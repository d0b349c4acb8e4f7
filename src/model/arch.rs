//! The shape of a RepVGG network: blocks per stage, channels, strides, groups, identity
//! branches and SE, plus the parameter and multiply-add counts that follow from it.

use serde::Serialize;

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
}
