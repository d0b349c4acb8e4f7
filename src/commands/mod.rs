//! The subcommands besides `serve`: `export`, `inspect`, `init` (glue over [`crate::model`]),
//! `probe` (a health check of a running server) and `classify` (bulk, in-process).

pub mod classify;

use std::path::Path;

use anyhow::{bail, Context};

use crate::model::{self, variants, Checkpoint, Inspection, Layout, ModelError, RepVgg};

/// `repvgg-serve export`: fused (or three-branch) ONNX for a checkpoint.
pub fn export(checkpoint: &Path, output: &Path, unfused: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(checkpoint).map_err(|e| ModelError::io(checkpoint, e))?;
    let (bytes, info) = model::export_checkpoint(checkpoint, &bytes, !unfused)?;
    std::fs::write(output, bytes).with_context(|| format!("{}: cannot write", output.display()))?;
    eprintln!(
        "wrote {} ({}, {} classes, {})",
        output.display(),
        info.variant.as_deref().unwrap_or("custom architecture"),
        info.num_classes,
        if unfused { "three-branch" } else { "fused" }
    );
    Ok(())
}

/// `repvgg-serve inspect`: JSON description of a checkpoint or a named variant, with the
/// expected footprint of serving it with `sessions` sessions and batches up to `max_batch_size`.
pub fn inspect(
    checkpoint: Option<&Path>,
    variant: Option<&str>,
    sessions: usize,
    max_batch_size: usize,
) -> anyhow::Result<Inspection> {
    if sessions == 0 || max_batch_size == 0 {
        bail!("--sessions and --max-batch-size must be at least 1");
    }
    let layout = |crop: u32| Layout {
        sessions,
        max_batch_size,
        crop: crop as usize,
    };
    if let Some(path) = checkpoint {
        let ckpt = Checkpoint::load(path)?;
        let dialect = ckpt.dialect;
        let model = RepVgg::from_checkpoint(ckpt)?;
        let crop = crate::model::variants::of(&model.arch).map_or(224, |v| v.crop);
        return Ok(Inspection::new(
            &model.arch,
            Some(dialect),
            Some(model.form),
            layout(crop),
        ));
    }
    let name = variant.unwrap_or_default();
    let v = variants::find(name).ok_or_else(|| ModelError::UnknownVariant(name.to_owned()))?;
    Ok(Inspection::new(
        &v.architecture(1000),
        None,
        None,
        layout(v.crop),
    ))
}

/// `repvgg-serve init`: random training checkpoint as `.safetensors`.
pub fn init(variant: &str, output: &Path, seed: u64, num_classes: usize) -> anyhow::Result<()> {
    if num_classes == 0 {
        bail!("--num-classes must be at least 1");
    }
    model::write_random_checkpoint(variant, seed, num_classes, output)?;
    eprintln!(
        "wrote {} (random {variant} weights, seed {seed})",
        output.display()
    );
    Ok(())
}

/// `repvgg-serve probe`: `GET path` on 127.0.0.1:`port` (HTTP/1.1, hyper; over TLS pinned to
/// `tls_cert` when given); the status when it is 2xx, an error naming what went wrong otherwise.
pub async fn probe(
    port: u16,
    path: &str,
    tls_cert: Option<&Path>,
    timeout: std::time::Duration,
) -> anyhow::Result<http::StatusCode> {
    let address = format!("127.0.0.1:{port}");
    let ask = async {
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        let request = http::Request::get(path)
            .header(http::header::HOST, &address)
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        match tls_cert {
            None => ask_over(tcp, request).await,
            Some(cert) => {
                let connector = crate::tls::pinned_connector(cert)?;
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {address}"))?;
                ask_over(tls, request).await
            }
        }
    };
    let status = tokio::time::timeout(timeout, ask)
        .await
        .with_context(|| format!("no answer from {address}{path} within {timeout:?}"))??;
    if !status.is_success() {
        bail!("{address}{path} answered {status}");
    }
    Ok(status)
}

/// Sends `request` over `io` (HTTP/1.1) and returns the answer's status.
async fn ask_over<IO>(
    io: IO,
    request: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> anyhow::Result<http::StatusCode>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?.status())
}
