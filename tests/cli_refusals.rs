//! Clear errors from the `repvgg-serve` binary (exit code 1, file and problem named, no panic)
//! for files that are not checkpoints and for settings `serve` refuses.

mod common;

use std::path::Path;
use std::process::Command;

use common::cli::failure;
use common::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn truncated_pth_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(fixture("checkpoints/tiny_official_train.pth")).expect("fixture");
    let path = write(dir.path(), "cut.pth", &bytes[..bytes.len() / 2]);
    let err = failure(&["inspect", "--checkpoint", &path]);
    assert!(err.contains(&path) && err.contains("truncated"), "{err}");
}

#[test]
fn malicious_pickle_is_refused_and_runs_nothing() {
    let marker = Path::new("/tmp/repvgg-serve-malicious-pickle-ran");
    let _ = std::fs::remove_file(marker);
    let path = fixture("malicious/os_system.pth");
    let path = path.to_str().expect("utf-8");
    let err = failure(&["inspect", "--checkpoint", path]);
    assert!(err.contains(path), "{err}");
    assert!(
        err.contains("refused to load") && err.contains("posix.system"),
        "{err}"
    );
    assert!(!marker.exists(), "the pickle's payload ran");
}

#[test]
fn safetensors_with_a_wrong_shape_names_the_tensor() {
    // Rewrite one shape in the header of the real timm file, keeping the data intact.
    let bytes = std::fs::read(fixture("checkpoints/tiny_timm_train.safetensors")).expect("fixture");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len]).expect("header");
    let tensor = "stages.1.0.conv_kxk.conv.weight";
    assert_eq!(header[tensor]["shape"], serde_json::json!([32, 16, 3, 3]));
    header[tensor]["shape"] = serde_json::json!([32, 16, 9, 1]);
    let mut text = serde_json::to_vec(&header).expect("json");
    text.resize(header_len.max(text.len()), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + header_len..]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "bad.safetensors", &out);
    let err = failure(&["inspect", "--checkpoint", &path]);
    assert!(
        err.contains(&path) && err.contains(tensor) && err.contains("[32, 16, 9, 1]"),
        "{err}"
    );
}

#[test]
fn unrelated_files_are_not_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = fixture("images/horse.png");
    let png = png.to_str().expect("utf-8");
    let text = write(dir.path(), "notes.txt", b"just some text\n");
    for path in [png, text.as_str()] {
        let err = failure(&["inspect", "--checkpoint", path]);
        assert!(
            err.contains(path) && err.contains("not a checkpoint"),
            "{err}"
        );
    }
    let missing = dir.path().join("missing.pth");
    let err = failure(&["inspect", "--checkpoint", missing.to_str().expect("utf-8")]);
    assert!(
        err.contains("missing.pth") && err.contains("cannot read"),
        "{err}"
    );
    // A safetensors file of some other network: unknown layout, with the names it has.
    let mut header = serde_json::json!({"fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})
        .to_string()
        .into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut other = (header.len() as u64).to_le_bytes().to_vec();
    other.extend(header);
    other.extend([0u8; 16]);
    let path = write(dir.path(), "resnet.safetensors", &other);
    let err = failure(&["inspect", "--checkpoint", &path]);
    assert!(
        err.contains("unknown layout") && err.contains("fc.weight"),
        "{err}"
    );
}

/// The tiny timm fixture with one tensor replaced (name, shape, little-endian f32 data).
fn tiny_with(dir: &Path, file: &str, replace: &str, shape: &[usize]) -> String {
    let bytes = std::fs::read(fixture("checkpoints/tiny_timm_train.safetensors")).expect("fixture");
    let original = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert!(
        original.names().contains(&replace),
        "{replace} in the fixture"
    );
    let data = vec![0u8; 4 * shape.iter().product::<usize>()];
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = original
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            if name == replace {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.to_vec(),
                    &data,
                )
                .expect("view");
                (name, view)
            } else {
                (name, view)
            }
        })
        .collect();
    let out = safetensors::serialize(tensors, None).expect("serialize");
    write(dir, file, &out)
}

