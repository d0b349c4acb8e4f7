//! Model loading, to the side of the request flow: checkpoint -> typed weights -> fusion ->
//! ONNX bytes. Nothing here knows about tokio, axum or HTTP.
//!
//! ```text
//! .pth / .safetensors --checkpoint--> official-name tensors --weights--> RepVgg (train|deploy)
//!     --fuse--> RepVgg (deploy) --onnx--> ModelProto bytes  (cached by checkpoint sha256)
//! ```

pub mod arch;
pub mod checkpoint;
mod error;
mod footprint;
mod fuse;
pub mod init;
mod inspect;
pub mod onnx;
mod prepare;
mod tensor;
pub mod variants;
mod weights;

pub use checkpoint::{Checkpoint, Dialect};
pub use error::ModelError;
pub use footprint::{Footprint, Layout};
pub use fuse::BN_EPS;
pub use inspect::Inspection;
pub use prepare::{
    export_checkpoint, prepare, sha256_file, write_random_checkpoint, FusedGraph, ModelInfo,
    ModelSource, PreparedModel,
};
pub use tensor::Tensor;
pub use weights::{Form, RepVgg};
