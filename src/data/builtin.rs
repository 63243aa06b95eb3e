//! A built-in, class-conditional image dataset generated in code ("shapes-10").
//!
//! Every item is a 16×16 image (3 channels, or 1 for the grayscale variant) with
//! values in [−1, 1]: one anti-aliased shape (4×4 supersampling) on a dark background.
//! The class fixes the shape and, in RGB, its base colour:
//!
//! | class | name | shape | RGB base colour |
//! |---|---|---|---|
//! | 0 | `disc` | filled circle | red |
//! | 1 | `ring` | circle outline | orange |
//! | 2 | `square` | filled square | yellow |
//! | 3 | `frame` | square outline | green |
//! | 4 | `triangle` | filled triangle, apex up | cyan |
//! | 5 | `plus` | upright cross `+` | blue |
//! | 6 | `cross` | diagonal cross `×` | violet |
//! | 7 | `hstripes` | square of horizontal stripes, period 4 px | magenta |
//! | 8 | `vstripes` | square of vertical stripes, period 4 px | white |
//! | 9 | `checker` | square checkerboard, 2 px cells | pink |
//!
//! Per item, drawn from a generator seeded by `(seed, split, index)`: the centre
//! (±2 px around the image centre), the size (half-extent 3.5–5.5 px), the stroke
//! width (1.2–2.2 px), the foreground colour (base ± 0.2 per channel; grayscale: a
//! level in [0.3, 1]) and the background grey level (−0.95 … −0.65). The label of
//! item `i` is `i mod 10`, so every split is class-balanced.
//!
//! Items are a pure function of `(seed, split, index)`: [`Dataset::get`] consumes no
//! randomness (every index is already a fresh random draw, so no flip augmentation).
//! The train split uses indices `0..len`, the held-out split indices `2^40 + (0..len)`
//! of the same generator family, so the two never share an item.

use super::{check_get_args, derive_seed, Dataset};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Side length of the images.
pub const SIZE: usize = 16;
/// Number of classes.
pub const NUM_CLASSES: usize = 10;
/// Class names, indexed by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "disc", "ring", "square", "frame", "triangle", "plus", "cross", "hstripes", "vstripes", "checker",
];
/// Default number of train items.
pub const DEFAULT_TRAIN_LEN: usize = 50_000;
/// Default number of held-out items.
pub const DEFAULT_HELD_OUT_LEN: usize = 10_000;

const HELD_OUT_OFFSET: u64 = 1 << 40;
const DOMAIN_ITEM: u64 = 0x5348_4150_4553_3130; // "SHAPES10"

/// RGB base colours in [−1, 1], indexed by class.
const BASE_COLOURS: [[f32; 3]; NUM_CLASSES] = [
    [0.9, -0.7, -0.7], // red
    [0.9, 0.1, -0.8],  // orange
    [0.8, 0.8, -0.7],  // yellow
    [-0.6, 0.8, -0.6], // green
    [-0.7, 0.8, 0.8],  // cyan
    [-0.6, -0.4, 0.9], // blue
    [0.3, -0.6, 0.9],  // violet
    [0.9, -0.6, 0.7],  // magenta
    [0.8, 0.8, 0.8],   // white
    [0.9, 0.3, 0.4],   // pink
];

/// Which index range a [`BuiltinShapes`] covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Indices `0..len`.
    Train,
    /// Indices `2^40 + (0..len)`: disjoint from any train split.
    HeldOut,
}

/// The built-in shapes-10 dataset; see the module documentation.
#[derive(Clone, Debug)]
pub struct BuiltinShapes {
    split: Split,
    channels: usize,
    seed: u64,
    len: usize,
}

/// Geometry and colours of one item.
struct Item {
    class: usize,
    cx: f32,
    cy: f32,
    size: f32,
    stroke: f32,
    foreground: [f32; 3],
    background: f32,
}

impl BuiltinShapes {
    /// The split with its default length, `channels` = 1 (grayscale) or 3 (RGB).
    pub fn new(split: Split, channels: usize, seed: u64) -> Result<Self> {
        if channels != 1 && channels != 3 {
            return Err(Error::invalid(format!("builtin shapes: channels must be 1 or 3, got {channels}")));
        }
        let len = match split {
            Split::Train => DEFAULT_TRAIN_LEN,
            Split::HeldOut => DEFAULT_HELD_OUT_LEN,
        };
        Ok(BuiltinShapes { split, channels, seed, len })
    }

    /// The same split with `len` items (at most 2^40).
    pub fn with_len(self, len: usize) -> Result<Self> {
        if len as u64 > HELD_OUT_OFFSET {
            return Err(Error::invalid(format!("builtin shapes: len {len} exceeds 2^40")));
        }
        Ok(BuiltinShapes { len, ..self })
    }

    /// Which split this is.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Renders items `0..n` into one buffer `[n, C, 16, 16]` with their labels.
    pub fn render_all(&self, n: usize) -> Result<(Vec<f32>, Vec<usize>)> {
        let sample_len = self.sample_len();
        let mut x = vec![0.0f32; n * sample_len];
        let mut labels = Vec::with_capacity(n);
        let mut unused = Rng::new(0);
        for (i, out) in x.chunks_exact_mut(sample_len).enumerate() {
            labels.push(self.get(i, &mut unused, out)?);
        }
        Ok((x, labels))
    }

