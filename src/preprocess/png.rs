//! A PNG check the `png` crate (0.18.1, the latest release) does not make before it trusts the
//! data: a PLTE chunk must hold whole RGB entries (a multiple of 3 bytes, PNG 11.2.3). One that
//! does not panics in `png`'s palette expansion (image-rs/image-png#694, fixed upstream but not
//! released; found here by `make fuzz`'s image target). The preprocessing worker would catch
//! that panic and answer 422 for the request alone; refusing the file here names the cause and
//! keeps the fuzzers able to find other panics. Remove once a `png` release rejects it itself.

use super::PreprocessError;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Walks the chunks of a PNG (length, type, data, CRC; one step per chunk, so at most
/// `bytes.len() / 12` steps) and refuses a PLTE chunk that is not whole RGB entries. Anything
/// else that is wrong is left to the decoder, which reports it.
pub(super) fn check_palette(bytes: &[u8]) -> Result<(), PreprocessError> {
    let mut rest = bytes.strip_prefix(&SIGNATURE).unwrap_or_default();
    while let (Some(length), Some(kind)) = (rest.get(0..4), rest.get(4..8)) {
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        match kind {
            b"PLTE" if !length.is_multiple_of(3) => {
                return Err(PreprocessError::Undecodable(format!(
                    "PNG palette (PLTE chunk) of {length} bytes is not whole RGB entries \
                     (a multiple of 3 bytes)"
                )))
            }
            b"IEND" => break,
            _ => {}
        }
        rest = length
            .checked_add(12)
            .and_then(|next| rest.get(next..))
            .unwrap_or_default();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the image fuzzer found: an indexed PNG whose PLTE chunk is 679 bytes.
    const FUZZ_FIND: &[u8] =
        include_bytes!("../../tests/fixtures/malicious/png_palette_679_bytes.png");

    #[test]
    fn a_palette_that_is_not_whole_rgb_entries_is_refused_before_decoding() {
        use super::super::decode::{decode_cost, decode_rgb};
        let refused = [
            decode_cost(FUZZ_FIND, 50_000_000).map(drop),
            decode_rgb(FUZZ_FIND, 50_000_000, None).map(drop),
        ];
        for result in refused {
            match result {
                Err(PreprocessError::Undecodable(message)) => {
                    assert!(message.contains("PLTE chunk) of 679 bytes"), "{message}")
                }
                other => panic!("expected a refusal naming the palette, got {other:?}"),
            }
        }
    }

    #[test]
    fn whole_palettes_and_other_pngs_pass() {
        let palette = include_bytes!("../../fuzz/corpus/image/palette.png");
        assert_eq!(palette[25], 3, "an indexed-colour PNG");
        check_palette(palette).expect("a palette of whole entries");
        check_palette(include_bytes!("../../tests/fixtures/images/chelsea.png")).expect("RGB");
        check_palette(b"not a png").expect("left to the decoder");
        check_palette(&FUZZ_FIND[..40]).expect("a chunk cut short is left to the decoder");
    }
}
