//! Images ⇄ float tensors.
//!
//! * [`decode`] — PNG and JPEG files → 8-bit RGB, as PIL's `convert("RGB")` gives them.
//! * [`resample`] — PIL's `BOX` and `BICUBIC` resize, byte-exact.
//! * [`center_crop`] — the reference's `center_crop_arr` and `[−1, 1]` normalisation.
//!
//! * Reading: any PNG (8- or 16-bit, grayscale, RGB, palette, with or without alpha)
//!   becomes a `[C, H, W]` float image in [−1, 1]: grayscale (± alpha) → C = 1,
//!   RGB / RGBA / palette → C = 3; alpha is dropped. A sample `v` of bit depth `d` maps
//!   to `v / (2^d − 1) · 2 − 1`.
//! * Writing: a grid of `B` images `[B, C, H, W]` (C = 1 or 3) in [−1, 1], clamped and
//!   quantised exactly as the reference saves samples: `u8 = floor(127.5·x + 128)`
//!   clamped to [0, 255], i.e. `(x + 1)/2·255` rounded half up. Images are laid out
//!   row-major, `columns` per row, with `padding` pixels of black around and between
//!   them (torchvision `make_grid` layout). The file is written atomically.
//!
//! Every failure is an [`Error`] value: unreadable or unwritable paths give
//! [`Error::Io`], malformed PNG data [`Error::Format`], bad shapes
//! [`Error::InvalidArgument`], NaN/∞ pixels [`Error::NonFinite`].

pub mod center_crop;
pub mod decode;
pub mod resample;

use std::io::Cursor;
use std::path::Path;

use crate::error::{check_len, Error, Result};
use crate::tensor_file::write_bytes_atomic;

/// Largest image decoded, in pixels (width × height): 8192 × 8192. The size a PNG
/// header claims is checked against it before any pixel buffer is allocated, so a
/// hostile file cannot size an allocation beyond 8 bytes (the decoder's buffer, at most
/// 16-bit RGBA) plus 12 bytes (the float image) per pixel of this limit.
pub const MAX_IMAGE_PIXELS: usize = 1 << 26;

/// A float image `[C, H, W]` with values in [−1, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct FloatImage {
    /// Channels: 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Pixel values, `[C, H, W]`, channel-major.
    pub data: Vec<f32>,
}

impl FloatImage {
    /// `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
}

/// Reads a PNG file into a float image in [−1, 1].
pub fn read_png(path: impl AsRef<Path>) -> Result<FloatImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_png(&bytes, path)
}

/// Decodes the first frame of a PNG with palettes, low-bit grayscale and tRNS expanded
/// (16 bits kept): the frame's info and its raw rows. `check_size(width, height)` runs on
/// the header before any pixel buffer is allocated. Shared by [`decode_png`] and
/// [`decode::decode_rgb8`].
pub(crate) fn decode_png_frame(bytes: &[u8], path: &Path, check_size: impl FnOnce(usize, usize) -> Result<()>) -> Result<(png::OutputInfo, Vec<u8>)> {
    let bad = |msg: String| Error::format(path, msg);
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Palette → RGB, low-bit grayscale → 8 bits, tRNS → alpha; 16 bits kept.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| bad(format!("not a valid PNG: {e}")))?;
    check_size(reader.info().width as usize, reader.info().height as usize)?;
    // The decoder (png 0.18) panics on palettes it does not check: a PLTE length that is
    // not a multiple of 3 or over 256 entries, or more tRNS entries than colours.
    if reader.info().color_type == png::ColorType::Indexed {
        let plte = reader.info().palette.as_ref().map_or(0, |p| p.len());
        let trns = reader.info().trns.as_ref().map_or(0, |t| t.len());
        if plte % 3 != 0 || plte > 3 * 256 || trns > plte / 3 {
            return Err(bad(format!("malformed palette: {plte} PLTE bytes, {trns} tRNS entries")));
        }
    }
    let size = reader.output_buffer_size().ok_or_else(|| bad("image too large".into()))?;
    let mut buf = crate::limits::try_vec::<u8>("PNG pixel buffer", size)?;
    // Any other panic of the decoder on malformed data is an error too, not the caller's crash.
    let info = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next_frame(&mut buf)))
        .map_err(|_| bad("the PNG decoder failed on malformed data".into()))?
        .map_err(|e| bad(format!("corrupt PNG data: {e}")))?;
    Ok((info, buf))
}

