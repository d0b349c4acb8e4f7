//! repvgg-serve: RepVGG image classification over HTTP.
//!
//! The request flow, module by module:
//!
//! ```text
//! http (axum: body -> images)            src/http
//!   -> preprocess (worker pool: decode, resize, crop)   src/preprocess
//!   -> batching (queue -> batch tensor)                  src/batching
//!   -> inference (ONNX Runtime session threads)          src/inference
//!   -> http (softmax, top-k, JSON)
//! ```
//!
//! To the side, `model` turns a checkpoint into a fused ONNX graph at start-up (no tokio, no
//! HTTP there), `metrics` holds the Prometheus series and `/stats` windows, and `server` wires
//! it all together and drains it on shutdown.

pub mod admission;
pub mod batching;
pub mod commands;
pub mod compare;
pub mod config;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod grpc;
pub mod http;
pub mod inference;
mod labels;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod server;
pub mod supervise;
pub mod v2;
