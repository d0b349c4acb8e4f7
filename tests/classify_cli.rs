//! `repvgg-serve classify`: the binary over folders of fixture photos. Its records must carry
//! the same top-5 as `POST /classify` (the same pipeline), a corrupt file must become an error
//! record without stopping the run, and `--resume` after a run killed half way must finish
//! with every image exactly once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::server::TestServer;
use common::*;
use serde_json::Value;

fn classify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
        .arg("classify")
        .args(["--checkpoint", &tiny(), "--no-cache"])
        .args(args)
        .output()
        .expect("running repvgg-serve classify")
}

fn succeeded(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "classify failed: {stderr}");
    stderr
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// (class id, probability) pairs, best first.
fn classes(predictions: &Value) -> Vec<(u64, f64)> {
    predictions
        .as_array()
        .expect("predictions")
        .iter()
        .map(|p| {
            (
                p["class_id"].as_u64().expect("id"),
                p["probability"].as_f64().expect("p"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_gets_the_top5_of_classify_and_a_corrupt_file_an_error_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let images = dir.path().join("photos");
    std::fs::create_dir_all(images.join("nested")).expect("folders");
    for (i, name) in IMAGES.iter().enumerate() {
        // Half of them one folder down: folders are searched recursively.
        let to = if i % 2 == 0 {
            images.clone()
        } else {
            images.join("nested")
        };
        std::fs::copy(fixture(&format!("images/{name}")), to.join(name)).expect("copy");
    }
    std::fs::write(
        images.join("corrupt.jpg"),
        b"\xff\xd8\xff not really a JPEG",
    )
    .expect("write");
    std::fs::write(images.join("notes.md"), "not an image: not searched").expect("write");
    let output = dir.path().join("out.jsonl");
    let stderr = succeeded(&classify(&[
        "--images",
        images.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]));
    assert!(
        stderr.contains(&format!("{} classified, 1 failed", IMAGES.len())),
        "the summary: {stderr}"
    );
    assert!(stderr.contains("undecodable_image: 1"), "{stderr}");

    let records = records(&output);
    assert_eq!(records.len(), IMAGES.len() + 1, "one record per image");
    let by_name: HashMap<String, &Value> = records
        .iter()
        .map(|r| {
            let path = Path::new(r["path"].as_str().expect("path"));
            (
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                r,
            )
        })
        .collect();
    assert_eq!(by_name["corrupt.jpg"]["error_type"], "undecodable_image");
    assert!(by_name["corrupt.jpg"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));

    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    for name in IMAGES {
        let body = std::fs::read(fixture(&format!("images/{name}"))).expect("fixture");
        let api: Value = json_of(server.client.post(server.url("/classify")).body(body)).await;
        let (ours, theirs) = (
            classes(&by_name[name]["predictions"]),
            classes(&api["predictions"]),
        );
        assert_eq!(ours.len(), 5, "{name}: top-5");
        assert_eq!(ours[0].0, theirs[0].0, "{name}: the same top-1");
        for (rank, ((id, p), (api_id, api_p))) in ours.iter().zip(&theirs).enumerate() {
            // Batches of other sizes may change the last digits; classes whose probabilities
            // are that close may then trade places.
            assert!(
                (p - api_p).abs() < 1e-4,
                "{name} rank {rank}: {p} vs {api_p}"
            );
            if id != api_id {
                let twin = theirs.iter().find(|(i, _)| i == id);
                assert!(
                    twin.is_some_and(|(_, q)| (p - q).abs() < 1e-4),
                    "{name} rank {rank}: class {id} here, {api_id} from /classify"
                );
            }
        }
    }

    // The output exists: a second run without --resume refuses, naming it.
    let again = classify(&[
        "--images",
        images.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("out.jsonl") && stderr.contains("--resume"),
        "{stderr}"
    );
}

#[test]
fn csv_output_has_a_header_and_one_row_per_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("list.txt");
    let photos = ["chelsea.png", "coffee.png"];
    let lines: Vec<String> = photos
        .iter()
        .map(|p| {
            fixture(&format!("images/{p}"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    std::fs::write(&list, format!("# two photos\n{}\n", lines.join("\n"))).expect("list");
    let output = dir.path().join("out.csv");
    succeeded(&classify(&[
        "--images",
        list.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
        "--format",
        "csv",
        "--top-k",
        "3",
    ]));
    let text = std::fs::read_to_string(&output).expect("output");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "path,error_type,error,class_id_1,label_1,probability_1,class_id_2,label_2,\
         probability_2,class_id_3,label_3,probability_3"
    );
    assert_eq!(rows.len(), 1 + photos.len(), "{text}");
    for photo in photos {
        assert!(
            rows.iter().any(|r| r.contains(photo) && r.contains(",,,")),
            "{photo}: a row without an error: {text}"
        );
    }
}

#[test]
fn resume_after_a_run_killed_half_way_gives_every_image_exactly_once() {
    const N: usize = 400;
    let dir = tempfile::tempdir().expect("temp dir");
    let images = dir.path().join("many");
    std::fs::create_dir(&images).expect("folder");
    let photo = fixture("images/chelsea_q90.jpg");
    for i in 0..N {
        std::os::unix::fs::symlink(&photo, images.join(format!("{i:04}.jpg"))).expect("link");
    }
    let output = dir.path().join("out.jsonl");
    let args = |resume: bool| {
        let mut args = vec![
            "classify".to_owned(),
            "--checkpoint".into(),
            tiny(),
            "--no-cache".into(),
            "--images".into(),
            images.to_string_lossy().into_owned(),
            "--output".into(),
            output.to_string_lossy().into_owned(),
        ];
        if resume {
            args.push("--resume".into());
        }
        args
    };
    let mut first = Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
        .args(args(false))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start classify");
    let started = Instant::now();
    let written = || {
        std::fs::read_to_string(&output)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while written() < N / 8 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().expect("kill half way");
    first.wait().expect("reaped");
    let before = written();
    assert!(
        before < N,
        "killed before the end ({before} of {N} written)"
    );
    // A kill in the middle of a write leaves half a line: simulate the worst case.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&output)
        .expect("output");
    std::io::Write::write_all(&mut file, b"{\"path\":\"cut sh").expect("half a line");

    let out = Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
        .args(args(true))
        .output()
        .expect("resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {stderr}");
    assert!(stderr.contains("already in the output"), "{stderr}");

    let records = records(&output);
    let mut paths: Vec<&str> = records
        .iter()
        .map(|r| r["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths.len(), N, "every image once: {} records", paths.len());
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), N, "no image twice");
    assert!(records.iter().all(|r| r["predictions"].is_array()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sends_each_image_to_a_running_server_with_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = "0123456789abcdef-classify";
    let (server, _keys) = TestServer::with_keys(dir.path(), &format!("inference {key}\n")).await;
    let images = fixture("images");
    let run = |output: &Path, key: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_repvgg-serve"));
        command.args([
            "classify",
            "--url",
            &server.url(""),
            "--images",
            images.to_str().expect("utf-8"),
            "--output",
            output.to_str().expect("utf-8"),
        ]);
        if let Some(key) = key {
            command.args(["--api-key", key]);
        }
        command.output().expect("classify --url")
    };
    let with_key = dir.path().join("with-key.jsonl");
    let out = tokio::task::block_in_place(|| run(&with_key, Some(key)));
    succeeded(&out);
    let written = records(&with_key);
    assert_eq!(written.len(), IMAGES.len());
    for record in &written {
        let path = record["path"].as_str().expect("path");
        let body = std::fs::read(path).expect("image");
        let api: Value = server
            .client
            .post(server.url("/classify"))
            .bearer_auth(key)
            .body(body)
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            record["predictions"][0]["class_id"], api["predictions"][0]["class_id"],
            "{path}"
        );
    }

    // Without the key, every image is recorded with the server's refusal; the run completes.
    let without = dir.path().join("without-key.jsonl");
    let out = tokio::task::block_in_place(|| run(&without, None));
    let stderr = succeeded(&out);
    assert!(
        stderr.contains(&format!("unauthorized: {}", IMAGES.len())),
        "{stderr}"
    );
    assert!(records(&without)
        .iter()
        .all(|r| r["error_type"] == "unauthorized"));
}