/// Decodes PNG bytes; `path` only names the source in error messages.
pub fn decode_png(bytes: &[u8], path: &Path) -> Result<FloatImage> {
    let bad = |msg: String| Error::format(path, msg);
    let (info, buf) = decode_png_frame(bytes, path, |w, h| {
        if w.saturating_mul(h) > MAX_IMAGE_PIXELS {
            return Err(bad(format!("image of {w}×{h} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels")));
        }
        Ok(())
    })?;
    let (width, height) = (info.width as usize, info.height as usize);
    let (in_channels, out_channels) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        png::ColorType::Indexed => return Err(bad("palette image was not expanded".into())),
    };
    let (bytes_per_sample, max) = match info.bit_depth {
        png::BitDepth::Eight => (1, 255.0f32),
        png::BitDepth::Sixteen => (2, 65535.0f32),
        other => return Err(bad(format!("unexpected bit depth {other:?} after expansion"))),
    };
    let row_bytes = width * in_channels * bytes_per_sample;
    if info.line_size < row_bytes || buf.len() < info.line_size * height {
        return Err(bad("decoded buffer is smaller than the image".into()));
    }
    let mut data = vec![0.0f32; out_channels * height * width];
    for y in 0..height {
        let row = &buf[y * info.line_size..y * info.line_size + row_bytes];
        for x in 0..width {
            for c in 0..out_channels {
                let s = (x * in_channels + c) * bytes_per_sample;
                let v = if bytes_per_sample == 1 {
                    row[s] as f32
                } else {
                    u16::from_be_bytes([row[s], row[s + 1]]) as f32
                };
                data[(c * height + y) * width + x] = v / max * 2.0 - 1.0;
            }
        }
    }
    Ok(FloatImage {
        channels: out_channels,
        height,
        width,
        data,
    })
}

/// Quantises a value in [−1, 1] to a byte as the reference does:
/// `floor(127.5·x + 128)` clamped to [0, 255].
pub fn to_u8(x: f32) -> u8 {
    (127.5 * x.clamp(-1.0, 1.0) + 128.0).floor().clamp(0.0, 255.0) as u8
}

/// Quantises a decoded VAE output value (nominally in [−1, 1]) to a byte as the
/// reference saves decoded samples: `u = clamp((x + 1)/2, 0, 1)` (`decode_to_images`),
/// then torchvision `save_image`'s `floor(u·255 + 0.5)`. NaN maps to 0.
pub fn decoded_to_u8(x: f32) -> u8 {
    let u = ((x + 1.0) / 2.0).clamp(0.0, 1.0);
    (u * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// An 8-bit image grid, row-major pixels, channels interleaved (`[H, W, C]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// `[H, W, C]` bytes.
    pub pixels: Vec<u8>,
}

/// Lays out `B` images `[B, C, H, W]` in a grid of `columns` columns (fewer if
/// `B < columns`) with `padding` black pixels around and between images.
pub fn make_grid(
    images: &[f32], // [B, C, H, W]
    shape: [usize; 4],
    columns: usize,
    padding: usize,
) -> Result<Grid> {
    let [b, c, h, w] = shape;
    if b == 0 || h == 0 || w == 0 {
        return Err(Error::invalid(format!("make_grid: empty image batch of shape {shape:?}")));
    }
    if c != 1 && c != 3 {
        return Err(Error::invalid(format!("make_grid: {c} channels; only 1 (grayscale) or 3 (RGB) can be written")));
    }
    if columns == 0 {
        return Err(Error::invalid("make_grid: columns must be at least 1"));
    }
    check_len("make_grid: images", images.len(), b * c * h * w)?;
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "make_grid: image {} has value {} at element {i}",
            i / (c * h * w),
            images[i]
        )));
    }
    let cols = columns.min(b);
    let rows = b.div_ceil(cols);
    let width = cols * (w + padding) + padding;
    let height = rows * (h + padding) + padding;
    let mut pixels = vec![0u8; width * height * c];
    for (k, img) in images.chunks_exact(c * h * w).enumerate() {
        let x0 = padding + (k % cols) * (w + padding);
        let y0 = padding + (k / cols) * (h + padding);
        for y in 0..h {
            for x in 0..w {
                let dst = ((y0 + y) * width + x0 + x) * c;
                for ch in 0..c {
                    pixels[dst + ch] = to_u8(img[(ch * h + y) * w + x]);
                }
            }
        }
    }
    Ok(Grid {
        width,
        height,
        channels: c,
        pixels,
    })
}

impl Grid {
    /// PNG bytes of the grid.
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let color = if self.channels == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb };
        let (w, h) = (u32::try_from(self.width), u32::try_from(self.height));
        let (Ok(w), Ok(h)) = (w, h) else {
            return Err(Error::invalid(format!("grid of {}x{} pixels is too large for PNG", self.width, self.height)));
        };
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let err = |e: png::EncodingError| Error::Internal(format!("png encoding: {e}"));
        let mut writer = encoder.write_header().map_err(err)?;
        writer.write_image_data(&self.pixels).map_err(err)?;
        writer.finish().map_err(err)?;
        Ok(out)
    }

    /// Writes the grid as a PNG file (atomically).
    pub fn write_png(&self, path: impl AsRef<Path>) -> Result<()> {
        write_bytes_atomic(path.as_ref(), &self.encode_png()?)
    }
}

