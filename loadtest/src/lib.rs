//! loadtest: an honest HTTP load generator for repvgg-serve.
//!
//! * closed loop: `concurrency` clients, each sending its next request when the previous one
//!   is answered. Measures capacity; its latencies hide queueing under saturation.
//! * open loop: requests are *scheduled* at a given rate, as a Poisson process by default
//!   (bursty, like independent clients; seeded) or evenly spaced, and each latency is measured
//!   from its intended send time, so a slow server cannot slow the generator down and hide its
//!   own queueing (no coordinated omission, as wrk2 / vegeta / k6 arrival-rate executors).
//!
//! Runs are bounded by duration and/or request count and stop by themselves.

pub mod arrivals;
pub mod bodies;
pub mod report;
pub mod run;
pub mod sweep;

pub use arrivals::Arrivals;
pub use bodies::{Bodies, Encoding};
pub use report::Report;
pub use run::{run, ClientOptions, Mode, RunConfig};
