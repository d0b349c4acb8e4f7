//! Typed RepVGG weights read from a checkpoint's tensors. The architecture is inferred from
//! names and shapes (depths from block indices, widths and groups from kernel shapes, identity
//! and SE from which tensors exist, classes from the head), so fine-tuned models load.

use serde::{Deserialize, Serialize};

use super::arch::{Architecture, BlockSpec};
use super::checkpoint::Checkpoint;
use super::{ModelError, Tensor};

/// Whether a checkpoint holds the three training branches or the fused deploy kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    Train,
    Deploy,
}

/// BatchNorm in eval mode: affine parameters and running statistics.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// A bias-free convolution followed by BatchNorm.
#[derive(Clone, Debug)]
pub struct ConvBn {
    pub kernel: Tensor,
    pub bn: BatchNorm,
}

/// Squeeze-and-excitation: 1x1 convs `down` (C -> C/16) and `up` (C/16 -> C), both with bias.
#[derive(Clone, Debug)]
pub struct Se {
    pub down: Tensor,
    pub down_bias: Vec<f32>,
    pub up: Tensor,
    pub up_bias: Vec<f32>,
}

/// One block's convolution(s). Held once per block at load time, so the size difference
/// between the forms does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Branches {
    Train {
        dense: ConvBn,
        one_by_one: ConvBn,
        identity: Option<BatchNorm>,
    },
    Deploy {
        kernel: Tensor,
        bias: Vec<f32>,
    },
}

#[derive(Clone, Debug)]
pub struct Block {
    pub spec: BlockSpec,
    pub branches: Branches,
    pub se: Option<Se>,
}

/// A whole network with its weights, in either form.
#[derive(Clone, Debug)]
pub struct RepVgg {
    pub arch: Architecture,
    pub form: Form,
    pub blocks: Vec<Block>,
    pub head: Tensor,
    pub head_bias: Vec<f32>,
}

impl RepVgg {
    /// Builds the typed network from a checkpoint, checking every shape. Tensors the network
    /// does not use are an error, so a file of some other model is never half-loaded.
    pub fn from_checkpoint(ckpt: Checkpoint) -> Result<Self, ModelError> {
        let mut reader = Reader { ckpt };
        reader.refuse_empty()?;
        let form = reader.form()?;
        let prefixes = reader.block_prefixes()?;
        let mut blocks = Vec::with_capacity(prefixes.len());
        let mut stages: Vec<Vec<BlockSpec>> = vec![Vec::new(); 5];
        let mut in_channels = 3;
        for (stage, index, prefix) in &prefixes {
            let stride = if *index == 0 { 2 } else { 1 };
            let block = reader.block(prefix, form, in_channels, stride)?;
            in_channels = block.spec.out_channels;
            stages[*stage].push(block.spec.clone());
            blocks.push(block);
        }
        let head = reader.take("linear.weight", None)?;
        let [num_classes, features] = head.shape[..] else {
            return Err(reader.wrong_shape("linear.weight", vec![0, in_channels], &head));
        };
        if features != in_channels {
            return Err(reader.wrong_shape("linear.weight", vec![num_classes, in_channels], &head));
        }
        let head_bias = reader.take("linear.bias", Some(&[num_classes]))?.data;
        reader.finish()?;
        Ok(Self {
            arch: Architecture {
                stages,
                num_classes,
            },
            form,
            blocks,
            head,
            head_bias,
        })
    }
}

/// Takes tensors out of a checkpoint by official name; what is left at the end was not used.
struct Reader {
    ckpt: Checkpoint,
}

impl Reader {
    fn display_name(&self, official: &str) -> String {
        self.ckpt.dialect.from_official(official)
    }

    fn layout_error(&self, detail: String) -> ModelError {
        ModelError::UnknownLayout {
            path: self.ckpt.path.clone(),
            detail,
        }
    }

    fn wrong_shape(&self, name: &str, expected: Vec<usize>, actual: &Tensor) -> ModelError {
        ModelError::WrongShape {
            path: self.ckpt.path.clone(),
            tensor: self.display_name(name),
            expected,
            actual: actual.shape.clone(),
        }
    }

