//! The decoded image every decoder produces and resizing reads, and the part of it a decoder
//! may produce alone when only a region is needed.

/// Interleaved 8-bit RGB pixels, row by row.
#[derive(Debug)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// A rectangle of pixel positions: columns `left..left + width`, rows `top..top + height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rect {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

impl Rect {
    /// Every pixel of a `width x height` image.
    pub(crate) fn whole(width: usize, height: usize) -> Self {
        Rect {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    pub(crate) fn right(&self) -> usize {
        self.left + self.width
    }

    pub(crate) fn bottom(&self) -> usize {
        self.top + self.height
    }

    /// Whether every pixel of `other` lies inside `self`.
    pub(crate) fn contains(&self, other: &Rect) -> bool {
        self.left <= other.left
            && self.top <= other.top
            && other.right() <= self.right()
            && other.bottom() <= self.bottom()
    }
}

/// The pixels of `rect` of an image `full_width x full_height` (the rest was never decoded):
/// `image` is `rect.width x rect.height`, its first pixel is the image's `(rect.left,
/// rect.top)`. Only the pixels inside `exact` are promised to equal a full decode's: a region
/// decode keeps the margin it decoded around the region asked for (see `jpeg::decode`), and
/// the margin's outer pixels may differ.
#[derive(Debug)]
pub(crate) struct Window {
    pub image: RgbImage,
    pub rect: Rect,
    pub exact: Rect,
    pub full_width: usize,
    pub full_height: usize,
}

impl Window {
    /// A window that is the whole image.
    pub(crate) fn whole(image: RgbImage) -> Self {
        Window {
            rect: Rect::whole(image.width, image.height),
            exact: Rect::whole(image.width, image.height),
            full_width: image.width,
            full_height: image.height,
            image,
        }
    }
}
