//! The named RepVGG variants of the paper and the official code.

use super::arch::{Architecture, BlockSpec};

/// One named variant: stage depths, width multipliers, grouping and SE.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub name: &'static str,
    /// Blocks in stages 1..4 (the stem is always one block).
    pub depths: [usize; 4],
    /// Width multiplier `a` of stages 1..3 (and the stem, capped at 64 channels).
    pub a: f64,
    /// Width multiplier `b` of stage 4.
    pub b: f64,
    /// Groups of the grouped blocks (global indices 2, 4, 6, ...), 1 for none.
    pub groups: usize,
    /// D2se: an SE block (reduction 16) in every block.
    pub se: bool,
    /// Evaluation resize and crop (320/320 for D2se, 256/224 otherwise).
    pub resize: u32,
    pub crop: u32,
}

const A: [usize; 4] = [2, 4, 14, 1];
const B: [usize; 4] = [4, 6, 16, 1];

const fn v(name: &'static str, depths: [usize; 4], a: f64, b: f64, groups: usize) -> Variant {
    Variant {
        name,
        depths,
        a,
        b,
        groups,
        se: false,
        resize: 256,
        crop: 224,
    }
}

pub const VARIANTS: [Variant; 14] = [
    v("A0", A, 0.75, 2.5, 1),
    v("A1", A, 1.0, 2.5, 1),
    v("A2", A, 1.5, 2.75, 1),
    v("B0", B, 1.0, 2.5, 1),
    v("B1", B, 2.0, 4.0, 1),
    v("B1g2", B, 2.0, 4.0, 2),
    v("B1g4", B, 2.0, 4.0, 4),
    v("B2", B, 2.5, 5.0, 1),
    v("B2g2", B, 2.5, 5.0, 2),
    v("B2g4", B, 2.5, 5.0, 4),
    v("B3", B, 3.0, 5.0, 1),
    v("B3g2", B, 3.0, 5.0, 2),
    v("B3g4", B, 3.0, 5.0, 4),
    Variant {
        se: true,
        resize: 320,
        crop: 320,
        ..v("D2se", [8, 14, 24, 1], 2.5, 5.0, 1)
    },
];

pub fn names() -> Vec<&'static str> {
    VARIANTS.iter().map(|v| v.name).collect()
}

/// Looks a variant up by name, case-insensitively (`a0`, `RepVGG-A0` and `repvgg_a0` all work).
pub fn find(name: &str) -> Option<&'static Variant> {
    let lower = name.to_ascii_lowercase();
    let bare = lower
        .strip_prefix("repvgg-")
        .or_else(|| lower.strip_prefix("repvgg_"))
        .unwrap_or(&lower);
    VARIANTS.iter().find(|v| v.name.eq_ignore_ascii_case(bare))
}

impl Variant {
    /// The variant's architecture with a head of `num_classes`.
    pub fn architecture(&self, num_classes: usize) -> Architecture {
        let widths = [
            (64.0 * self.a).min(64.0) as usize,
            (64.0 * self.a) as usize,
            (128.0 * self.a) as usize,
            (256.0 * self.a) as usize,
            (512.0 * self.b) as usize,
        ];
        let se = |channels: usize| self.se.then_some(channels / 16);
        let mut stages = vec![vec![BlockSpec::new(3, widths[0], 2, 1, se(widths[0]))]];
        let mut in_channels = widths[0];
        let mut global_index = 1;
        for (stage, &depth) in self.depths.iter().enumerate() {
            let width = widths[stage + 1];
            let blocks = (0..depth)
                .map(|j| {
                    let groups = if global_index % 2 == 0 {
                        self.groups
                    } else {
                        1
                    };
                    let stride = if j == 0 { 2 } else { 1 };
                    let block = BlockSpec::new(in_channels, width, stride, groups, se(width));
                    in_channels = width;
                    global_index += 1;
                    block
                })
                .collect();
            stages.push(blocks);
        }
        Architecture {
            stages,
            num_classes,
        }
    }
}

/// The named variant with `arch`'s body (any number of classes), if there is one.
pub fn of(arch: &Architecture) -> Option<&'static Variant> {
    VARIANTS
        .iter()
        .find(|v| v.architecture(arch.num_classes).stages == arch.stages)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let arch = find(name).expect(name).architecture(1000);
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
            assert_eq!(of(&arch).map(|v| v.name), Some(name));
        }
    }
}