/// Writes `B` images `[B, C, H, W]` in [−1, 1] as one PNG grid; see [`make_grid`].
pub fn write_png_grid(
    path: impl AsRef<Path>,
    images: &[f32], // [B, C, H, W]
    shape: [usize; 4],
    columns: usize,
    padding: usize,
) -> Result<()> {
    make_grid(images, shape, columns, padding)?.write_png(path)
}

/// Enlarges images `[B, C, H, W]` by an integer `factor` with nearest-neighbour
/// sampling (every pixel becomes a `factor`×`factor` block), giving
/// `[B, C, H·factor, W·factor]`: small images stay crisp when shown on a screen.
pub fn upscale_nearest(
    images: &[f32], // [B, C, H, W]
    shape: [usize; 4],
    factor: usize,
) -> Result<Vec<f32>> {
    let [b, c, h, w] = shape;
    if factor == 0 {
        return Err(Error::invalid("upscale_nearest: factor must be at least 1"));
    }
    check_len("upscale_nearest: images", images.len(), b * c * h * w)?;
    let (oh, ow) = (h * factor, w * factor);
    let mut out = vec![0.0f32; b * c * oh * ow];
    for (plane, dst) in images.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for y in 0..oh {
            for x in 0..ow {
                dst[y * ow + x] = plane[(y / factor) * w + x / factor];
            }
        }
    }
    Ok(out)
}

/// Writes `B` images `[B, C, H, W]` as one PNG grid enlarged `factor` times with
/// nearest-neighbour sampling ([`upscale_nearest`]), `columns` per row and `padding`
/// black pixels around and between the enlarged images.
pub fn write_png_grid_upscaled(
    path: impl AsRef<Path>,
    images: &[f32], // [B, C, H, W]
    shape: [usize; 4],
    columns: usize,
    padding: usize,
    factor: usize,
) -> Result<()> {
    let [b, c, h, w] = shape;
    let big = upscale_nearest(images, shape, factor)?;
    write_png_grid(path, &big, [b, c, h * factor, w * factor], columns, padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_matches_reference_formula() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(-7.0), 0);
        assert_eq!(to_u8(3.0), 255);
        assert_eq!(to_u8(0.0), 128); // 127.5 rounds half up
                                     // (x+1)/2·255 = 63.75 → 64
        assert_eq!(to_u8(-0.5), 64);
        // Every byte value survives byte → float → byte.
        for v in 0..=255u8 {
            assert_eq!(to_u8(v as f32 / 255.0 * 2.0 - 1.0), v);
        }
    }

    #[test]
    fn grid_layout_places_images_with_padding() {
        // Three 1×2×2 images, two columns, padding 1 → 2 rows: 7 wide, 7 high.
        let imgs = [
            -1.0, -1.0, -1.0, -1.0, // image 0: black
            1.0, 1.0, 1.0, 1.0, // image 1: white
            0.0, 0.0, 0.0, 0.0, // image 2: mid grey
        ];
        let g = make_grid(&imgs, [3, 1, 2, 2], 2, 1).unwrap();
        assert_eq!((g.width, g.height, g.channels), (7, 7, 1));
        let at = |x: usize, y: usize| g.pixels[y * g.width + x];
        assert_eq!(at(4, 1), 255);
        assert_eq!(at(5, 2), 255);
        assert_eq!(at(1, 4), 128);
        assert_eq!(at(3, 1), 0); // padding between images
        assert_eq!(at(4, 4), 0); // empty last cell
    }

    #[test]
    fn bad_grid_arguments_are_errors() {
        let x = [0.0f32; 8];
        assert!(matches!(make_grid(&x, [2, 2, 2, 1], 1, 1), Err(Error::InvalidArgument(_))));
        assert!(matches!(make_grid(&x, [2, 1, 2, 2], 0, 1), Err(Error::InvalidArgument(_))));
        assert!(matches!(make_grid(&x, [3, 1, 2, 2], 1, 1), Err(Error::InvalidArgument(_))));
        let mut y = x;
        y[5] = f32::NAN;
        assert!(matches!(make_grid(&y, [2, 1, 2, 2], 1, 1), Err(Error::NonFinite(_))));
    }

    #[test]
    fn nearest_upscaling_repeats_pixels() {
        // One 1×2×2 image ×3 → 6×6 with 3×3 blocks.
        let img = [-1.0, 1.0, 0.0, 0.5];
        let big = upscale_nearest(&img, [1, 1, 2, 2], 3).unwrap();
        assert_eq!(big.len(), 36);
        assert_eq!(big[0], -1.0);
        assert_eq!(big[2], -1.0);
        assert_eq!(big[3], 1.0);
        assert_eq!(big[5 * 6 + 5], 0.5);
        assert_eq!(big[3 * 6], 0.0);
        assert!(matches!(upscale_nearest(&img, [1, 1, 2, 2], 0), Err(Error::InvalidArgument(_))));
        let g = make_grid(&big, [1, 1, 6, 6], 1, 2).unwrap();
        assert_eq!((g.width, g.height), (10, 10));
    }
}
