//! The page at `/` and the dashboard at `/dashboard`, in a real headless browser: Debian's
//! `chromium` driven through `chromedriver` (WebDriver, by `fantoccini`), both installed by
//! `scripts/setup-test-tools.sh`. The page must show what `/classify` answers, word errors as
//! the API does, load nothing from another origin and log no console errors; the dashboard
//! must show the traffic it is under. Screenshots are written to `target/ui-screenshots/`
//! (the ones in docs/ come from here).

#[path = "ui/browser.rs"]
mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::{browser, console_errors, requested_urls, save_screenshot, wait_text};
use common::server::TestServer;
use common::*;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::Locator;
use serde_json::{json, Value};

/// The top-1 label the service's own `path` (`/classify...`) answers for `photo`.
async fn top1_of(server: &TestServer, path: &str, photo: &std::path::Path) -> String {
    let answer: Value = json_of(
        server
            .client
            .post(server.url(path))
            .body(std::fs::read(photo).expect("fixture")),
    )
    .await;
    answer["predictions"][0]["label"]
        .as_str()
        .expect("a label")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_chosen_in_the_page_shows_the_top_label_classify_returns() {
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    let photo = fixture("images/chelsea.png");
    let top1 = top1_of(&server, "/classify", &photo).await;

    let (_driver, client) = browser(1100, 900).await;
    client.goto(&server.url("/")).await.expect("open the page");
    let model = wait_text(&client, "#model", |t| t.contains("classes")).await;
    assert!(model.contains("10 classes"), "the model line: {model}");
    assert!(
        model.contains("tiny_official_train.pth") && model.contains("sha256"),
        "the model line names the checkpoint and its hash: {model}"
    );

    // The keyboard reaches the picker first: one Tab from the top of the page focuses the
    // native file input (its label is drawn as the button; Enter or Space opens the picker).
    let tab = char::from(fantoccini::key::Key::Tab);
    client
        .perform_actions(
            KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: tab })
                .then(KeyAction::Up { value: tab }),
        )
        .await
        .expect("press Tab");
    let focused = client
        .execute("return document.activeElement.id;", vec![])
        .await
        .expect("script");
    assert_eq!(
        focused,
        json!("file"),
        "the first Tab focuses the file picker"
    );

    let input = client
        .find(Locator::Css("#file"))
        .await
        .expect("file input");
    input
        .send_keys(photo.to_str().expect("utf-8"))
        .await
        .expect("choose the photo");
    let first = wait_text(&client, ".result .prediction .label", |t| !t.is_empty()).await;
    assert_eq!(first, top1, "the page's top-1 is /classify's");
    let rows = client
        .find_all(Locator::Css(".result .prediction"))
        .await
        .expect("prediction rows");
    assert_eq!(rows.len(), 5, "top-5 bars");
    let timings = wait_text(&client, ".result .timings", |t| t.contains("inference")).await;
    assert!(timings.contains("total"), "{timings}");
    save_screenshot(&client, "ui.png").await;
    assert_eq!(
        console_errors(&client).await,
        Vec::<String>::new(),
        "no console errors"
    );

    // Not an image: the API's own words (status and error type) in the page.
    let not_image = tempfile::Builder::new()
        .suffix(".txt")
        .tempfile()
        .expect("temp file");
    std::fs::write(not_image.path(), "plain text, not an image").expect("write");
    let input = client
        .find(Locator::Css("#file"))
        .await
        .expect("file input");
    input
        .send_keys(not_image.path().to_str().expect("utf-8"))
        .await
        .expect("choose the text file");
    let direct = server
        .client
        .post(server.url("/classify"))
        .header("content-type", "application/octet-stream")
        .body("plain text, not an image")
        .send()
        .await
        .expect("answered");
    let status = direct.status().as_u16();
    let body: Value = direct.json().await.expect("JSON error");
    let error = wait_text(&client, ".result .error", |t| !t.is_empty()).await;
    assert_eq!(
        error,
        format!(
            "{status} {}: {}",
            body["error_type"].as_str().expect("type"),
            body["error"].as_str().expect("error")
        ),
        "the page words the error as the API does"
    );
    // The only console entry allowed now: the browser's own line for the refused request.
    for entry in console_errors(&client).await {
        assert!(
            entry.contains("/classify") && entry.contains(&status.to_string()),
            "unexpected console error: {entry}"
        );
    }

    let origin = server.url("");
    let urls = requested_urls(&client).await;
    assert!(
        urls.iter().any(|u| u.ends_with("/classify?top_k=5")),
        "the page calls /classify: {urls:?}"
    );
    for url in &urls {
        assert!(
            url.starts_with(&origin) || url.starts_with("blob:") || url.starts_with("data:"),
            "requested from another origin: {url}"
        );
    }

    // A phone-sized screen: one column, the first result still fully visible.
    client.set_window_size(390, 844).await.expect("resize");
    let overflow: Value = client
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(overflow, json!(false), "no horizontal scrolling on a phone");
    save_screenshot(&client, "ui-phone.png").await;
    client.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_traffic_it_is_under() {
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    // A bounded load: 4 clients for at most 60 s, until the dashboard has seen it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, image, stop) = (
                server.client.clone(),
                server.url("/classify"),
                image.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let started = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(60)
                {
                    let _ = client.post(&url).body(image.clone()).send().await;
                }
            })
        })
        .collect();
    // One failed request of a known type, to be shown by type.
    let refused = server
        .client
        .post(server.url("/classify"))
        .header("content-type", "application/octet-stream")
        .body("not an image")
        .send()
        .await
        .expect("answered");
    let refused: Value = refused.json().await.expect("JSON");
    let refused_type = refused["error_type"].as_str().expect("type").to_owned();

    let (_driver, client) = browser(1200, 1000).await;
    client
        .goto(&server.admin_url("/dashboard"))
        .await
        .expect("open the dashboard");
    let status = wait_text(&client, "#status", |t| t.starts_with("Healthy")).await;
    assert!(status.contains("admission"), "{status}");
    let rps = wait_text(&client, "#rps", |t| t.parse::<f64>().is_ok_and(|r| r > 0.0)).await;
    assert!(rps.parse::<f64>().expect("number") > 0.0);
    let latency = wait_text(&client, "#latency", |t| t.contains(" / ")).await;
    assert!(latency.contains("ms"), "{latency}");
    let stages = wait_text(&client, "#stages", |t| t.contains("inference")).await;
    assert!(
        stages.contains("preprocess") && stages.contains("total"),
        "{stages}"
    );
    let batches = wait_text(&client, "#batch-sizes", |t| !t.is_empty()).await;
    assert!(batches.contains('%'), "{batches}");
    let errors = wait_text(&client, "#error-types", |t| t.contains(&refused_type)).await;
    assert!(errors.contains('1'), "{errors}");
    save_screenshot(&client, "dashboard.png").await;
    assert_eq!(
        console_errors(&client).await,
        Vec::<String>::new(),
        "no console errors"
    );
    let origin = server.admin_url("");
    for url in requested_urls(&client).await {
        assert!(
            url.starts_with(&origin),
            "requested from another origin: {url}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }

    // Not ready: the dashboard says so.
    server.state.readiness.set(false);
    wait_text(&client, "#status", |t| t.starts_with("Not ready")).await;
    client.close().await.expect("close");
}

/// A server with several models: the page offers each served version (the first model's
/// newest chosen), and classifies with the one chosen, as `/classify?model=&version=` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_classifies_with_the_model_chosen_from_a_repository() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (model, version) in [("official", 1), ("official", 2), ("timm", 7)] {
        let target = dir.path().join(format!("{model}/{version}"));
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::copy(tiny(), target.join("weights.pth")).expect("copy");
    }
    std::fs::write(
        dir.path().join("official/config.json"),
        r#"{"version_policy": {"all": {}}}"#,
    )
    .expect("config");
    let labels: Vec<String> = (0..10).map(|i| format!("timm-label-{i}")).collect();
    std::fs::write(dir.path().join("timm/labels.txt"), labels.join("\n")).expect("labels");
    std::fs::write(
        dir.path().join("timm/config.json"),
        r#"{"labels": "labels.txt"}"#,
    )
    .expect("config");
    let server =
        TestServer::start(&["--model-repository", dir.path().to_str().expect("utf-8")]).await;
    let photo = fixture("images/chelsea.png");
    let top1 = top1_of(&server, "/classify?model=timm", &photo).await;
    assert!(top1.starts_with("timm-label-"), "{top1}");

    let (_driver, client) = browser(1100, 900).await;
    client.goto(&server.url("/")).await.expect("open the page");
    wait_text(&client, "#model", |t| t.contains("classes")).await;
    let options: Value = client
        .execute(
            "return [...document.querySelectorAll('#version option')].map(o => o.textContent);",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(
        options,
        json!([
            "official · version 1",
            "official · version 2",
            "timm · version 7"
        ])
    );
    let chosen = client
        .execute(
            "return document.querySelector('#version option:checked').textContent;",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(
        chosen,
        json!("official · version 2"),
        "the first model's newest version"
    );
    client
        .find(Locator::Css("#version option[value='2']"))
        .await
        .expect("the timm option")
        .click()
        .await
        .expect("choose timm");
    let input = client
        .find(Locator::Css("#file"))
        .await
        .expect("file input");
    input
        .send_keys(photo.to_str().expect("utf-8"))
        .await
        .expect("choose the photo");
    let first = wait_text(&client, ".result .prediction .label", |t| !t.is_empty()).await;
    assert_eq!(first, top1, "the page's top-1 is /classify?model=timm's");
    let urls = requested_urls(&client).await;
    assert!(
        urls.iter()
            .any(|u| u.ends_with("/classify?top_k=5&model=timm&version=7")),
        "the page names the chosen version: {urls:?}"
    );
    assert_eq!(
        console_errors(&client).await,
        Vec::<String>::new(),
        "no console errors"
    );
    client.close().await.expect("close");
}

#[tokio::test]
async fn ui_false_answers_404_at_the_root_and_the_dashboard() {
    let on = TestServer::start(&["--checkpoint", &tiny()]).await;
    let page = on.client.get(on.url("/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .expect("a CSP")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let dashboard = on
        .client
        .get(on.admin_url("/dashboard"))
        .send()
        .await
        .expect("dashboard");
    assert_eq!(dashboard.status(), 200);

    let off = TestServer::start(&["--checkpoint", &tiny(), "--ui", "false"]).await;
    for url in [
        off.url("/"),
        off.url("/ui/classify.js"),
        off.admin_url("/dashboard"),
    ] {
        let answer = off.client.get(&url).send().await.expect("answered");
        assert_eq!(answer.status(), 404, "{url}");
        let body: Value = answer.json().await.expect("JSON 404");
        assert_eq!(body["error_type"], "not_found");
    }
}
