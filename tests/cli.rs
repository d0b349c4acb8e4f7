//! The `repvgg-serve` binary's subcommands: `inspect`, `export`, `init`, `probe`. Files that
//! are not checkpoints and settings `serve` refuses: tests/cli_refusals.rs.

mod common;

use std::path::Path;

use common::cli::{cli, failure, json};
use common::*;

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
