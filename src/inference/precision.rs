//! The numeric precision the engine computes in, and whether this CPU can run bf16 natively.
//!
//! `fp32` runs ONNX Runtime's CPU execution provider (MLAS): exact, as PyTorch computes. `bf16`
//! runs ONNX Runtime's OpenVINO execution provider with OpenVINO's `INFERENCE_PRECISION_HINT`
//! set to bf16: weights and activations keep fp32's range with 8 bits of mantissa, computed by
//! AMX tiles (`amx_bf16`) or AVX-512 BF16 instructions (`avx512_bf16`). Without either, OpenVINO
//! would emulate bf16 slower than fp32, so `bf16` is refused there. Having a flag is necessary,
//! not sufficient: start-up also times bf16 against fp32 ([`super::bf16_speed`]).

use std::path::PathBuf;

/// `--precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        }
    }

    /// The engine that computes in this precision, as `/v1/models` and the metrics name it.
    pub fn engine(self) -> &'static str {
        match self {
            Self::Fp32 => "onnxruntime-cpu",
            Self::Bf16 => "onnxruntime-openvino",
        }
    }
}

/// The CPU flags that make bf16 native, in order of preference.
pub const BF16_FLAGS: [&str; 2] = ["amx_bf16", "avx512_bf16"];

/// Where the CPU's description is read: `/proc/cpuinfo`, or the file named by
/// `REPVGG_CPUINFO` (a test hook: tests point it at a CPU without bf16 to see the refusal).
fn cpuinfo_path() -> PathBuf {
    std::env::var_os("REPVGG_CPUINFO").map_or_else(|| "/proc/cpuinfo".into(), PathBuf::from)
}

/// The value of the first `name : value` line of a `/proc/cpuinfo` text ("" when absent).
pub(crate) fn cpuinfo_field<'a>(cpuinfo: &'a str, name: &str) -> &'a str {
    cpuinfo
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_once(':'))
        .map_or("", |(_, v)| v.trim())
}

/// This CPU's architecture, model name and the bf16 flags it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuBf16 {
    /// `x86_64`, `aarch64`, ... (as Rust names it).
    pub arch: &'static str,
    pub model: String,
    pub flags: Vec<&'static str>,
}

impl CpuBf16 {
    /// Reads the CPU description (see [`cpuinfo_path`]).
    pub fn detect() -> Self {
        Self::parse_on(
            std::env::consts::ARCH,
            &std::fs::read_to_string(cpuinfo_path()).unwrap_or_default(),
        )
    }

    /// An x86_64 CPU described by `cpuinfo`.
    pub fn parse(cpuinfo: &str) -> Self {
        Self::parse_on("x86_64", cpuinfo)
    }

    pub fn parse_on(arch: &'static str, cpuinfo: &str) -> Self {
        let present: Vec<&str> = cpuinfo_field(cpuinfo, "flags").split_whitespace().collect();
        Self {
            arch,
            model: cpuinfo_field(cpuinfo, "model name").to_owned(),
            flags: BF16_FLAGS
                .into_iter()
                .filter(|f| present.contains(f))
                .collect(),
        }
    }

    /// `Ok` with the flags in use, or the message that refuses `--precision bf16`.
    pub fn require_native(&self) -> Result<String, String> {
        if self.arch != "x86_64" {
            return Err(format!(
                "--precision bf16 runs on ONNX Runtime's OpenVINO execution provider, which is \
                 published for x86_64 only; this machine is {}. Use --precision fp32.",
                self.arch
            ));
        }
        if self.flags.is_empty() {
            return Err(format!(
                "--precision bf16 needs a CPU with native bf16 (CPU flag amx_bf16 or \
                 avx512_bf16: Intel Xeon since Sapphire Rapids, AMD Zen 4 and later); this CPU \
                 ({}) has neither, and emulated bf16 is slower than fp32. Use --precision fp32.",
                if self.model.is_empty() {
                    "model unknown"
                } else {
                    &self.model
                }
            ));
        }
        Ok(self.flags.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4: &str = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx512f avx512_bf16 sha_ni\n";
    const SPR: &str = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx512f avx512_bf16 amx_bf16 amx_tile\n";
    const ICELAKE: &str =
        "model name\t: Intel(R) Xeon(R) Platinum 8375C\nflags\t\t: avx512f avx512_vnni\n";

    #[test]
    fn native_bf16_is_recognised_by_either_flag() {
        assert_eq!(
            CpuBf16::parse(ZEN4).require_native(),
            Ok("avx512_bf16".into())
        );
        assert_eq!(
            CpuBf16::parse(SPR).require_native(),
            Ok("amx_bf16 avx512_bf16".into())
        );
    }

    #[test]
    fn bf16_is_refused_on_aarch64_even_with_its_bf16_feature() {
        // Graviton 3 has bf16 instructions, but the OpenVINO provider wheel is x86_64 only.
        let graviton = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n";
        let message = CpuBf16::parse_on("aarch64", graviton)
            .require_native()
            .expect_err("no bf16 engine on aarch64");
        assert!(
            message.contains("x86_64 only") && message.contains("aarch64"),
            "{message}"
        );
    }

    #[test]
    fn a_cpu_without_it_is_refused_with_the_missing_flags_named() {
        let message = CpuBf16::parse(ICELAKE)
            .require_native()
            .expect_err("refused");
        assert!(message.contains("amx_bf16 or avx512_bf16"), "{message}");
        assert!(message.contains("Platinum 8375C"), "{message}");
        assert!(message.contains("--precision fp32"), "{message}");
    }
}