/// A 0-class head, a scalar and an empty tensor are clear load errors naming the tensor (they
/// used to panic: a 0-class model on every request, a scalar in the loader).
#[test]
fn zero_class_head_scalar_and_empty_tensors_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[usize], &str); 4] = [
        ("head.fc.weight", &[0, 128], "needs at least one class"),
        ("head.fc.bias", &[], "a scalar"),
        ("stages.1.0.conv_kxk.bn.weight", &[], "a scalar"),
        ("stages.2.0.conv_kxk.conv.weight", &[64, 0, 3, 3], "empty"),
    ];
    for (i, (tensor, shape, says)) in cases.into_iter().enumerate() {
        let path = tiny_with(dir.path(), &format!("bad{i}.safetensors"), tensor, shape);
        for command in ["inspect", "export"] {
            let mut args = vec![command, "--checkpoint", &path];
            let output = dir.path().join("out.onnx");
            let output = output.to_str().expect("utf-8");
            if command == "export" {
                args.extend(["--output", output]);
            }
            let err = failure(&args);
            assert!(
                err.contains(&path) && err.contains(tensor) && err.contains(says),
                "{command} {tensor} {shape:?}: {err}"
            );
        }
    }
}

/// `--precision bf16` on a CPU without native bf16 (the CPU description forced through the
/// `REPVGG_CPUINFO` test hook to an Ice Lake Xeon: AVX-512, no BF16) is refused before anything
/// is loaded, for `serve` and `compare`, with the missing flags named. Runs on every machine.
#[test]
fn bf16_is_refused_on_a_cpu_without_native_bf16() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cpuinfo = dir.path().join("cpuinfo");
    std::fs::write(
        &cpuinfo,
        "model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n\
         flags\t\t: fpu sse4_2 avx2 avx512f avx512bw avx512_vnni\n",
    )
    .expect("write");
    let tiny = tiny();
    let images = fixture("images");
    for args in [
        vec![
            "serve",
            "--port",
            "0",
            "--precision",
            "bf16",
            "--checkpoint",
            &tiny,
        ],
        vec![
            "compare",
            "--checkpoint",
            &tiny,
            "--images",
            images.to_str().expect("utf-8"),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
            .args(&args)
            .env("REPVGG_CPUINFO", &cpuinfo)
            .output()
            .expect("running repvgg-serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for expected in [
            "amx_bf16 or avx512_bf16",
            "Platinum 8375C",
            "--precision fp32",
        ] {
            assert!(
                stderr.contains(expected),
                "{args:?}: {expected} missing: {stderr}"
            );
        }
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}

/// A key file that does not parse, an origin that is not one, or normalisation statistics
/// that are not three usable numbers stop `serve` before it listens, naming the file and line
/// or the flag.
#[test]
fn bad_access_and_normalisation_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = write(
        dir.path(),
        "keys",
        b"inference 0123456789abcdef\nreader 0123456789abcdef\n",
    );
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--admin-port",
            "0",
        ];
        args.extend_from_slice(extra);
        failure(&args)
    };
    let stderr = serve(&["--api-keys-file", &keys]);
    assert!(
        stderr.contains(&keys) && stderr.contains("line 2: unknown role `reader`"),
        "{stderr}"
    );
    let stderr = serve(&["--api-keys-file", "/nonexistent/keys"]);
    assert!(
        stderr.contains("--api-keys-file /nonexistent/keys"),
        "{stderr}"
    );
    let stderr = serve(&["--cors-allow-origin", "https://ok.example/path"]);
    assert!(
        stderr.contains("--cors-allow-origin `https://ok.example/path`"),
        "{stderr}"
    );
    let stderr = serve(&["--std", "0.2,0,0.2"]);
    assert!(stderr.contains("--std takes three numbers"), "{stderr}");
    let stderr = serve(&["--mean", "0.5,0.5"]);
    assert!(stderr.contains("--mean takes three numbers"), "{stderr}");
    let stderr = failure(&["serve", "--port", "9000", "--admin-port", "9000"]);
    assert!(stderr.contains("--admin-port 9000"), "{stderr}");
}
