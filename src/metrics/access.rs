//! Series of the access layer: calls refused for their API key, TLS handshakes that failed,
//! and reloads of the key file and the TLS files.

use metrics::{Key, Label, Recorder};

use super::{names, Metrics, Protocol, METADATA};

impl Metrics {
    /// A call refused for its key; `reason` is `unauthorized` or `forbidden`.
    pub(crate) fn access_denied(&self, protocol: Protocol, reason: &'static str) {
        let labels = vec![
            Label::new("protocol", protocol.label()),
            Label::new("reason", reason),
        ];
        self.recorder
            .register_counter(&Key::from_parts(names::ACCESS_DENIED, labels), &METADATA)
            .increment(1);
    }

    /// A TLS handshake failed on `listener`.
    pub(crate) fn tls_handshake_failed(&self, listener: &'static str) {
        let labels = vec![Label::new("listener", listener)];
        self.recorder
            .register_counter(
                &Key::from_parts(names::TLS_HANDSHAKE_FAILURES, labels),
                &METADATA,
            )
            .increment(1);
    }

    /// A change of the TLS files, applied or refused.
    pub(crate) fn tls_reloaded(&self, applied: bool) {
        self.reloaded(names::TLS_RELOADS, applied);
    }

    /// A change of the API key file, applied or refused.
    pub(crate) fn api_keys_reloaded(&self, applied: bool) {
        self.reloaded(names::API_KEY_RELOADS, applied);
    }

    fn reloaded(&self, name: &'static str, applied: bool) {
        let result = if applied { "applied" } else { "invalid" };
        let labels = vec![Label::new("result", result)];
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
            .increment(1);
    }
}
