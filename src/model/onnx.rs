//! ONNX export: the network as an opset-17 `ModelProto` built from ONNX's own message
//! definitions (the `onnx-protobuf` crate), never from text templates.
//!
//! One `float32` NCHW input `input` with dynamic batch, height and width; one output `logits`
//! `[batch, classes]`. Deploy blocks become `Conv(3x3, bias) -> [SE] -> Relu`; training blocks
//! become `Conv3x3 -> BN`, `Conv1x1 -> BN`, `BN(x)` summed, then `[SE] -> Relu` (the unfused
//! graph tests and benchmarks compare against).

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{self, Value};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::fuse::BN_EPS;
use super::weights::{BatchNorm, Branches, RepVgg, Se};
use super::Tensor;

pub const OPSET: i64 = 17;
/// IR version 8 is the one ONNX pairs with opset 17.
const IR_VERSION: i64 = 8;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

/// Serialises the network (fused or not) with `metadata` as model properties.
pub fn export(model: &RepVgg, metadata: &[(&str, String)]) -> Vec<u8> {
    let mut graph = GraphBuilder::default();
    let mut x = INPUT.to_owned();
    for (i, block) in model.blocks.iter().enumerate() {
        let name = format!("block{i}");
        let (stride, groups) = (block.spec.stride as i64, block.spec.groups as i64);
        let summed = match &block.branches {
            Branches::Deploy { kernel, bias } => {
                graph.conv(&name, &x, kernel, Some(bias), stride, groups, 1)
            }
            Branches::Train {
                dense,
                one_by_one,
                identity,
            } => {
                let d = graph.conv(
                    &format!("{name}.dense"),
                    &x,
                    &dense.kernel,
                    None,
                    stride,
                    groups,
                    1,
                );
                let mut terms = vec![graph.batch_norm(&format!("{name}.dense.bn"), &d, &dense.bn)];
                let o = graph.conv(
                    &format!("{name}.1x1"),
                    &x,
                    &one_by_one.kernel,
                    None,
                    stride,
                    groups,
                    0,
                );
                terms.push(graph.batch_norm(&format!("{name}.1x1.bn"), &o, &one_by_one.bn));
                if let Some(bn) = identity {
                    terms.push(graph.batch_norm(&format!("{name}.identity"), &x, bn));
                }
                graph.node("Sum", &format!("{name}.sum"), &terms, vec![])
            }
        };
        let activated = match &block.se {
            Some(se) => graph.se(&format!("{name}.se"), &summed, se),
            None => summed,
        };
        x = graph.node("Relu", &format!("{name}.relu"), &[activated], vec![]);
    }
    let pooled = graph.node("GlobalAveragePool", "head.pool", &[x], vec![]);
    let flat = graph.node("Flatten", "head.flatten", &[pooled], vec![int("axis", 1)]);
    let w = graph.initializer("head.weight", &model.head);
    let b = graph.initializer(
        "head.bias",
        &Tensor::new(vec![model.head_bias.len()], model.head_bias.clone()),
    );
    let gemm = graph.node("Gemm", "head.fc", &[flat, w, b], vec![int("transB", 1)]);
    graph.rename_last_output(&gemm, OUTPUT);

    let proto = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: env!("CARGO_PKG_NAME").into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph.finish(model.arch.num_classes)).into(),
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: (*key).into(),
                value: value.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    proto
        .write_to_bytes()
        .expect("writing a ModelProto to memory cannot fail")
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    fn initializer(&mut self, name: &str, tensor: &Tensor) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: tensor.shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::FLOAT as i32,
            raw_data: tensor.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.into()
    }

    fn vector(&mut self, name: &str, values: &[f32]) -> String {
        self.initializer(name, &Tensor::new(vec![values.len()], values.to_vec()))
    }

    /// Adds a node whose single output is named after the node; returns that name.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[String],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.to_vec(),
            output: vec![name.into()],
            attribute: attrs,
            ..Default::default()
        });
        name.into()
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: &str,
        kernel: &Tensor,
        bias: Option<&[f32]>,
        stride: i64,
        groups: i64,
        pad: i64,
    ) -> String {
        let mut inputs = vec![
            x.to_owned(),
            self.initializer(&format!("{name}.weight"), kernel),
        ];
        if let Some(bias) = bias {
            inputs.push(self.vector(&format!("{name}.bias"), bias));
        }
        let k = kernel.shape[2] as i64;
        let attrs = vec![
            ints("kernel_shape", &[k, k]),
            ints("pads", &[pad; 4]),
            ints("strides", &[stride, stride]),
            int("group", groups),
        ];
        self.node("Conv", name, &inputs, attrs)
    }

    fn batch_norm(&mut self, name: &str, x: &str, bn: &BatchNorm) -> String {
        let inputs = [
            x.to_owned(),
            self.vector(&format!("{name}.weight"), &bn.gamma),
            self.vector(&format!("{name}.bias"), &bn.beta),
            self.vector(&format!("{name}.running_mean"), &bn.mean),
            self.vector(&format!("{name}.running_var"), &bn.var),
        ];
        self.node(
            "BatchNormalization",
            name,
            &inputs,
            vec![float("epsilon", BN_EPS as f32)],
        )
    }

    /// `x * sigmoid(up(relu(down(avgpool(x)))))`.
    fn se(&mut self, name: &str, x: &str, se: &Se) -> String {
        let pooled = self.node(
            "GlobalAveragePool",
            &format!("{name}.pool"),
            &[x.to_owned()],
            vec![],
        );
        let down = self.conv(
            &format!("{name}.down"),
            &pooled,
            &se.down,
            Some(&se.down_bias),
            1,
            1,
            0,
        );
        let relu = self.node("Relu", &format!("{name}.relu"), &[down], vec![]);
        let up = self.conv(
            &format!("{name}.up"),
            &relu,
            &se.up,
            Some(&se.up_bias),
            1,
            1,
            0,
        );
        let gate = self.node("Sigmoid", &format!("{name}.sigmoid"), &[up], vec![]);
        self.node(
            "Mul",
            &format!("{name}.scale"),
            &[x.to_owned(), gate],
            vec![],
        )
    }

    fn rename_last_output(&mut self, from: &str, to: &str) {
        if let Some(node) = self.nodes.last_mut() {
            for out in node.output.iter_mut().filter(|o| *o == from) {
                *out = to.into();
            }
        }
    }

    fn finish(self, num_classes: usize) -> GraphProto {
        GraphProto {
            name: "repvgg".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(
                INPUT,
                &[dim("batch"), dim(3), dim("height"), dim("width")],
            )],
            output: vec![value_info(OUTPUT, &[dim("batch"), dim(num_classes as i64)])],
            ..Default::default()
        }
    }
}

fn value_info(name: &str, dims: &[Dimension]) -> ValueInfoProto {
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: Some(TensorShapeProto {
            dim: dims.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(Value::TensorType(tensor)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

fn dim(d: impl Into<DimValue>) -> Dimension {
    Dimension {
        value: Some(match d.into() {
            DimValue::Fixed(v) => dimension::Value::DimValue(v),
            DimValue::Named(n) => dimension::Value::DimParam(n.into()),
        }),
        ..Default::default()
    }
}

enum DimValue {
    Fixed(i64),
    Named(&'static str),
}

impl From<i64> for DimValue {
    fn from(v: i64) -> Self {
        Self::Fixed(v)
    }
}

impl From<&'static str> for DimValue {
    fn from(n: &'static str) -> Self {
        Self::Named(n)
    }
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: kind.into(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        i: value,
        ..attr(name, AttributeType::INT)
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: values.to_vec(),
        ..attr(name, AttributeType::INTS)
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        f: value,
        ..attr(name, AttributeType::FLOAT)
    }
}
