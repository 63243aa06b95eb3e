//! PNG grids and PNG reading: sizes, pixel values after the reference quantisation,
//! every PNG colour type, and errors as values.

use std::path::Path;

use ucgm::image::{make_grid, read_png, to_u8, write_png_grid};
use ucgm::{Error, Rng};

/// Encodes raw PNG samples with the `png` crate (to produce colour types the grid
/// writer never writes).
fn encode(path: &Path, w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8], palette: Option<Vec<u8>>) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    if let Some(p) = palette {
        enc.set_palette(p);
    }
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}

/// The float a byte decodes to.
fn from_u8(v: u8) -> f32 {
    v as f32 / 255.0 * 2.0 - 1.0
}

#[test]
fn rgb_grid_is_written_and_read_back_with_the_right_size_and_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.png");
    let (b, c, h, w) = (5, 3, 4, 6);
    // Values beyond [−1, 1] too, to check clamping.
    let images: Vec<f32> = Rng::new(3).normal_f32(b * c * h * w);
    let (columns, padding) = (3, 2);
    write_png_grid(&path, &images, [b, c, h, w], columns, padding).unwrap();

    let img = read_png(&path).unwrap();
    let width = columns * (w + padding) + padding; // 26
    let height = 2 * (h + padding) + padding; // 14: five images in two rows
    assert_eq!(img.shape(), [3, height, width]);
    for k in 0..b {
        let (x0, y0) = (padding + (k % columns) * (w + padding), padding + (k / columns) * (h + padding));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let want = from_u8(to_u8(images[((k * c + ch) * h + y) * w + x]));
                    let got = img.data[(ch * height + y0 + y) * width + x0 + x];
                    assert_eq!(got, want, "image {k} channel {ch} pixel ({y}, {x})");
                }
            }
        }
    }
    // Padding (the top-left corner and the gap between images 0 and 1) is black.
    assert_eq!(img.data[0], -1.0);
    assert_eq!(img.data[padding * width + padding + w], -1.0);
    // The sixth cell of the 3×2 layout is empty (black).
    assert_eq!(img.data[(height - padding - 1) * width + width - padding - 1], -1.0);
}

#[test]
fn grayscale_grid_and_single_image_roundtrip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.png");
    // Values that are exactly representable after quantisation.
    let x: Vec<f32> = (0..12u8).map(|i| from_u8(i * 20)).collect();
    write_png_grid(&path, &x, [1, 1, 3, 4], 8, 0).unwrap();
    let img = read_png(&path).unwrap();
    assert_eq!(img.shape(), [1, 3, 4]);
    assert_eq!(img.data, x);
    // Grid geometry as torchvision's make_grid: 1-pixel padding, 2 columns, 3 images.
    let g = make_grid(&[0.0; 3 * 4], [3, 1, 2, 2], 2, 1).unwrap();
    assert_eq!((g.width, g.height), (7, 7));
}

#[test]
fn every_png_colour_type_and_depth_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.png");
    use png::{BitDepth, ColorType};

    // Gray + alpha, 8 bit: alpha dropped → 1 channel.
    encode(&p, 2, 1, ColorType::GrayscaleAlpha, BitDepth::Eight, &[0, 7, 255, 9], None);
    let img = read_png(&p).unwrap();
    assert_eq!((img.shape(), img.data.clone()), ([1, 1, 2], vec![-1.0, 1.0]));

    // RGBA → 3 channels, planar.
    encode(&p, 2, 1, ColorType::Rgba, BitDepth::Eight, &[255, 0, 0, 1, 0, 255, 0, 2], None);
    let img = read_png(&p).unwrap();
    assert_eq!((img.shape(), img.data.clone()), ([3, 1, 2], vec![1.0, -1.0, -1.0, 1.0, -1.0, -1.0]));

    // 16-bit grayscale: 65535 → 1, 0 → −1.
    encode(&p, 2, 1, ColorType::Grayscale, BitDepth::Sixteen, &[0xFF, 0xFF, 0, 0], None);
    let img = read_png(&p).unwrap();
    assert_eq!((img.shape(), img.data.clone()), ([1, 1, 2], vec![1.0, -1.0]));

    // 1-bit grayscale expands to 0/255.
    encode(&p, 8, 1, ColorType::Grayscale, BitDepth::One, &[0b1010_0000], None);
    let img = read_png(&p).unwrap();
    assert_eq!(img.data, vec![1.0, -1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0]);

    // Palette → RGB.
    encode(&p, 2, 1, ColorType::Indexed, BitDepth::Eight, &[1, 0], Some(vec![0, 0, 0, 255, 255, 255]));
    let img = read_png(&p).unwrap();
    assert_eq!((img.shape(), img.data.clone()), ([3, 1, 2], vec![1.0, -1.0, 1.0, -1.0, 1.0, -1.0]));
}

#[test]
fn io_and_format_problems_are_error_values() {
    let dir = tempfile::tempdir().unwrap();
    let x = [0.0f32; 2 * 3 * 4 * 4];
    // Unwritable destination.
    let r = write_png_grid(dir.path().join("no/such/dir/g.png"), &x, [2, 3, 4, 4], 2, 1);
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    // A directory in place of the file.
    let r = write_png_grid(dir.path(), &x, [2, 3, 4, 4], 2, 1);
    assert!(r.is_err());
    // Missing file.
    assert!(matches!(read_png(dir.path().join("missing.png")), Err(Error::Io { .. })));
    // Not a PNG.
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"definitely not a png").unwrap();
    assert!(matches!(read_png(&bad), Err(Error::Format { .. })));
    // A truncated PNG.
    let good = dir.path().join("good.png");
    write_png_grid(&good, &x, [2, 3, 4, 4], 2, 1).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    match read_png(&bad) {
        Err(Error::Format { path, .. }) => assert_eq!(path, bad),
        other => panic!("expected a format error, got {other:?}"),
    }
    // Wrong lengths and channel counts.
    assert!(matches!(write_png_grid(&good, &x[1..], [2, 3, 4, 4], 2, 1), Err(Error::InvalidArgument(_))));
    assert!(matches!(write_png_grid(&good, &x, [4, 6, 2, 2], 2, 1), Err(Error::InvalidArgument(_))));
    let mut nan = x;
    nan[40] = f32::INFINITY;
    assert!(matches!(write_png_grid(&good, &nan, [2, 3, 4, 4], 2, 1), Err(Error::NonFinite(_))));
}