    /// Scalars and tensors with a zero dimension (a 0-class head, a 0-channel conv) fit no
    /// RepVGG layer; refused up front, before any shape arithmetic could divide by them.
    fn refuse_empty(&self) -> Result<(), ModelError> {
        match self
            .ckpt
            .tensors
            .iter()
            .find(|(_, t)| t.shape.is_empty() || t.shape.contains(&0))
        {
            Some((name, t)) => Err(ModelError::EmptyTensor {
                path: self.ckpt.path.clone(),
                tensor: self.display_name(name),
                shape: t.shape.clone(),
            }),
            None => Ok(()),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.ckpt.tensors.contains_key(name)
    }

    /// Takes a tensor, checking its shape when `shape` is given.
    fn take(&mut self, name: &str, shape: Option<&[usize]>) -> Result<Tensor, ModelError> {
        let tensor = self
            .ckpt
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.ckpt.path.clone(),
                tensor: self.display_name(name),
            })?;
        match shape {
            Some(shape) if tensor.shape != shape => {
                Err(self.wrong_shape(name, shape.to_vec(), &tensor))
            }
            _ => Ok(tensor),
        }
    }

    fn form(&self) -> Result<Form, ModelError> {
        let any = |part: &str| self.ckpt.tensors.keys().any(|k| k.contains(part));
        match (any(".rbr_dense."), any(".rbr_reparam.")) {
            (true, false) => Ok(Form::Train),
            (false, true) => Ok(Form::Deploy),
            (true, true) => Err(self.layout_error(
                "both training branches and fused kernels: a partly re-parameterised model".into(),
            )),
            (false, false) => Err(self.layout_error(
                "neither training branches (rbr_dense/conv_kxk) nor fused kernels \
                 (rbr_reparam/reparam_conv)"
                    .into(),
            )),
        }
    }

    /// `(stage, index within stage, prefix)` of every block, in network order.
    fn block_prefixes(&self) -> Result<Vec<(usize, usize, String)>, ModelError> {
        let mut prefixes = vec![(0, 0, "stage0".to_owned())];
        for stage in 1..=4 {
            let start = format!("stage{stage}.");
            let indices: std::collections::BTreeSet<usize> = self
                .ckpt
                .tensors
                .keys()
                .filter_map(|k| k.strip_prefix(&start)?.split('.').next()?.parse().ok())
                .collect();
            if indices.is_empty() {
                return Err(self.layout_error(format!("no blocks in stage {stage}")));
            }
            if indices.iter().copied().ne(0..indices.len()) {
                return Err(self.layout_error(format!(
                    "stage {stage} block indices are not 0..n: {indices:?}"
                )));
            }
            prefixes.extend(
                indices
                    .into_iter()
                    .map(|j| (stage, j, format!("stage{stage}.{j}"))),
            );
        }
        Ok(prefixes)
    }

    fn block(
        &mut self,
        prefix: &str,
        form: Form,
        in_channels: usize,
        stride: usize,
    ) -> Result<Block, ModelError> {
        let main = match form {
            Form::Train => format!("{prefix}.rbr_dense.conv.weight"),
            Form::Deploy => format!("{prefix}.rbr_reparam.weight"),
        };
        let kernel = self.take(&main, None)?;
        let [out, in_per_group, 3, 3] = kernel.shape[..] else {
            return Err(self.wrong_shape(&main, vec![0, in_channels, 3, 3], &kernel));
        };
        if in_per_group == 0
            || !in_channels.is_multiple_of(in_per_group)
            || out % (in_channels / in_per_group) != 0
        {
            return Err(self.wrong_shape(&main, vec![out, in_channels, 3, 3], &kernel));
        }
        let groups = in_channels / in_per_group;
        let se_channels = self
            .ckpt
            .tensors
            .get(&format!("{prefix}.se.down.weight"))
            .map(|t| t.shape[0]);
        let mut spec = BlockSpec::new(in_channels, out, stride, groups, se_channels);
        let branches = match form {
            Form::Deploy => Branches::Deploy {
                kernel,
                bias: self
                    .take(&format!("{prefix}.rbr_reparam.bias"), Some(&[out]))?
                    .data,
            },
            Form::Train => {
                let has_identity = self.has(&format!("{prefix}.rbr_identity.running_var"));
                if has_identity && !spec.identity {
                    return Err(self.layout_error(format!(
                        "`{}` has an identity branch but changes shape ({in_channels} -> {out} \
                         channels, stride {stride})",
                        self.display_name(prefix)
                    )));
                }
                spec.identity = has_identity;
                Branches::Train {
                    dense: ConvBn {
                        kernel,
                        bn: self.bn(&format!("{prefix}.rbr_dense.bn"), out)?,
                    },
                    one_by_one: ConvBn {
                        kernel: self.take(
                            &format!("{prefix}.rbr_1x1.conv.weight"),
                            Some(&[out, in_per_group, 1, 1]),
                        )?,
                        bn: self.bn(&format!("{prefix}.rbr_1x1.bn"), out)?,
                    },
                    identity: has_identity
                        .then(|| self.bn(&format!("{prefix}.rbr_identity"), out))
                        .transpose()?,
                }
            }
        };
        let se = se_channels
            .map(|hidden| {
                Ok::<_, ModelError>(Se {
                    down: self.take(
                        &format!("{prefix}.se.down.weight"),
                        Some(&[hidden, out, 1, 1]),
                    )?,
                    down_bias: self
                        .take(&format!("{prefix}.se.down.bias"), Some(&[hidden]))?
                        .data,
                    up: self.take(
                        &format!("{prefix}.se.up.weight"),
                        Some(&[out, hidden, 1, 1]),
                    )?,
                    up_bias: self
                        .take(&format!("{prefix}.se.up.bias"), Some(&[out]))?
                        .data,
                })
            })
            .transpose()?;
        Ok(Block { spec, branches, se })
    }

    fn bn(&mut self, prefix: &str, channels: usize) -> Result<BatchNorm, ModelError> {
        let shape = [channels];
        let mut part = |name: &str| -> Result<Vec<f32>, ModelError> {
            Ok(self.take(&format!("{prefix}.{name}"), Some(&shape))?.data)
        };
        Ok(BatchNorm {
            gamma: part("weight")?,
            beta: part("bias")?,
            mean: part("running_mean")?,
            var: part("running_var")?,
        })
    }

    fn finish(self) -> Result<(), ModelError> {
        if self.ckpt.tensors.is_empty() {
            return Ok(());
        }
        let unused: Vec<String> = self
            .ckpt
            .tensors
            .keys()
            .take(5)
            .map(|n| self.display_name(n))
            .collect();
        Err(self.layout_error(format!(
            "{} tensors a RepVGG network does not use, e.g. {unused:?}",
            self.ckpt.tensors.len()
        )))
    }
}
