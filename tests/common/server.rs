//! An in-process server on 127.0.0.1:0, configured through the real CLI parser.

use std::net::SocketAddr;

use clap::Parser;
use repvgg_serve::config::{Cli, Command};
use repvgg_serve::server::App;
use tokio::sync::oneshot;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The gRPC endpoint (always on, on its own free port).
    pub grpc_addr: SocketAddr,
    /// The admin listener (metrics, stats), on its own free port.
    pub admin_addr: SocketAddr,
    pub state: repvgg_serve::service::AppState,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts `repvgg-serve serve <args>` (no cache unless the args give one).
    pub async fn start(args: &[&str]) -> Self {
        let mut argv = vec!["repvgg-serve", "serve"];
        argv.extend_from_slice(&super::LOCAL_SERVE);
        argv.extend_from_slice(args);
        let Command::Serve(serve) = Cli::try_parse_from(&argv).expect("valid flags").command else {
            unreachable!("serve subcommand");
        };
        let config = serve.validate().expect("valid config");
        let app = App::start(config).await.expect("app starts");
        let state = app.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC");
        let grpc_addr = grpc.local_addr().expect("gRPC addr");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin");
        let admin_addr = admin.local_addr().expect("admin addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = repvgg_serve::server::Listeners {
            http: listener,
            grpc: Some(grpc),
            admin: Some(admin),
        };
        let task = tokio::spawn(app.run(listeners, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            grpc_addr,
            admin_addr,
            state,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A server on the tiny checkpoint that needs API keys: `keys` (`<role> <key>` lines) is
    /// written to `dir/keys`; the server and that file's path.
    pub async fn with_keys(dir: &std::path::Path, keys: &str) -> (Self, std::path::PathBuf) {
        let path = dir.join("keys");
        std::fs::write(&path, keys).expect("write keys");
        let file = path.to_str().expect("utf-8 path");
        let server = Self::start(&["--checkpoint", &super::tiny(), "--api-keys-file", file]).await;
        (server, path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// Starts the graceful shutdown without waiting for it (see [`Self::ended_within`]).
    pub fn request_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Graceful shutdown; waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("clean shutdown");
        }
    }

    /// `POST /classify` with `body` as a raw image.
    pub async fn classify(&self, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url("/classify"))
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST /classify?logits=true&<query>` with `image`: the status and the JSON answer.
    #[allow(dead_code)]
    pub async fn classify_with(&self, query: &str, image: &[u8]) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(&format!("/classify?logits=true&{query}")))
            .body(image.to_vec())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    /// Waits (at most `within`) for the server to end on its own; its result.
    pub async fn ended_within(mut self, within: std::time::Duration) -> anyhow::Result<()> {
        let task = self.task.take().expect("server task");
        tokio::time::timeout(within, task)
            .await
            .expect("the server ended in time")
            .expect("server task")
    }

    /// The admin listener's `/metrics`.
    pub async fn metrics(&self) -> String {
        super::text_of(self.client.get(self.admin_url("/metrics"))).await
    }
}

/// The value of a series in Prometheus text (`name{labels} value`), 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// The sum of every series of metric `name` that carries all of `labels` (`key="value"`), 0
/// when none does: model series carry `model` and `version` labels, summed here over versions.
#[allow(dead_code)]
pub fn series_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