    fn item(&self, index: usize) -> Item {
        let global = match self.split {
            Split::Train => index as u64,
            Split::HeldOut => HELD_OUT_OFFSET + index as u64,
        };
        let mut rng = Rng::new(derive_seed(self.seed, DOMAIN_ITEM, global));
        let mut u = |lo: f32, hi: f32| lo + (hi - lo) * rng.uniform() as f32;
        let class = index % NUM_CLASSES;
        let cx = u(6.0, 10.0);
        let cy = u(6.0, 10.0);
        let size = u(3.5, 5.5);
        let stroke = u(1.2, 2.2);
        let jitter = [u(-0.2, 0.2), u(-0.2, 0.2), u(-0.2, 0.2)];
        let grey = u(0.3, 1.0);
        let background = u(-0.95, -0.65);
        let foreground = if self.channels == 3 {
            let base = BASE_COLOURS[class];
            [0, 1, 2].map(|c| (base[c] + jitter[c]).clamp(-1.0, 1.0))
        } else {
            [grey; 3]
        };
        Item {
            class,
            cx,
            cy,
            size,
            stroke,
            foreground,
            background,
        }
    }
}

/// Whether the point `(px, py)` (pixel units, origin at the top-left corner) lies in
/// the item's shape.
fn inside(item: &Item, px: f32, py: f32) -> bool {
    let (dx, dy) = (px - item.cx, py - item.cy);
    let s = item.size;
    let half_stroke = 0.5 * item.stroke;
    let in_box = dx.abs().max(dy.abs()) <= s;
    match item.class {
        0 => dx.hypot(dy) <= s,
        1 => {
            let d = dx.hypot(dy);
            d <= s && d >= s - item.stroke
        }
        2 => in_box,
        3 => in_box && dx.abs().max(dy.abs()) >= s - item.stroke,
        4 => {
            // Apex (0, −s), base corners (±s, 0.8·s): below the apex's two edges.
            let base = 0.8 * s;
            let height = base + s;
            dy <= base && dx.abs() <= s * (dy + s) / height
        }
        5 => (dx.abs() <= half_stroke && dy.abs() <= s) || (dy.abs() <= half_stroke && dx.abs() <= s),
        6 => {
            let u = (dx + dy) * std::f32::consts::FRAC_1_SQRT_2;
            let v = (dx - dy) * std::f32::consts::FRAC_1_SQRT_2;
            (u.abs() <= half_stroke && v.abs() <= s) || (v.abs() <= half_stroke && u.abs() <= s)
        }
        7 => in_box && (dy + s).rem_euclid(4.0) < 2.0,
        8 => in_box && (dx + s).rem_euclid(4.0) < 2.0,
        _ => in_box && (((dx + s) / 2.0).floor() as i64 + ((dy + s) / 2.0).floor() as i64) % 2 == 0,
    }
}

/// Renders an item into `[C, 16, 16]` with 4×4 supersampling per pixel.
fn render(item: &Item, channels: usize, out: &mut [f32] /* [C, 16, 16] */) {
    const SUB: usize = 4;
    for y in 0..SIZE {
        for x in 0..SIZE {
            let mut hits = 0usize;
            for sy in 0..SUB {
                for sx in 0..SUB {
                    let px = x as f32 + (sx as f32 + 0.5) / SUB as f32;
                    let py = y as f32 + (sy as f32 + 0.5) / SUB as f32;
                    hits += inside(item, px, py) as usize;
                }
            }
            let coverage = hits as f32 / (SUB * SUB) as f32;
            for c in 0..channels {
                out[(c * SIZE + y) * SIZE + x] = item.background + coverage * (item.foreground[c] - item.background);
            }
        }
    }
}

impl Dataset for BuiltinShapes {
    fn sample_shape(&self) -> [usize; 3] {
        [self.channels, SIZE, SIZE]
    }

    fn num_classes(&self) -> usize {
        NUM_CLASSES
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize, _rng: &mut Rng, x_out: &mut [f32] /* [C, 16, 16] */) -> Result<usize> {
        check_get_args("builtin shapes", index, self.len, x_out, self.sample_len())?;
        let item = self.item(index);
        render(&item, self.channels, x_out);
        Ok(item.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(class: usize) -> Vec<bool> {
        let item = Item {
            class,
            cx: 8.0,
            cy: 8.0,
            size: 5.0,
            stroke: 2.0,
            foreground: [1.0; 3],
            background: -1.0,
        };
        let mut out = vec![0.0; SIZE * SIZE];
        render(&item, 1, &mut out);
        out.iter().map(|&v| v > 0.0).collect()
    }

    #[test]
    fn every_class_has_a_distinct_centred_shape() {
        let masks: Vec<Vec<bool>> = (0..NUM_CLASSES).map(mask).collect();
        for (a, ma) in masks.iter().enumerate() {
            let area = ma.iter().filter(|&&b| b).count();
            assert!(area >= 12, "class {} covers only {area} pixels", CLASS_NAMES[a]);
            for (b, mb) in masks.iter().enumerate().skip(a + 1) {
                let differ = ma.iter().zip(mb).filter(|(p, q)| p != q).count();
                assert!(differ >= 8, "classes {} and {} differ in only {differ} pixels", CLASS_NAMES[a], CLASS_NAMES[b]);
            }
        }
        // Shapes with holes leave their centre dark; filled ones cover it.
        let centre = 8 * SIZE + 8;
        assert!(masks[0][centre] && masks[2][centre] && !masks[1][centre] && !masks[3][centre]);
    }
}
