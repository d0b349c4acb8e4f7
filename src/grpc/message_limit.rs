//! The largest request message the gRPC port takes, following the models served now: the larger
//! of `--max-body-bytes` (what the HTTP door takes in one body) and 64 tensors of the largest
//! input any served model has, plus headroom for names and shapes. Models loaded later with a
//! larger crop raise it; unloading them lowers it again.
//!
//! tonic's own limit is fixed when the service is built, so it is set to the body budget (no
//! message larger could ever be held) and [`Capped`] applies this one to every message's
//! length prefix, before its bytes are buffered: a message over the limit costs its 5-byte
//! prefix, and the call ends with RESOURCE_EXHAUSTED naming both numbers.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};

use crate::models::Models;

/// Headroom in a message for names, shapes and parameters besides the tensor data.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// The limit's inputs; cloning is cheap and every clone follows the same models.
#[derive(Clone, Debug)]
pub(crate) struct MessageLimit {
    pub models: Models,
    pub max_body_bytes: usize,
}

impl MessageLimit {
    /// The limit for the models served now.
    pub(crate) fn now(&self) -> usize {
        let largest_tensor = self
            .models
            .all()
            .iter()
            .map(|served| served.pipeline.tensor_len())
            .max()
            .unwrap_or_default();
        bytes_for(self.max_body_bytes, largest_tensor)
    }

    /// `body` with every message over [`Self::now`] refused at its length prefix.
    pub(crate) fn cap<B>(&self, body: B) -> Capped<B> {
        Capped {
            inner: body,
            limit: self.now(),
            prefix: [0; PREFIX],
            have: 0,
            rest: 0,
        }
    }
}

/// The limit for `max_body_bytes` and a model input of `tensor_len` floats.
fn bytes_for(max_body_bytes: usize, tensor_len: usize) -> usize {
    let tensors = crate::v2::MAX_BATCH * tensor_len * std::mem::size_of::<f32>();
    max_body_bytes.max(tensors) + MESSAGE_OVERHEAD
}

/// A gRPC message's prefix: compression flag, then the length (4 bytes, big-endian).
const PREFIX: usize = 5;

/// A request body whose messages are checked against a limit as their prefixes arrive.
#[derive(Debug)]
pub(crate) struct Capped<B> {
    inner: B,
    limit: usize,
    /// The prefix being read, `have` bytes of it so far.
    prefix: [u8; PREFIX],
    have: usize,
    /// Bytes of the current message still to pass before the next prefix.
    rest: usize,
}

impl<B> Capped<B> {
    /// Walks `data`'s prefixes and messages; the length of a message over the limit.
    fn over_limit(&mut self, mut data: &[u8]) -> Option<usize> {
        while !data.is_empty() {
            if self.rest > 0 {
                let skip = self.rest.min(data.len());
                self.rest -= skip;
                data = &data[skip..];
                continue;
            }
            let take = (PREFIX - self.have).min(data.len());
            self.prefix[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == PREFIX {
                let length = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                if length > self.limit {
                    return Some(length);
                }
                (self.have, self.rest) = (0, length);
            }
        }
        None
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                if let Some(length) = self.over_limit(data.chunk()) {
                    let status = tonic::Status::resource_exhausted(format!(
                        "message length too large: found {length} bytes, the limit is: {} \
                         bytes (the larger of --max-body-bytes and 64 tensors of the largest \
                         model input served, plus 64 KiB)",
                        self.limit
                    ));
                    return Poll::Ready(Some(Err(Box::new(status))));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(limit: usize) -> Capped<()> {
        Capped {
            inner: (),
            limit,
            prefix: [0; PREFIX],
            have: 0,
            rest: 0,
        }
    }

    fn message(length: usize) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&(length as u32).to_be_bytes());
        framed.resize(PREFIX + length, 7);
        framed
    }

    #[test]
    fn prefixes_are_read_across_frames_and_messages() {
        let mut stream = message(10);
        stream.extend(message(100));
        stream.extend(message(3));
        // Every split of the stream into two frames finds the second message too long.
        for at in 0..stream.len() {
            let mut body = capped(50);
            let found = body
                .over_limit(&stream[..at])
                .or_else(|| body.over_limit(&stream[at..]));
            assert_eq!(found, Some(100), "split at {at}");
        }
        let mut body = capped(100);
        assert_eq!(body.over_limit(&stream), None);
    }

    #[test]
    fn the_limit_is_the_body_limit_or_64_tensors() {
        assert_eq!(
            bytes_for(32 << 20, 3 * 128 * 128),
            (32 << 20) + MESSAGE_OVERHEAD
        );
        assert_eq!(
            bytes_for(1 << 20, 3 * 320 * 320),
            64 * 3 * 320 * 320 * 4 + MESSAGE_OVERHEAD
        );
    }
}
