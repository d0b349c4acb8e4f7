//! arm64: `scripts/setup-ort.sh` picks ONNX Runtime's wheel by architecture. The aarch64 choice
//! runs here on any machine (`REPVGG_ARCH=aarch64`, as the Dockerfile passes its TARGETARCH):
//! the library it extracts must be a 64-bit AArch64 ELF, and the wheel it kept must have the
//! sha256 pinned in the script. The aarch64 binary itself cannot run on this machine; see the
//! README's architecture table for what was tested where.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The hash the script pins for `arch` (its `<arch>) WHEEL_SHA256=<hex> ;;` line).
fn pinned_sha256(arch: &str) -> String {
    let script = std::fs::read_to_string(root().join("scripts/setup-ort.sh")).expect("script");
    script
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{arch}) WHEEL_SHA256=")))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no pinned sha256 for {arch} in scripts/setup-ort.sh"))
}

#[test]
fn the_aarch64_choice_fetches_an_aarch64_onnx_runtime_with_the_pinned_hash() {
    // Kept between runs (a 21 MB wheel from PyPI), like .ort/ is.
    let dest = root().join("target/ort-aarch64");
    let status = Command::new(root().join("scripts/setup-ort.sh"))
        .arg(&dest)
        .env("REPVGG_ARCH", "aarch64")
        .status()
        .expect("run scripts/setup-ort.sh");
    assert!(status.success(), "setup-ort.sh for aarch64: {status}");

    let wheels: Vec<_> = std::fs::read_dir(dest.join("wheel"))
        .expect("the wheel folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel kept: {wheels:?}");
    let name = wheels[0].file_name().expect("name").to_string_lossy();
    assert!(
        name.ends_with("-manylinux_2_28_aarch64.whl"),
        "the aarch64 wheel: {name}"
    );
    let wheel = std::fs::read(&wheels[0]).expect("read the wheel");
    let sha: String = Sha256::digest(&wheel)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, pinned_sha256("aarch64"), "the pinned hash");

    let lib = std::fs::read(dest.join("libonnxruntime.so.1.31.1")).expect("the library");
    assert_eq!(&lib[..4], b"\x7fELF", "an ELF file");
    assert_eq!(lib[4], 2, "64-bit (ELFCLASS64)");
    assert_eq!(lib[5], 1, "little-endian");
    let machine = u16::from_le_bytes([lib[18], lib[19]]);
    assert_eq!(machine, EM_AARCH64, "e_machine AArch64");
}

#[test]
fn an_architecture_without_a_pinned_wheel_is_refused_by_name() {
    let dest = tempfile::tempdir().expect("temp dir");
    let output = Command::new(root().join("scripts/setup-ort.sh"))
        .arg(dest.path())
        .env("REPVGG_ARCH", "riscv64")
        .output()
        .expect("run scripts/setup-ort.sh");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("riscv64") && stderr.contains("aarch64"),
        "{stderr}"
    );
}
