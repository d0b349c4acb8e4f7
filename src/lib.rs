//! repvgg-serve: RepVGG image classification over HTTP.
//!
//! The request flow, module by module:
//!
//! ```text
//! http (axum: body -> images), grpc      src/http, src/grpc
//!   -> models (name, version -> that version's pipeline)  src/models
//!   -> pipeline (admission, deadlines)                   src/pipeline.rs
//!   -> preprocess (worker pool: decode, resize, crop)   src/preprocess
//!   -> batching (queue -> batch tensor)                  src/batching
//!   -> inference (ONNX Runtime session threads)          src/inference
//!   -> http (softmax, top-k, JSON)
//! ```
//!
//! To the side, `model` turns a checkpoint into a fused ONNX graph at start-up (no tokio, no
//! HTTP there), `metrics` holds the Prometheus series and `/stats` windows, `telemetry` exports
//! OpenTelemetry traces of the same flow, and `server` wires it all together and drains it on
//! shutdown.

// The public surface: what the binary (src/main.rs), the integration tests, the benchmarks,
// the examples and the fuzz targets use.
pub mod commands;
pub mod compare;
pub mod config;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod http;
pub mod inference;
pub mod memory;
pub mod model;
pub mod models;
pub mod preprocess;
pub mod server;
pub mod service;
pub mod supervise;
pub mod telemetry;
pub mod tls;

// The serving machinery behind it, crate-private.
pub(crate) mod access;
pub(crate) mod admission;
pub(crate) mod batching;
pub(crate) mod body_budget;
pub(crate) mod cores;
pub(crate) mod grpc;
mod labels;
pub(crate) mod metrics;
pub(crate) mod pipeline;
pub(crate) mod v2;
