//! TLS for every listener (rustls with the `ring` provider), shared by the HTTP, gRPC and admin
//! doors: the certificate chain and key from PEM files (`--tls-cert`, `--tls-key`), and with
//! `--tls-client-ca` mutual TLS (a client without a certificate signed by that CA is refused in
//! the handshake). The files are re-read when their content changes (cert-manager renewing a
//! Secret): new connections get the new certificate, open ones keep theirs; files that no
//! longer load keep the previous configuration, logged and counted.
//!
//! Each listener speaks one application protocol, announced by ALPN: HTTP/1.1 on the public and
//! admin ports, HTTP/2 (`h2`) on the gRPC port. A handshake must finish within the listener's
//! idle timeout; it runs in the connection's own task, never in the accept loop.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::Metrics;

/// How often the files are checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Where the certificate material is.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Mutual TLS: clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files were refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM {what}")]
    Missing { path: PathBuf, what: &'static str },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// Which listener a connection came to (its ALPN and its label in metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Http,
    Grpc,
    Admin,
}

impl Listener {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
            Self::Admin => "admin",
        }
    }
}

/// The server configurations built from one version of the files, one per ALPN.
#[derive(Debug)]
struct Configs {
    http1: Arc<ServerConfig>,
    h2: Arc<ServerConfig>,
}

impl Configs {
    fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let invalid = |path: &Path, why: String| TlsError::Invalid {
            path: path.to_owned(),
            why,
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(&files.cert)?)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(&files.cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::Missing {
                path: files.cert.clone(),
                what: "certificate",
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
                path: files.key.clone(),
                what: "private key",
            },
            e => invalid(&files.key, e.to_string()),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&files.cert, e.to_string()))?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                    let cert = cert.map_err(|e| invalid(ca, e.to_string()))?;
                    roots.add(cert).map_err(|e| invalid(ca, e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(TlsError::Missing {
                        path: ca.clone(),
                        what: "CA certificate",
                    });
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| invalid(ca, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| invalid(&files.key, format!("does not match the certificate: {e}")))?;
        let with_alpn = |protocol: &[u8]| {
            let mut config = config.clone();
            config.alpn_protocols = vec![protocol.to_vec()];
            Arc::new(config)
        };
        Ok(Self {
            http1: with_alpn(b"http/1.1"),
            h2: with_alpn(b"h2"),
        })
    }

    fn for_listener(&self, listener: Listener) -> Arc<ServerConfig> {
        match listener {
            Listener::Http | Listener::Admin => self.http1.clone(),
            Listener::Grpc => self.h2.clone(),
        }
    }
}

/// The TLS settings every listener uses; cloning is cheap.
#[derive(Clone, Debug)]
pub(crate) struct Tls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    files: TlsFiles,
    current: ArcSwap<Configs>,
    /// Digest of the files' bytes the current configuration came from (or last failed on).
    seen: Mutex<[u8; 32]>,
    metrics: Arc<Metrics>,
}

impl Tls {
    /// Loads the files; an unreadable or invalid one is an error naming it.
    pub(crate) fn load(files: TlsFiles, metrics: Arc<Metrics>) -> Result<Self, TlsError> {
        let configs = Configs::load(&files)?;
        let seen = fingerprint(&files).unwrap_or_default();
        tracing::info!(
            cert = %files.cert.display(),
            mutual = files.client_ca.is_some(),
            "TLS on every listener"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                current: ArcSwap::from_pointee(configs),
                seen: Mutex::new(seen),
                metrics,
            }),
        })
    }

    /// The TLS handshake of a connection accepted on `listener`, within `timeout`; a failure is
    /// counted and logged at debug (scanners and plaintext clients are common).
    pub(crate) async fn accept(
        &self,
        listener: Listener,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Option<Stream> {
        let config = self.inner.current.load().for_listener(listener);
        let handshake = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
        let error = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(stream)) => return Some(Stream::Tls(Box::new(stream))),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {timeout:?}"),
        };
        self.inner.metrics.tls_handshake_failed(listener.label());
        tracing::debug!(listener = listener.label(), error, "TLS handshake failed");
        None
    }

    /// Re-reads the files when their content changed; true when a new configuration was taken.
    fn reload(&self) -> bool {
        let inner = &self.inner;
        let Some(now) = fingerprint(&inner.files) else {
            // A Secret being swapped can be missing for a moment; the next look retries.
            return false;
        };
        let mut seen = inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return false;
        }
        *seen = now;
        match Configs::load(&inner.files) {
            Ok(configs) => {
                inner.current.store(Arc::new(configs));
                inner.metrics.tls_reloaded(true);
                tracing::info!(cert = %inner.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                inner.metrics.tls_reloaded(false);
                tracing::error!(error = %e, "TLS files changed but do not load: the previous certificate stays in use");
                false
            }
        }
    }

    /// Re-reads the files every [`RELOAD_EVERY`] while the service runs.
    pub(crate) async fn watch(self) {
        let mut ticks = tokio::time::interval(RELOAD_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
        }
    }
}

/// The digest of every file's bytes, `None` while one cannot be read.
fn fingerprint(files: &TlsFiles) -> Option<[u8; 32]> {
    let mut hash = Sha256::new();
    for path in [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        hash.update(std::fs::read(path).ok()?);
        hash.update([0]);
    }
    Some(hash.finalize().into())
}

/// An accepted connection, in the clear or over TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// `tcp` as the listener serves it: through the TLS handshake when `tls` is set (`None` when
/// the handshake failed), as it is otherwise.
pub(crate) async fn open(
    tls: Option<&Tls>,
    listener: Listener,
    tcp: TcpStream,
    timeout: Duration,
) -> Option<Stream> {
    match tls {
        Some(tls) => tls.accept(listener, tcp, timeout).await,
        None => Some(Stream::Plain(tcp)),
    }
}

/// A client that trusts exactly the first certificate of the PEM file `cert` (the server's own,
/// for `repvgg-serve probe` on 127.0.0.1), with its signatures checked as usual.
pub(crate) fn pinned_connector(cert: &Path) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.to_owned(),
        source,
    })?;
    let expected = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| TlsError::Missing {
            path: cert.to_owned(),
            what: "certificate",
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        expected,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            path: cert.to_owned(),
            why: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Accepts the one expected end-entity certificate, whatever its names and issuer.
#[derive(Debug)]
struct Pinned {
    expected: CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
