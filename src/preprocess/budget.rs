//! The decode memory budget: before an image is decoded, its peak decoding memory, computed
//! from the header, is reserved against `--max-decode-bytes`; the reservation is released when
//! preprocessing ends. An image that does not fit beside those being decoded is refused at once
//! (503, retry), one larger than the whole budget is refused for good (422), so a burst of
//! decompression bombs costs a bounded amount of memory instead of an OOM kill.
//!
//! The cost is what the pipeline holds at its peak: the decoder's output in its own sample
//! format (16-bit RGBA: 8 bytes a pixel; at least 4, the CMYK JPEG case), plus two 8-bit RGB
//! copies (conversion and EXIF rotation). Decoders also run with an allocation limit of the
//! whole budget, as a second line. Before both, the pixel limit (`--max-pixels`) refuses an
//! image from its header size alone ([`check_pixels`]).

use std::sync::{Arc, Mutex};

use super::PreprocessError;

/// Shared by every preprocessing worker.
#[derive(Clone, Debug)]
pub struct DecodeBudget {
    total: u64,
    in_use: Arc<Mutex<u64>>,
    /// `repvgg_decode_budget_bytes_in_use` (a no-op gauge unless [`Self::observed`]).
    gauge: metrics::Gauge,
}

/// Bytes reserved for one decode; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    bytes: u64,
    in_use: Arc<Mutex<u64>>,
    gauge: metrics::Gauge,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        *in_use -= self.bytes;
        self.gauge.decrement(self.bytes as f64);
    }
}

impl DecodeBudget {
    pub fn new(total: u64) -> Self {
        Self {
            total,
            in_use: Arc::new(Mutex::new(0)),
            gauge: metrics::Gauge::noop(),
        }
    }

    /// The same budget, its use shown in `metrics` (bytes in use and the total).
    pub fn observed(self, metrics: &crate::metrics::Metrics) -> Self {
        Self {
            gauge: metrics.decode_budget(self.total),
            ..self
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Reserves `bytes`, or says why not: larger than the budget, or not free now.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, PreprocessError> {
        if bytes > self.total {
            return Err(PreprocessError::OverDecodeBudget {
                needed: bytes,
                budget: self.total,
            });
        }
        let mut in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        if *in_use + bytes > self.total {
            return Err(PreprocessError::DecodeBudgetBusy {
                needed: bytes,
                in_use: *in_use,
                budget: self.total,
            });
        }
        *in_use += bytes;
        self.gauge.increment(bytes as f64);
        Ok(Reservation {
            bytes,
            in_use: self.in_use.clone(),
            gauge: self.gauge.clone(),
        })
    }
}

/// Refuses empty images and images over the pixel limit (from the header, before decoding).
pub(super) fn check_pixels(
    width: u32,
    height: u32,
    max_pixels: u64,
) -> Result<(), PreprocessError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(PreprocessError::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    if pixels == 0 {
        return Err(PreprocessError::Undecodable("image has no pixels".into()));
    }
    Ok(())
}

/// Peak decoding memory of a `width x height` image whose decoder outputs `decoded_bytes`.
pub fn decode_cost(width: u32, height: u32, decoded_bytes: u64) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    decoded_bytes.max(4 * pixels) + 2 * 3 * pixels
}

/// The default budget: [`DEFAULT_DECODE_BYTES`], or half the container's memory limit (cgroup
/// v2 or v1) when that is less.
pub fn default_budget() -> u64 {
    crate::memory::container_limit().map_or(DEFAULT_DECODE_BYTES, |limit| {
        (limit / 2).min(DEFAULT_DECODE_BYTES)
    })
}

/// Room for one image at the default pixel limit (50 MP at 16-bit RGBA costs 700 MB) while the
/// process stays under 1 GiB; a 12 MP phone JPEG costs 120 MB, so six decode side by side.
pub const DEFAULT_DECODE_BYTES: u64 = 768 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_are_given_back() {
        let budget = DecodeBudget::new(100);
        let a = budget.reserve(60).expect("fits");
        assert!(matches!(
            budget.reserve(50),
            Err(PreprocessError::DecodeBudgetBusy { in_use: 60, .. })
        ));
        let b = budget.reserve(40).expect("fits beside");
        drop(a);
        let c = budget.reserve(50).expect("fits after release");
        drop((b, c));
        assert!(budget.reserve(100).is_ok());
    }

    #[test]
    fn an_image_over_the_whole_budget_is_refused_for_good() {
        let budget = DecodeBudget::new(100);
        assert!(matches!(
            budget.reserve(101),
            Err(PreprocessError::OverDecodeBudget {
                needed: 101,
                budget: 100
            })
        ));
    }

    #[test]
    fn a_16_bit_rgba_bomb_costs_what_it_holds() {
        // 7000 x 7000 RGBA16: 392 MB decoded + two RGB8 copies of 147 MB.
        let cost = decode_cost(7000, 7000, 7000 * 7000 * 8);
        assert_eq!(cost, 392_000_000 + 294_000_000);
        // An 8-bit RGB JPEG: at least 4 bytes a pixel (CMYK) + two copies.
        assert_eq!(decode_cost(100, 100, 30_000), 40_000 + 60_000);
    }
}
