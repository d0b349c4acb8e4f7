//! A small safe wrapper over libjpeg-turbo's decompressor (`mozjpeg-sys` builds it from
//! source, with its SIMD): what the `mozjpeg` crate offers, plus the two calls it does not
//! expose and region decoding needs, `jpeg_crop_scanline` (decode only some columns) and
//! `jpeg_skip_scanlines` (skip rows without their inverse DCT, upsampling and colour
//! conversion).
//!
//! libjpeg reports fatal errors through `error_exit`, which here unwinds (the library is built
//! with `-fexceptions` by `mozjpeg-sys`'s `unwinding` feature) carrying libjpeg's message; the
//! caller catches it. Warnings are silenced, as Pillow does.
//!
//! The one module of the crate besides `memory` where `unsafe` is allowed; every block says
//! why it is sound, and `make fuzz`'s image target runs through it.

#![allow(unsafe_code)]
use std::ffi::c_int;
use std::marker::PhantomData;
use std::mem;

use mozjpeg_sys::{jpeg_common_struct, jpeg_decompress_struct, jpeg_error_mgr, J_COLOR_SPACE};

/// libjpeg's `JMSG_LENGTH_MAX`: the buffer `format_message` writes into.
const MESSAGE_LENGTH: usize = 200;

/// An open decompressor over a JPEG in memory, its header read.
pub(super) struct Decompressor<'a> {
    // Boxed: libjpeg keeps pointers to both for the life of the decompressor.
    cinfo: Box<jpeg_decompress_struct>,
    _err: Box<jpeg_error_mgr>,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Decompressor<'a> {
    /// Reads the header of `bytes`, keeping APP1 segments (EXIF) for [`Self::exif`]. Fails by
    /// unwinding with libjpeg's message (see the module docs).
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        // SAFETY: both structs are plain C data that libjpeg initialises (`jpeg_std_error`,
        // `jpeg_create_decompress`); they are boxed, so the pointers libjpeg keeps stay valid
        // until `drop` destroys the decompressor; the source is `bytes`, borrowed for 'a.
        unsafe {
            let mut err: Box<jpeg_error_mgr> = Box::new(mem::zeroed());
            mozjpeg_sys::jpeg_std_error(&mut err);
            err.error_exit = Some(unwind_on_error);
            err.emit_message = Some(silence);
            let mut cinfo: Box<jpeg_decompress_struct> = Box::new(mem::zeroed());
            cinfo.common.err = &mut *err;
            mozjpeg_sys::jpeg_create_decompress(&mut *cinfo);
            let mut decompressor = Decompressor {
                cinfo,
                _err: err,
                _bytes: PhantomData,
            };
            let cinfo = &mut *decompressor.cinfo;
            mozjpeg_sys::jpeg_mem_src(cinfo, bytes.as_ptr(), bytes.len() as _);
            mozjpeg_sys::jpeg_save_markers(cinfo, 0xE1, 0xFFFF);
            mozjpeg_sys::jpeg_read_header(cinfo, 1);
            decompressor
        }
    }

    /// Stored width and height, from the header.
    pub(super) fn size(&self) -> (usize, usize) {
        (
            self.cinfo.image_width as usize,
            self.cinfo.image_height as usize,
        )
    }

    /// The payload of the first APP1 segment that holds EXIF (after its `Exif\0\0` tag).
    pub(super) fn exif(&self) -> Option<&[u8]> {
        let mut marker = self.cinfo.marker_list;
        // SAFETY: libjpeg owns the saved-marker list until the decompressor is destroyed,
        // which `&self` outlives; each entry's data is `data_length` bytes.
        unsafe {
            while let Some(m) = marker.as_ref() {
                let data = std::slice::from_raw_parts(m.data, m.data_length as usize);
                if let Some(exif) = data.strip_prefix(b"Exif\0\0") {
                    return Some(exif);
                }
                marker = m.next;
            }
        }
        None
    }

    /// Whether the image is stored as CMYK (or YCCK, decoded to CMYK).
    pub(super) fn is_cmyk(&self) -> bool {
        matches!(
            self.cinfo.jpeg_color_space,
            J_COLOR_SPACE::JCS_CMYK | J_COLOR_SPACE::JCS_YCCK
        )
    }

    /// Decodes at `numerator / 8` of the stored size (libjpeg's scaled inverse DCT).
    pub(super) fn scale(&mut self, numerator: u8) {
        self.cinfo.scale_num = numerator.into();
        self.cinfo.scale_denom = 8;
    }

    /// Width and height of the output at the current scale (stored size rounded up).
    pub(super) fn output_size(&mut self) -> (usize, usize) {
        // SAFETY: the header has been read; this only computes output dimensions.
        unsafe { mozjpeg_sys::jpeg_calc_output_dimensions(&mut self.cinfo) };
        (
            self.cinfo.output_width as usize,
            self.cinfo.output_height as usize,
        )
    }

    /// Starts decompressing to RGB, or to CMYK (4 samples a pixel) with `cmyk`.
    pub(super) fn start(&mut self, cmyk: bool) {
        self.cinfo.out_color_space = if cmyk {
            J_COLOR_SPACE::JCS_CMYK
        } else {
            J_COLOR_SPACE::JCS_RGB
        };
        // SAFETY: header read, output parameters set; errors unwind.
        unsafe { mozjpeg_sys::jpeg_start_decompress(&mut self.cinfo) };
    }

    /// Decodes only columns `left..left + width` of each row from now on; libjpeg widens the
    /// range to whole iMCUs and returns the columns it will produce, `(left, width)`.
    pub(super) fn crop_columns(&mut self, left: usize, width: usize) -> (usize, usize) {
        let (mut x, mut w) = (left as u32, width as u32);
        // SAFETY: called after `start` and before any row is read or skipped, as libjpeg
        // requires; it checks the range against the image and errors (unwinds) if it is bad.
        unsafe { mozjpeg_sys::jpeg_crop_scanline(&mut self.cinfo, &mut x, &mut w) };
        (x as usize, w as usize)
    }

    /// Skips `rows` output rows without producing their pixels.
    pub(super) fn skip_rows(&mut self, rows: usize) {
        // SAFETY: a memory source never suspends (the one case libjpeg leaves undefined).
        unsafe { mozjpeg_sys::jpeg_skip_scanlines(&mut self.cinfo, rows as u32) };
    }

    /// Output rows produced or skipped so far.
    pub(super) fn rows_done(&self) -> usize {
        self.cinfo.output_scanline as usize
    }

    /// Output samples per row (after any column crop) and the row count.
    pub(super) fn row_len_and_height(&self) -> (usize, usize) {
        (
            self.cinfo.output_width as usize * self.cinfo.output_components as usize,
            self.cinfo.output_height as usize,
        )
    }

    /// Fills `out` with the next `out.len() / row_len` rows.
    pub(super) fn read_rows(&mut self, out: &mut [u8], row_len: usize) -> Result<(), String> {
        let (expected, height) = self.row_len_and_height();
        let rows = out.len() / row_len.max(1);
        if row_len != expected
            || !out.len().is_multiple_of(row_len)
            || self.rows_done() + rows > height
        {
            return Err(format!(
                "JPEG: {rows} rows of {row_len} samples asked, rows are {expected} samples and \
                 {} of {height} remain",
                height - self.rows_done()
            ));
        }
        let mut pointers: Vec<*mut u8> = out
            .chunks_exact_mut(row_len)
            .map(|r| r.as_mut_ptr())
            .collect();
        let mut done = 0;
        while done < rows {
            // SAFETY: each pointer addresses `row_len` writable bytes of `out`, which is
            // exactly one output row (checked above); at most the remaining rows are asked for.
            let read = unsafe {
                mozjpeg_sys::jpeg_read_scanlines(
                    &mut self.cinfo,
                    pointers[done..].as_mut_ptr(),
                    (rows - done) as u32,
                )
            } as usize;
            if read == 0 {
                return Err("JPEG: the decoder produced no rows".into());
            }
            done += read;
        }
        Ok(())
    }

    /// Finishes a decode whose every row was read, reading the input to its end (errors in
    /// what follows the last row surface here, as in a plain full decode).
    pub(super) fn finish(&mut self) {
        // SAFETY: every output row has been read (the caller checks `rows_done`).
        unsafe { mozjpeg_sys::jpeg_finish_decompress(&mut self.cinfo) };
    }
}

