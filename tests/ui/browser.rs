//! The headless browser of `tests/ui.rs`: Debian's `chromium` driven through `chromedriver`
//! (WebDriver, by `fantoccini`), its console and network logs, waiting for text, screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `chromedriver` on a free port, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session (with its browser and performance logs on) at a window size.
pub async fn browser(width: u32, height: u32) -> (Driver, Client) {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).is_file(),
            "{tool} missing: run scripts/setup-test-tools.sh (Debian's chromium and chromium-driver)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                format!("--window-size={width},{height}"),
            ],
        },
        "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
    });
    let capabilities = capabilities.as_object().expect("object").clone();
    // fantoccini's client carries rustls; the process-wide provider is ring, as the server's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    loop {
        let connected = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities.clone())
            .connect(&driver.url)
            .await;
        match connected {
            Ok(client) => return (driver, client),
            // chromedriver may not listen yet.
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session from {CHROMEDRIVER}: {e}"),
        }
    }
}

/// ChromeDriver's log endpoint (`browser`: the console; `performance`: DevTools events); each
/// read returns the entries since the last one.
#[derive(Debug)]
struct Log(&'static str);

impl WebDriverCompatibleCommand for Log {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": self.0 }).to_string()),
        )
    }
}

pub async fn log(client: &Client, kind: &'static str) -> Vec<Value> {
    let entries = client.issue_cmd(Log(kind)).await.expect("read the log");
    entries.as_array().cloned().unwrap_or_default()
}

/// Console entries at SEVERE (errors, CSP violations, failed loads).
pub async fn console_errors(client: &Client) -> Vec<String> {
    log(client, "browser")
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every URL the page requested, from the DevTools network events.
pub async fn requested_urls(client: &Client) -> Vec<String> {
    log(client, "performance")
        .await
        .into_iter()
        .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
        .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
        .filter_map(|m| {
            Some(
                m["message"]["params"]["request"]["url"]
                    .as_str()?
                    .to_owned(),
            )
        })
        .collect()
}

/// Waits up to 30 s for an element's text to satisfy `ready`; returns the text.
pub async fn wait_text(client: &Client, css: &str, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if ready(&text) {
                    return text;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "`{css}` never showed what was expected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir.join(name)
}

pub async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(screenshot_path(name), png).expect("write screenshot");
}
