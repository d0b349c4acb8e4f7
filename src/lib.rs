//! repvgg-serve: RepVGG image classification over HTTP.
pub mod model;
pub mod inference;
pub mod preprocess;
