//! TLS on every listener, against the real server: HTTPS for `/classify` and the admin
//! listener, gRPC over TLS (ALPN h2), plaintext refused on a TLS port, mutual TLS refusing a
//! client without a certificate, a certificate replaced on disk served to new connections
//! without a restart while an open connection keeps working, and `repvgg-serve probe` over TLS.

mod common;

use std::time::{Duration, Instant};

use common::grpc::{self, MODEL_INFER};
use common::server::{metric_value, TestServer};
use common::tls::{self, Ca};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reqwest client that trusts only `ca`, with an optional client certificate.
fn https_client(ca: &Ca, client: Option<&tls::Leaf>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA"));
    if let Some(leaf) = client {
        let pem = format!("{}{}", leaf.cert, leaf.key);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

fn https(addr: std::net::SocketAddr, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", addr.port())
}

async fn tls_server(dir: &std::path::Path, ca: &Ca, extra: &[&str]) -> TestServer {
    let leaf = ca.server();
    let cert = tls::write(dir, "tls.crt", &leaf.cert);
    let key = tls::write(dir, "tls.key", &leaf.key);
    let mut args = vec!["--checkpoint".to_owned(), tiny()];
    args.extend(["--tls-cert".into(), cert, "--tls-key".into(), key]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca, &[]).await;
    let client = https_client(&ca, None);
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let answer = client
        .post(https(server.addr, "/classify"))
        .body(image.clone())
        .send()
        .await
        .expect("HTTPS classify");
    assert_eq!(answer.status(), 200);
    let metrics = text_of(client.get(https(server.admin_addr, "/metrics"))).await;
    assert!(metrics.contains("repvgg_ready 1"), "{metrics}");

    // gRPC over TLS: ALPN h2, then an ordinary call.
    let grpc_addr = server.grpc_addr.to_string();
    let stream = tls::connect(&grpc_addr, &ca.pem, b"h2", None)
        .await
        .expect("TLS to the gRPC port");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (h2, connection) = h2::client::handshake(stream).await.expect("h2 over TLS");
    tokio::spawn(connection);
    let call = grpc::try_call_on(
        h2,
        &grpc_addr,
        MODEL_INFER,
        &grpc::infer_request("repvgg", &image),
        &[],
    )
    .await
    .expect("gRPC over TLS");
    assert_eq!(call.status, 0, "{}", call.message);

    // Plaintext to a TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(server.url("/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext HTTP answered: {plain:?}");
    let plain_grpc = tokio::time::timeout(
        Duration::from_secs(5),
        grpc::try_call_on(
            grpc::connect(&grpc_addr).await,
            &grpc_addr,
            MODEL_INFER,
            &[],
            &[],
        ),
    )
    .await
    .expect("the plaintext gRPC call ended");
    assert!(plain_grpc.is_err(), "plaintext gRPC answered");
    // The client may see the connection fail a moment before the server's task counts it.
    for listener in ["http", "grpc"] {
        let series = format!(r#"repvgg_tls_handshake_failures_total{{listener="{listener}"}}"#);
        let counted = Instant::now();
        loop {
            let text = text_of(client.get(https(server.admin_addr, "/metrics"))).await;
            if metric_value(&text, &series) >= 1.0 {
                break;
            }
            assert!(
                counted.elapsed() < Duration::from_secs(3),
                "{series}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let clients_ca = Ca::new("client CA");
    let ca_file = tls::write(dir.path(), "clients.pem", &clients_ca.pem);
    let server = tls_server(dir.path(), &ca, &["--tls-client-ca", &ca_file]).await;
    let url = https(server.addr, "/healthz");
    let anonymous = https_client(&ca, None).get(&url).send().await;
    assert!(
        anonymous.is_err(),
        "no client certificate, answered: {anonymous:?}"
    );
    let stranger = https_client(&ca, Some(&ca.client())).get(&url).send().await;
    assert!(
        stranger.is_err(),
        "a certificate from another CA was accepted"
    );
    let known = https_client(&ca, Some(&clients_ca.client()))
        .get(&url)
        .send()
        .await
        .expect("a client with a certificate");
    assert_eq!(known.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_to_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca, &[]).await;
    let addr = server.addr.to_string();
    let first = tls::der(&std::fs::read_to_string(dir.path().join("tls.crt")).expect("cert"));
    let mut open = tls::connect(&addr, &ca.pem, b"http/1.1", None)
        .await
        .expect("TLS");
    assert_eq!(tls::presented(&open), first);

    let renewed = ca.server();
    tls::write(dir.path(), "tls.key", &renewed.key);
    tls::write(dir.path(), "tls.crt", &renewed.cert);
    let second = tls::der(&renewed.cert);
    let replaced = Instant::now();
    loop {
        let fresh = tls::connect(&addr, &ca.pem, b"http/1.1", None)
            .await
            .expect("TLS");
        if tls::presented(&fresh) == second {
            break;
        }
        assert!(
            replaced.elapsed() < Duration::from_secs(5),
            "the new certificate was not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the renewal still serves requests.
    open.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    open.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

/// `repvgg-serve probe --tls-cert` (the container's HEALTHCHECK with `REPVGG_TLS_CERT` set)
/// speaks TLS and accepts exactly the server's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_speaks_tls_pinned_to_the_servers_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca, &[]).await;
    let port = server.addr.port().to_string();
    let cert = dir.path().join("tls.crt");
    let other = tls::write(dir.path(), "other.crt", &ca.server().cert);
    let probe = |cert: String| {
        let port = port.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
                .args([
                    "probe",
                    "--port",
                    &port,
                    "--path",
                    "/readyz",
                    "--tls-cert",
                    &cert,
                ])
                .env_remove("REPVGG_TLS_CERT")
                .output()
                .expect("probe runs")
        })
    };
    let ok = probe(cert.to_str().expect("utf-8").to_owned())
        .await
        .expect("probe");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = probe(other).await.expect("probe");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("TLS handshake with 127.0.0.1"), "{stderr}");
    server.stop().await;
}
