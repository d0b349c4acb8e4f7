//! Tensor names: unwrapping training-script prefixes and translating timm's naming into the
//! official one, which the rest of the model layer uses.

use serde::{Deserialize, Serialize};

/// The naming scheme a checkpoint was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// DingXiaoH/RepVGG `repvgg.py`: `stage0`, `stage1.0.rbr_dense`, `linear`.
    Official,
    /// timm `byobnet.py`: `stem`, `stages.0.0.conv_kxk`, `head.fc`.
    Timm,
}

/// Name components that differ between the dialects, as `(official, timm)`, matched on whole
/// dot-separated components.
const RENAMES: &[(&str, &str)] = &[
    (".rbr_dense.", ".conv_kxk."),
    (".rbr_1x1.", ".conv_1x1."),
    (".rbr_identity.", ".identity."),
    (".rbr_reparam.", ".reparam_conv."),
    (".se.down.", ".attn.fc1."),
    (".se.up.", ".attn.fc2."),
    (".linear.", ".head.fc."),
    (".stage0.", ".stem."),
];

impl Dialect {
    /// Detects the dialect from the (already unwrapped) names.
    pub fn detect<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<Self> {
        names.find_map(|name| {
            if name.starts_with("stage0.") || name.starts_with("stage1.") {
                Some(Self::Official)
            } else if name.starts_with("stem.") || name.starts_with("stages.") {
                Some(Self::Timm)
            } else {
                None
            }
        })
    }

    /// Translates a name of this dialect into the official name.
    pub fn to_official(self, name: &str) -> String {
        match self {
            Self::Official => name.to_owned(),
            Self::Timm => translate(
                name,
                |(official, timm)| (timm, official),
                |stage| {
                    // `stages.K.` -> `stageK+1.`
                    let rest = stage.strip_prefix(".stages.")?;
                    let (index, tail) = rest.split_once('.')?;
                    let index: usize = index.parse().ok()?;
                    Some(format!(".stage{}.{tail}", index + 1))
                },
            ),
        }
    }

    /// Translates an official name into this dialect, for error messages.
    pub fn from_official(self, name: &str) -> String {
        match self {
            Self::Official => name.to_owned(),
            Self::Timm => translate(
                name,
                |pair| pair,
                |stage| {
                    let rest = stage.strip_prefix(".stage")?;
                    let (index, tail) = rest.split_once('.')?;
                    let index: usize = index.parse().ok()?;
                    (index > 0).then(|| format!(".stages.{}.{tail}", index - 1))
                },
            ),
        }
    }
}

/// Applies [`RENAMES`] in the direction `direction` picks, then the stage-index rewrite.
fn translate(
    name: &str,
    direction: impl Fn((&'static str, &'static str)) -> (&'static str, &'static str),
    stage: impl Fn(&str) -> Option<String>,
) -> String {
    let mut dotted = format!(".{name}.");
    for &pair in RENAMES {
        let (from, to) = direction(pair);
        dotted = dotted.replace(from, to);
    }
    if let Some(rewritten) = stage(&dotted) {
        dotted = rewritten;
    }
    dotted[1..dotted.len() - 1].to_owned()
}

/// Removes the `module.` prefixes DataParallel and DistributedDataParallel add.
pub fn strip_wrappers(name: &str) -> &str {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("module.") {
        name = rest;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timm_names_translate_both_ways() {
        let pairs = [
            ("stem.conv_kxk.conv.weight", "stage0.rbr_dense.conv.weight"),
            (
                "stages.0.1.identity.running_var",
                "stage1.1.rbr_identity.running_var",
            ),
            ("stages.3.0.conv_1x1.bn.bias", "stage4.0.rbr_1x1.bn.bias"),
            (
                "stages.2.5.reparam_conv.weight",
                "stage3.5.rbr_reparam.weight",
            ),
            ("stages.1.0.attn.fc2.bias", "stage2.0.se.up.bias"),
            ("head.fc.weight", "linear.weight"),
        ];
        for (timm, official) in pairs {
            assert_eq!(Dialect::Timm.to_official(timm), official);
            assert_eq!(Dialect::Timm.from_official(official), timm);
        }
    }

    #[test]
    fn detects_dialect_and_strips_module_prefix() {
        assert_eq!(strip_wrappers("module.module.stage0.x"), "stage0.x");
        assert_eq!(
            Dialect::detect(["linear.weight", "stage0.rbr_dense.conv.weight"].into_iter()),
            Some(Dialect::Official)
        );
        assert_eq!(
            Dialect::detect(["head.fc.weight", "stem.conv_kxk.conv.weight"].into_iter()),
            Some(Dialect::Timm)
        );
        assert_eq!(Dialect::detect(["fc.weight"].into_iter()), None);
    }
}
