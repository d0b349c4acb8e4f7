//! The `repvgg-serve` binary's subcommands: `inspect`, `export`, `init`, `probe`, and clear
//! errors (exit code 1, file and problem named, no panic) for files that are not checkpoints
//! and for settings `serve` refuses.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
        .args(args)
        .output()
        .expect("running repvgg-serve")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Runs a command expected to fail and returns its stderr.
fn failure(args: &[&str]) -> String {
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should fail cleanly: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

/// `params_deploy` (M) and `macs_224` (G) of the reference doc's table.
const TABLE: [(&str, f64, f64); 14] = [
    ("A0", 8.31, 1.36),
    ("A1", 12.79, 2.36),
    ("A2", 25.50, 5.12),
    ("B0", 14.34, 3.06),
    ("B1", 51.83, 11.82),
    ("B1g2", 41.36, 8.81),
    ("B1g4", 36.13, 7.31),
    ("B2", 80.32, 18.38),
    ("B2g2", 63.96, 13.68),
    ("B2g4", 55.78, 11.33),
    ("B3", 110.96, 26.21),
    ("B3g2", 87.40, 19.45),
    ("B3g4", 75.63, 16.06),
    ("D2se", 120.39, 32.83),
];

#[test]
fn inspect_variant_reproduces_the_reference_table() {
    for (name, params_m, macs_g) in TABLE {
        let v = json(&["inspect", "--variant", name]);
        assert_eq!(v["variant"], name);
        let params = v["params_deploy"].as_u64().expect("integer params_deploy") as f64;
        let macs = v["macs_224"].as_u64().expect("integer macs_224") as f64;
        assert!(
            (params / 1e6 - params_m).abs() < 0.005 + 1e-9,
            "{name}: {params}"
        );
        assert!((macs / 1e9 - macs_g).abs() < 0.005 + 1e-9, "{name}: {macs}");
        assert!(v["params_train"].as_u64().expect("params_train") as f64 > params);
        assert_eq!(v["stages"].as_array().expect("stages").len(), 5);
    }
}

#[test]
fn inspect_checkpoint_reads_the_architecture_from_shapes() {
    for (file, dialect, form) in [
        ("tiny_official_train.pth", "official", "train"),
        ("tiny_official_deploy.pth", "official", "deploy"),
        ("tiny_timm_train.safetensors", "timm", "train"),
    ] {
        let path = fixture(&format!("checkpoints/{file}"));
        let v = json(&[
            "inspect",
            "--checkpoint",
            path.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(
            v["variant"],
            serde_json::Value::Null,
            "{file}: not a named variant"
        );
        assert_eq!(v["dialect"], dialect, "{file}");
        assert_eq!(v["form"], form, "{file}");
        assert_eq!(v["num_classes"], 10);
        let stages = v["stages"].as_array().expect("stages");
        let depths: Vec<u64> = stages
            .iter()
            .map(|s| s["depth"].as_u64().expect("depth"))
            .collect();
        let widths: Vec<u64> = stages
            .iter()
            .map(|s| s["width"].as_u64().expect("width"))
            .collect();
        assert_eq!(depths, [1, 2, 2, 4, 1], "{file}");
        assert_eq!(widths, [16, 16, 32, 64, 128], "{file}");
        // Groups 2 on odd block indices within each stage.
        assert_eq!(
            stages[3]["block_groups"],
            serde_json::json!([1, 2, 1, 2]),
            "{file}"
        );
    }
}

#[test]
fn init_writes_a_checkpoint_that_loads_as_its_variant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a0.safetensors");
    let out_str = out.to_str().expect("utf-8");
    let status = cli(&[
        "init",
        "--variant",
        "A0",
        "--output",
        out_str,
        "--seed",
        "3",
    ]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v = json(&["inspect", "--checkpoint", out_str]);
    assert_eq!(v["variant"], "A0");
    assert_eq!(v["form"], "train");
    assert_eq!(v["num_classes"], 1000);
    // Deterministic per seed: the same tensor data (the JSON header's key order may differ).
    let data = |path: &Path| {
        let bytes = std::fs::read(path).expect("checkpoint");
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        bytes[8 + header_len..].to_vec()
    };
    let again = dir.path().join("again.safetensors");
    cli(&[
        "init",
        "--variant",
        "A0",
        "--output",
        again.to_str().expect("utf-8"),
        "--seed",
        "3",
    ]);
    assert!(data(&out) == data(&again), "same seed, different weights");
}

#[test]
fn export_writes_fused_and_unfused_onnx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = fixture("checkpoints/tiny_official_train.pth");
    let ckpt = ckpt.to_str().expect("utf-8");
    for (flag, name) in [(None, "fused.onnx"), (Some("--unfused"), "unfused.onnx")] {
        let out = dir.path().join(name);
        let mut args = vec![
            "export",
            "--checkpoint",
            ckpt,
            "--output",
            out.to_str().expect("utf-8"),
        ];
        args.extend(flag);
        let result = cli(&args);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let bytes = std::fs::read(&out).expect("onnx written");
        assert!(bytes.len() > 100_000, "{name}: {} bytes", bytes.len());
    }
    let deploy = fixture("checkpoints/tiny_official_deploy.pth");
    let out = dir.path().join("x.onnx");
    let err = failure(&[
        "export",
        "--checkpoint",
        deploy.to_str().expect("utf-8"),
        "--output",
        out.to_str().expect("utf-8"),
        "--unfused",
    ]);
    assert!(err.contains("already fused"), "{err}");
}

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

/// `repvgg-serve probe` (the container's HEALTHCHECK): exit 0 against a live server, 1 with a
/// message naming the address when nothing answers or the answer is not 2xx.
#[test]
fn probe_checks_a_running_server() {
    let server = common::process::ServerProcess::start(&["--checkpoint", &tiny()]);
    let port = server.addr.rsplit(':').next().expect("port").to_owned();
    let out = cli(&["probe", "--port", &port]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/healthz: 200"));
    let out = cli(&["probe", "--port", &port, "--path", "/readyz"]);
    assert!(out.status.success());
    let stderr = failure(&["probe", "--port", &port, "--path", "/nope"]);
    assert!(stderr.contains("answered 404"), "{stderr}");
    drop(server);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let stderr = failure(&["probe", "--port", &closed]);
    assert!(
        stderr.contains(&format!("cannot connect to 127.0.0.1:{closed}")),
        "{stderr}"
    );
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
