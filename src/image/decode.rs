//! PNG and JPEG files → 8-bit RGB pixels, as the reference's data loader sees them
//! (torchvision `ImageFolder` opens every file with PIL and calls `.convert("RGB")`).
//!
//! * PNG (the `png` crate): palette → RGB through the palette, grayscale → the gray value
//!   in all three channels, alpha dropped (PIL's `convert("RGB")` drops it too, it does
//!   not composite). 16-bit samples keep their high byte, as PIL does for 16-bit RGB(A)
//!   PNGs. One documented difference: PIL opens a 16-bit *grayscale* PNG as mode `I;16`
//!   and its RGB conversion clips every value above 255 to white; we take the high byte
//!   there as well, which keeps the picture.
//! * JPEG (the `zune-jpeg` crate): baseline and progressive, grayscale, YCbCr and CMYK,
//!   decoded to RGB. EXIF orientation is not applied (PIL does not apply it either).
//!   Decoders differ in their IDCT and chroma upsampling: pixels agree with PIL's
//!   libjpeg(-turbo) decode to within a few levels, not bit for bit (see
//!   `tests/image_preprocess.rs`).
//!
//! The format is chosen from the file's first bytes, not its name. Sizes are checked
//! against [`MAX_IMAGE_PIXELS`] before a pixel buffer is allocated.

use std::path::Path;

use super::MAX_IMAGE_PIXELS;
use crate::error::{Error, Result};

/// An 8-bit RGB image, pixels row-major with interleaved channels (`[H, W, 3]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `[H, W, 3]` bytes.
    pub pixels: Vec<u8>,
}

impl Rgb8Image {
    /// An image of `width × height` pixels from `[H, W, 3]` bytes.
    pub fn new(width: usize, height: usize, pixels: Vec<u8> /* [H, W, 3] */) -> Result<Self> {
        crate::error::check_len("Rgb8Image: pixels", pixels.len(), width.saturating_mul(height).saturating_mul(3))?;
        Ok(Rgb8Image { width, height, pixels })
    }
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
const JPEG_SOI: [u8; 3] = [0xff, 0xd8, 0xff];

/// Reads a PNG or JPEG file into 8-bit RGB.
pub fn read_rgb8(path: impl AsRef<Path>) -> Result<Rgb8Image> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb8(&bytes, path)
}

/// Decodes PNG or JPEG bytes into 8-bit RGB; `path` only names the source in errors.
pub fn decode_rgb8(bytes: &[u8], path: &Path) -> Result<Rgb8Image> {
    if bytes.starts_with(&PNG_SIGNATURE) {
        decode_png_rgb8(bytes, path)
    } else if bytes.starts_with(&JPEG_SOI) {
        decode_jpeg_rgb8(bytes, path)
    } else {
        Err(Error::format(path, "not an image: neither a PNG nor a JPEG file (checked by its first bytes)"))
    }
}

fn check_pixels(path: &Path, w: usize, h: usize) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(Error::format(path, format!("image of {w}×{h} pixels is empty")));
    }
    if w.saturating_mul(h) > MAX_IMAGE_PIXELS {
        return Err(Error::format(
            path,
            format!("image of {w}×{h} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels"),
        ));
    }
    Ok(())
}

fn decode_png_rgb8(bytes: &[u8], path: &Path) -> Result<Rgb8Image> {
    let bad = |msg: String| Error::format(path, msg);
    let (info, buf) = super::decode_png_frame(bytes, path, |w, h| check_pixels(path, w, h))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let in_channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(bad("palette image was not expanded".into())),
    };
    let bytes_per_sample = match info.bit_depth {
        png::BitDepth::Eight => 1,
        png::BitDepth::Sixteen => 2,
        other => return Err(bad(format!("unexpected bit depth {other:?} after expansion"))),
    };
    let row_bytes = width * in_channels * bytes_per_sample;
    if info.line_size < row_bytes || buf.len() < info.line_size * height {
        return Err(bad("decoded buffer is smaller than the image".into()));
    }
    let mut pixels = crate::limits::try_vec::<u8>("RGB pixels", width * height * 3)?;
    for y in 0..height {
        let row = &buf[y * info.line_size..y * info.line_size + row_bytes];
        for x in 0..width {
            for c in 0..3 {
                // Gray (± alpha) repeats channel 0; RGB(A) takes channel c. The high byte
                // of a 16-bit big-endian sample comes first.
                let src = if in_channels <= 2 { 0 } else { c };
                pixels[(y * width + x) * 3 + c] = row[(x * in_channels + src) * bytes_per_sample];
            }
        }
    }
    Ok(Rgb8Image { width, height, pixels })
}

fn decode_jpeg_rgb8(bytes: &[u8], path: &Path) -> Result<Rgb8Image> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let bad = |msg: String| Error::format(path, msg);
    // The decoder refuses headers beyond these sizes before allocating.
    let side = MAX_IMAGE_PIXELS;
    let options = DecoderOptions::default()
        .set_max_width(side)
        .set_max_height(side)
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| bad(format!("not a valid JPEG: {e:?}")))?;
    let (w, h) = decoder.dimensions().ok_or_else(|| bad("JPEG without a frame header".into()))?;
    check_pixels(path, w, h)?;
    let size = w * h * 3;
    let mut pixels = crate::limits::try_vec::<u8>("JPEG pixel buffer", size)?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode_into(&mut pixels)))
        .map_err(|_| bad("the JPEG decoder failed on malformed data".into()))?
        .map_err(|e| bad(format!("corrupt JPEG data: {e:?}")))?;
    if decoder.output_colorspace() != Some(ColorSpace::RGB) {
        return Err(bad(format!("JPEG decoded to {:?}, not RGB", decoder.output_colorspace())));
    }
    Ok(Rgb8Image { width: w, height: h, pixels })
}