impl Drop for Decompressor<'_> {
    fn drop(&mut self) {
        // SAFETY: created in `new`; destroying also aborts a decode left unfinished.
        unsafe { mozjpeg_sys::jpeg_destroy_decompress(&mut self.cinfo) };
    }
}

/// libjpeg's fatal-error hook: unwinds out of the library with its formatted message.
extern "C-unwind" fn unwind_on_error(cinfo: &mut jpeg_common_struct) {
    let mut buffer = [0u8; MESSAGE_LENGTH];
    // SAFETY: `err` is our error manager; `format_message` writes at most JMSG_LENGTH_MAX
    // bytes, NUL-terminated, into the buffer (the binding declares an 80-byte array, hence
    // the pointer cast).
    let message = unsafe {
        match (*cinfo.err).format_message {
            Some(format) => {
                let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8) =
                    mem::transmute(format);
                format(cinfo, buffer.as_mut_ptr());
                let end = buffer
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(MESSAGE_LENGTH);
                String::from_utf8_lossy(&buffer[..end]).into_owned()
            }
            None => format!("code {}", (*cinfo.err).msg_code),
        }
    };
    std::panic::resume_unwind(Box::new(format!("libjpeg: {message}")));
}

/// libjpeg's warning hook: silent (corrupt-data warnings are not errors, as in Pillow).
extern "C-unwind" fn silence(_cinfo: &mut jpeg_common_struct, _level: c_int) {}
