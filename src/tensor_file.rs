//! Safetensors files: strict reading (f32, f16, bf16 converted to f32; i64/i32 labels)
//! with errors that name the file and the tensor, and atomic writing (temp file in the
//! same folder, fsync, rename), so an interrupted write never damages the previous file.
//!
//! Every file the engine writes carries a CRC-32 of its tensors (names, dtypes, shapes
//! and data, in name order) in the metadata under [`CHECKSUM_KEY`]; [`TensorFile::open`]
//! verifies it, so bytes damaged on disk or in transfer fail to load instead of loading
//! as finite garbage. Files without one (converted official checkpoints) load unchecked.
//!
//! Large loads touch each byte once: [`TensorFile::read_f32_into`] reads a tensor straight
//! into the caller's buffer (f32 with positioned reads into its bytes, other float dtypes
//! through one small chunk buffer), and a [`OnePassReader`] over a file opened with
//! [`TensorFile::open_header`] checksums each tensor while it is read into place, streams
//! the tensors nobody asked for, and combines the per-tensor CRCs in name order into the
//! file's checksum (`crc32fast::Hasher::combine`), so verification costs no second pass.
//! Reads are positioned reads, never a memory map: a file truncated while mapped would
//! kill the process with SIGBUS; here it gives an error.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};

/// Metadata key of the tensor checksum: `"crc32:<8 hex digits>"`.
pub const CHECKSUM_KEY: &str = "ucgm_checksum";

/// Header bytes accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Bytes read per call while streaming tensor data (small enough that the bytes just
/// read are still in cache when they are checksummed and converted).
const CHUNK: usize = 1 << 20;

/// Feeds one tensor's identity (name, dtype, shape, byte length) to the checksum; the
/// data follows with [`crc32fast::Hasher::update`].
fn checksum_head(h: &mut crc32fast::Hasher, name: &str, dtype: Dtype, shape: &[usize], len: usize) {
    h.update(name.as_bytes());
    h.update(&[0]);
    h.update(format!("{dtype:?}").as_bytes());
    for &d in shape {
        h.update(&(d as u64).to_le_bytes());
    }
    h.update(&(len as u64).to_le_bytes());
}

fn checksum_text(h: crc32fast::Hasher) -> String {
    format!("crc32:{:08x}", h.finalize())
}

/// The checksum of tensors given as (name, dtype, shape, data), in any order.
fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> String {
    let mut items: Vec<_> = tensors.into_iter().collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    for (name, dtype, shape, data) in items {
        checksum_head(&mut h, name, dtype, shape, data.len());
        h.update(data);
    }
    checksum_text(h)
}

/// Where one tensor lies in the file.
#[derive(Clone, Debug)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// A safetensors file, opened and validated, whose tensors are read one at a time.
///
/// Opening reads only the header: its size, every tensor's dtype, shape and byte range
/// are checked against each other and against the file's length before any tensor data
/// is touched, so a header that claims more bytes than the file holds fails at once and
/// allocates nothing. Each tensor is then read on request with positioned reads (no
/// copy of the whole file is ever held).
pub struct TensorFile {
    path: PathBuf,
    file: std::fs::File,
    metadata: HashMap<String, String>,
    names: Vec<String>,
    entries: HashMap<String, Entry>,
    /// Whether the stored checksum (if any) has been verified: by [`TensorFile::open`],
    /// not by [`TensorFile::open_header`], whose [`OnePassReader`]s verify it instead.
    verified: bool,
}

impl TensorFile {
    /// Opens a file: header validated, checksum (when stored) verified by streaming.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let mut tf = Self::open_header(path)?;
        if tf.metadata.contains_key(CHECKSUM_KEY) {
            tf.check_checksum(tf.compute_checksum()?)?;
        }
        tf.verified = true;
        Ok(tf)
    }

    /// Opens a file reading and validating only its header: no tensor data is read and
    /// the checksum is not verified (for checks of a large file's metadata before it
    /// is loaded with [`TensorFile::open`]), except by a [`OnePassReader`] that reads
    /// the tensors (as `weights::read_params` does: one pass over the data in all).
    pub fn open_header(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bad = |msg: String| Error::format(&path, format!("not a valid safetensors file: {msg}"));
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            return Err(Error::io(&path, std::io::Error::other("is a directory")));
        }
        let file_len = meta.len();
        let mut len8 = [0u8; 8];
        read_at(&file, &mut len8, 0).map_err(|_| bad(format!("{file_len} bytes: too short for a header")))?;
        let n = u64::from_le_bytes(len8);
        if n > MAX_HEADER || n > file_len - 8 {
            return Err(bad(format!(
                "header length {n} exceeds the file ({file_len} bytes) or the {MAX_HEADER}-byte limit"
            )));
        }
        let mut header = vec![0u8; n as usize];
        read_at(&file, &mut header, 8).map_err(|e| Error::io(&path, e))?;
        let text = std::str::from_utf8(&header).map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
        let data_start = 8 + n;
        let data_len = file_len - data_start;
        let mut metadata = HashMap::new();
        let mut entries = HashMap::new();
        for (name, v) in json {
            if name == "__metadata__" {
                metadata = serde_json::from_value(v).map_err(|e| bad(format!("__metadata__ is not a map of strings: {e}")))?;
                continue;
            }
            let info: RawInfo = serde_json::from_value(v).map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
            let [s, e] = info.data_offsets;
            let numel = info
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor {name:?}: shape {:?} overflows", info.shape)))?;
            let bytes = numel
                .checked_mul(info.dtype.bitsize())
                .map(|b| b.div_ceil(8))
                .ok_or_else(|| bad(format!("tensor {name:?}: shape {:?} overflows", info.shape)))?;
            if e < s || (e - s) as u128 != bytes as u128 {
                return Err(bad(format!(
                    "tensor {name:?}: byte range {s}..{e} does not hold a {:?} {:?} tensor ({bytes} bytes)",
                    info.dtype, info.shape
                )));
            }
            if e > data_len {
                return Err(bad(format!(
                    "tensor {name:?}: byte range {s}..{e} lies beyond the end of the data ({data_len} bytes)"
                )));
            }
            entries.insert(
                name,
                Entry {
                    dtype: info.dtype,
                    shape: info.shape,
                    start: data_start + s,
                    end: data_start + e,
                },
            );
        }
        // The tensors must tile the data exactly (as the safetensors crate requires).
        let mut ranges: Vec<(u64, u64, &String)> = entries.iter().map(|(k, e)| (e.start, e.end, k)).collect();
        ranges.sort();
        let mut at = data_start;
        for (s, e, name) in &ranges {
            if *s != at {
                return Err(bad(format!("tensor {name:?} starts at byte {s}, expected {at} (overlap or gap)")));
            }
            at = *e;
        }
        if at != file_len {
            return Err(bad(format!(
                "the tensors end at byte {at} but the file has {file_len} (truncated or trailing data)"
            )));
        }
        let mut names: Vec<String> = entries.keys().cloned().collect();
        names.sort();
        Ok(TensorFile {
            path,
            file,
            metadata,
            names,
            entries,
            verified: false,
        })
    }

    /// Compares a computed checksum with the stored one: a mismatch is a format error.
    fn check_checksum(&self, computed: String) -> Result<()> {
        match self.metadata.get(CHECKSUM_KEY) {
            Some(stored) if *stored != computed => Err(Error::format(
                &self.path,
                format!("checksum mismatch: the tensor data is damaged (stored {stored}, computed {computed})"),
            )),
            _ => Ok(()),
        }
    }

    /// The checksum of the file's tensors, streamed in chunks: the per-tensor CRCs
    /// combined in name order (equal to one CRC over all heads and bytes in that order).
    fn compute_checksum(&self) -> Result<String> {
        let mut h = crc32fast::Hasher::new();
        let mut buf = Vec::new();
        for name in &self.names {
            h.combine(&self.tensor_crc(name, &self.entries[name], &mut buf)?);
        }
        Ok(checksum_text(h))
    }

    /// One tensor's CRC (its head, then its bytes), streamed through `buf`.
    fn tensor_crc(&self, name: &str, e: &Entry, buf: &mut Vec<u8>) -> Result<crc32fast::Hasher> {
        let mut h = crc32fast::Hasher::new();
        checksum_head(&mut h, name, e.dtype, &e.shape, (e.end - e.start) as usize);
        let buf = chunk_buffer(buf);
        let mut at = e.start;
        while at < e.end {
            let k = ((e.end - at) as usize).min(CHUNK);
            read_at(&self.file, &mut buf[..k], at).map_err(|err| Error::io(&self.path, err))?;
            h.update(&buf[..k]);
            at += k as u64;
        }
        Ok(h)
    }

    /// A reader that reads tensors into place and, when this file's checksum is not yet
    /// verified (opened with [`TensorFile::open_header`]), verifies it in the same pass.
    pub fn one_pass(&self) -> OnePassReader<'_> {
        let pending = !self.verified && self.metadata.contains_key(CHECKSUM_KEY);
        OnePassReader {
            file: self,
            crcs: pending.then(HashMap::new),
            buf: Vec::new(),
        }
    }

    /// Reads floating-point tensor `name`, whose shape must equal `shape`, into `dst`
    /// (`[prod(shape)]`), converting f16, bf16 and f64 to f32. F32 data is read straight
    /// into `dst`'s bytes; other dtypes pass through one chunk-sized buffer. No checksum
    /// is computed here (see [`TensorFile::one_pass`]).
    pub fn read_f32_into(&self, name: &str, shape: &[usize], dst: &mut [f32]) -> Result<()> {
        let e = self.float_entry(name, shape, dst.len())?;
        self.read_entry_into(e, dst, &mut Vec::new(), None)
    }

    /// Tensor `name`'s entry, checked to be floating point, of shape `shape`, and to fill
    /// a destination of `dst_len` values exactly.
    fn float_entry(&self, name: &str, shape: &[usize], dst_len: usize) -> Result<&Entry> {
        let e = self.entry(name)?;
        if !matches!(e.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has unsupported dtype {:?} (expected F32, F16 or BF16)",
                self.path.display(),
                e.dtype
            )));
        }
        if e.shape != shape {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has shape {:?}, expected {shape:?}",
                self.path.display(),
                e.shape
            )));
        }
        // (the header check made the byte length prod(shape) × the dtype's size)
        let numel: usize = e.shape.iter().product();
        if numel != dst_len {
            return Err(Error::invalid(format!(
                "{}: tensor {name:?} of shape {shape:?} has {numel} values, but the destination holds {dst_len}",
                self.path.display()
            )));
        }
        Ok(e)
    }

    /// Reads a floating-point entry (checked by [`TensorFile::float_entry`]) into `dst`,
    /// feeding its bytes to `crc` as they are read; `buf` is the reusable chunk buffer.
    fn read_entry_into(&self, e: &Entry, dst: &mut [f32], buf: &mut Vec<u8>, mut crc: Option<&mut crc32fast::Hasher>) -> Result<()> {
        let io = |err| Error::io(&self.path, err);
        if e.dtype == Dtype::F32 {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(dst);
            let mut at = e.start;
            for piece in bytes.chunks_mut(CHUNK) {
                read_at(&self.file, piece, at).map_err(io)?;
                if let Some(h) = crc.as_deref_mut() {
                    h.update(piece);
                }
                at += piece.len() as u64;
            }
            #[cfg(target_endian = "big")]
            for v in dst.iter_mut() {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
            return Ok(());
        }
        let width = e.dtype.bitsize() / 8;
        let buf = chunk_buffer(buf);
        let mut at = e.start;
        for out in dst.chunks_mut(CHUNK / width) {
            let raw = &mut buf[..out.len() * width];
            read_at(&self.file, raw, at).map_err(io)?;
            if let Some(h) = crc.as_deref_mut() {
                h.update(raw);
            }
            at += raw.len() as u64;
            match e.dtype {
                Dtype::F16 => {
                    for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                        *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                    }
                }
                Dtype::BF16 => {
                    for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                        *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
                    }
                }
                _ => {
                    for (o, c) in out.iter_mut().zip(raw.chunks_exact(8)) {
                        *o = f64::from_le_bytes(c.try_into().unwrap()) as f32;
                    }
                }
            }
        }
        Ok(())
    }

    /// Where tensor `name`'s data starts in the file (to read tensors in file order).
    pub fn data_offset(&self, name: &str) -> Option<u64> {
        self.entries.get(name).map(|e| e.start)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sorted tensor names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The `__metadata__` string map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::Weights(format!("{}: tensor {name:?} is missing", self.path.display())))
    }

    /// A tensor's raw bytes (read from the file now).
    fn data(&self, e: &Entry) -> Result<Vec<u8>> {
        let len = (e.end - e.start) as usize;
        let mut v = crate::limits::try_zeroed::<u8>("tensor data", len)?;
        read_at(&self.file, &mut v, e.start).map_err(|err| Error::io(&self.path, err))?;
        Ok(v)
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.shape.clone())
    }

    /// A floating-point tensor as f32 (f32, f16, bf16 and f64 accepted), with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let shape = self.entry(name)?.shape.clone();
        let out = self.f32_shaped(name, &shape)?;
        Ok((shape, out))
    }

    /// An f64 tensor (stored as F64, read without rounding), with its shape.
    pub fn f64(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let e = self.entry(name)?;
        if e.dtype != Dtype::F64 {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has dtype {:?} (expected F64)",
                self.path.display(),
                e.dtype
            )));
        }
        let data = self.data(e)?;
        Ok((
            e.shape.clone(),
            data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        ))
    }

    /// A floating-point tensor whose shape must equal `shape`.
    pub fn f32_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        let numel = e.shape.iter().product();
        let e = self.float_entry(name, shape, numel)?;
        let mut out = crate::limits::try_zeroed::<f32>("tensor data", numel)?;
        self.read_entry_into(e, &mut out, &mut Vec::new(), None)?;
        Ok(out)
    }

    /// An integer tensor (i64, i32, u8) as i64, with its shape.
    pub fn i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let e = self.entry(name)?;
        if !matches!(e.dtype, Dtype::I64 | Dtype::I32 | Dtype::U8) {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has unsupported dtype {:?} (expected I64 or I32)",
                self.path.display(),
                e.dtype
            )));
        }
        let data = self.data(e)?;
        let out: Vec<i64> = match e.dtype {
            Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            Dtype::I32 => data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
            _ => data.iter().map(|&b| b as i64).collect(),
        };
        Ok((e.shape.clone(), out))
    }
}

/// One tensor's header entry as written in the file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInfo {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Reads tensors of one [`TensorFile`] into place while verifying its checksum in the same
/// pass (made by [`TensorFile::one_pass`]).
///
/// Each tensor read gets its own CRC (its head, then its bytes as they arrive);
/// [`OnePassReader::finish`] streams the tensors not read (a checkpoint's other weight
/// sets, optimizer moments, frozen buffers) for theirs and combines all of them in name
/// order, which gives exactly the CRC of the whole stream that the writer computed.
/// Until `finish` returns `Ok`, the data read is unverified: a caller must discard it on
/// an error. When the file stores no checksum, or [`TensorFile::open`] verified it
/// already, nothing is hashed and `finish` reads nothing.
pub struct OnePassReader<'a> {
    file: &'a TensorFile,
    /// The CRC of each tensor read so far, by name; `None` when nothing is to be verified.
    crcs: Option<HashMap<&'a str, crc32fast::Hasher>>,
    /// The chunk buffer for conversions and streaming (empty until needed).
    buf: Vec<u8>,
}

impl<'a> OnePassReader<'a> {
    /// Reads floating-point tensor `name` of shape `shape` into `dst` (`[prod(shape)]`)
    /// as [`TensorFile::read_f32_into`] does, computing its CRC on the way when the
    /// checksum is pending.
    pub fn read_f32_into(&mut self, name: &str, shape: &[usize], dst: &mut [f32]) -> Result<()> {
        let file = self.file;
        let e = file.float_entry(name, shape, dst.len())?;
        let Some(crcs) = &mut self.crcs else {
            return file.read_entry_into(e, dst, &mut self.buf, None);
        };
        let (key, _) = file.entries.get_key_value(name).expect("float_entry found it");
        let mut h = crc32fast::Hasher::new();
        checksum_head(&mut h, name, e.dtype, &e.shape, (e.end - e.start) as usize);
        file.read_entry_into(e, dst, &mut self.buf, Some(&mut h))?;
        crcs.insert(key.as_str(), h);
        Ok(())
    }

    /// Verifies the checksum (when pending): the tensors not read are streamed for their
    /// CRCs, then all are combined in name order and compared with the stored value; a
    /// mismatch is a format error.
    pub fn finish(self) -> Result<()> {
        let file = self.file;
        match self.combined()? {
            Some(computed) => file.check_checksum(computed),
            None => Ok(()),
        }
    }

    /// The file's checksum from the CRCs of the tensors read and of the others streamed
    /// now (`None` when nothing is to be verified).
    fn combined(mut self) -> Result<Option<String>> {
        let file = self.file;
        let Some(mut crcs) = self.crcs.take() else {
            return Ok(None);
        };
        let mut total = crc32fast::Hasher::new();
        for name in &file.names {
            let h = match crcs.remove(name.as_str()) {
                Some(h) => h,
                None => file.tensor_crc(name, &file.entries[name], &mut self.buf)?,
            };
            total.combine(&h);
        }
        Ok(Some(checksum_text(total)))
    }
}

/// `buf` grown to [`CHUNK`] bytes (allocated on first use, then reused).
fn chunk_buffer(buf: &mut Vec<u8>) -> &mut [u8] {
    if buf.len() < CHUNK {
        buf.resize(CHUNK, 0);
    }
    &mut buf[..CHUNK]
}

/// Fills `buf` from `file` at byte `offset`.
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// Data of one tensor to write.
pub enum TensorData<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I64(&'a [i64]),
}

/// A named tensor to write.
pub struct TensorOut<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData<'a>,
}

impl<'a> TensorOut<'a> {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, data: &'a [f32]) -> Self {
        TensorOut {
            name: name.into(),
            shape,
            data: TensorData::F32(data),
        }
    }
    /// An f64 tensor.
    pub fn f64(name: impl Into<String>, shape: Vec<usize>, data: &'a [f64]) -> Self {
        TensorOut {
            name: name.into(),
            shape,
            data: TensorData::F64(data),
        }
    }
    /// An i64 tensor.
    pub fn i64(name: impl Into<String>, shape: Vec<usize>, data: &'a [i64]) -> Self {
        TensorOut {
            name: name.into(),
            shape,
            data: TensorData::I64(data),
        }
    }
}

/// Serializes tensors + metadata to safetensors bytes.
pub fn to_bytes(tensors: &[TensorOut<'_>], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for t in tensors {
        let n: usize = t.shape.iter().product();
        let (dtype, bytes, len) = match t.data {
            TensorData::F32(d) => (Dtype::F32, d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), d.len()),
            TensorData::F64(d) => (Dtype::F64, d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), d.len()),
            TensorData::I64(d) => (Dtype::I64, d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), d.len()),
        };
        if n != len {
            return Err(Error::Internal(format!("tensor {} has shape {:?} but {len} values", t.name, t.shape)));
        }
        raw.push((t.name.clone(), dtype, t.shape.clone(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b).map_err(|e| Error::Internal(e.to_string()))?)))
        .collect::<Result<_>>()?;
    let mut meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    meta.insert(
        CHECKSUM_KEY.to_string(),
        checksum(raw.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))),
    );
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Internal(format!("safetensors serialize: {e}")))
}

/// Writes tensors atomically: a temp file beside `path`, fsync, then rename over `path`.
/// On any error the previous file at `path` (if any) is untouched and the temp file is removed.
pub fn write_atomic(path: impl AsRef<Path>, tensors: &[TensorOut<'_>], metadata: &BTreeMap<String, String>) -> Result<()> {
    let bytes = to_bytes(tensors, metadata)?;
    write_bytes_atomic(path.as_ref(), &bytes)
}

/// Writes bytes atomically (temp file + fsync + rename).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let l = [3i64, 9];
        let mut meta = BTreeMap::new();
        meta.insert("k".to_string(), "v".to_string());
        write_atomic(&p, &[TensorOut::f32("x", vec![2, 2], &x), TensorOut::i64("l", vec![2], &l)], &meta).unwrap();
        let f = TensorFile::open(&p).unwrap();
        assert_eq!(f.f32_shaped("x", &[2, 2]).unwrap(), x);
        assert_eq!(f.i64("l").unwrap().1, l);
        assert_eq!(f.metadata()["k"], "v");
        assert!(matches!(f.f32_shaped("x", &[4]), Err(Error::Weights(_))));
        assert!(matches!(f.f32("nope"), Err(Error::Weights(_))));
        assert!(matches!(f.f32("l"), Err(Error::Weights(_))));
        // Truncated file: a clear format error.
        let bytes = std::fs::read(&p).unwrap();
        let q = dir.path().join("t.safetensors");
        std::fs::write(&q, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(TensorFile::open(&q), Err(Error::Format { .. })));
        std::fs::write(&q, b"garbage").unwrap();
        assert!(matches!(TensorFile::open(&q), Err(Error::Format { .. })));
        assert!(matches!(TensorFile::open(dir.path().join("missing")), Err(Error::Io { .. })));
        // Damaged data (finite garbage) fails the checksum; the same bytes without a
        // checksum (as converted files) load.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 20] ^= 0x01;
        std::fs::write(&q, &bad).unwrap();
        let e = TensorFile::open(&q).err().expect("damaged file must fail");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(f.metadata()[CHECKSUM_KEY].starts_with("crc32:"));
        // Unwritable destination: error, nothing left behind.
        assert!(write_atomic(dir.path().join("no/such/dir/x.safetensors"), &[], &meta).is_err());
    }

    /// A checksummed file of every float dtype (two tensors larger than a chunk, so reads
    /// and CRCs cross chunk boundaries) and an integer tensor, with the values as f32.
    fn mixed_file(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let big = CHUNK / 2 + 77; // f32: 2 chunks; f16: 1 chunk + a tail
        let vals = |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| ((i as f32) * 0.37 + k).sin() * 8.0).collect() };
        let a = vals(big, 0.1);
        let b: Vec<half::f16> = vals(big, 0.2).into_iter().map(half::f16::from_f32).collect();
        let c: Vec<half::bf16> = vals(30, 0.3).into_iter().map(half::bf16::from_f32).collect();
        let d: Vec<f64> = vals(12, 0.4).into_iter().map(|v| v as f64 + 1e-9).collect();
        let e: Vec<i64> = (0..5).collect();
        let raw: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("w.f32", Dtype::F32, vec![big], bytemuck::cast_slice(&a).to_vec()),
            ("a.f16", Dtype::F16, vec![big], b.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("m.bf16", Dtype::BF16, vec![5, 6], c.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("z.f64", Dtype::F64, vec![3, 4], d.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("k.i64", Dtype::I64, vec![5], e.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ];
        let meta: HashMap<String, String> = [(
            CHECKSUM_KEY.to_string(),
            checksum(raw.iter().map(|(n, t, s, b)| (*n, *t, s.as_slice(), b.as_slice()))),
        )]
        .into();
        let views: Vec<(&str, TensorView<'_>)> = raw.iter().map(|(n, t, s, b)| (*n, TensorView::new(*t, s.clone(), b).unwrap())).collect();
        std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
        vec![
            ("w.f32".into(), vec![big], a),
            ("a.f16".into(), vec![big], b.iter().map(|v| v.to_f32()).collect()),
            ("m.bf16".into(), vec![5, 6], c.iter().map(|v| v.to_f32()).collect()),
            ("z.f64".into(), vec![3, 4], d.iter().map(|&v| v as f32).collect()),
        ]
    }

    #[test]
    fn one_pass_checksum_equals_the_streamed_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let want = mixed_file(&p);
        let f = TensorFile::open_header(&p).unwrap();
        let stored = f.metadata()[CHECKSUM_KEY].clone();
        assert_eq!(f.compute_checksum().unwrap(), stored);
        // Every subset of the float tensors read (the rest streamed), in any order.
        for mask in 0..(1u32 << want.len()) {
            let mut r = f.one_pass();
            for (i, (name, shape, values)) in want.iter().enumerate().rev() {
                if mask & (1 << i) != 0 {
                    let mut dst = vec![f32::NAN; values.len()];
                    r.read_f32_into(name, shape, &mut dst).unwrap();
                    assert_eq!(dst, *values, "{name}");
                }
            }
            assert_eq!(r.combined().unwrap(), Some(stored.clone()), "mask {mask:b}");
        }
        // The plain read and the allocating read give the same values.
        for (name, shape, values) in &want {
            let mut dst = vec![0.0; values.len()];
            f.read_f32_into(name, shape, &mut dst).unwrap();
            assert_eq!(dst, *values);
            assert_eq!(f.f32(name).unwrap(), (shape.clone(), values.clone()));
        }
        // A file `open` verified is not hashed again; one without a checksum neither.
        assert_eq!(TensorFile::open(&p).unwrap().one_pass().combined().unwrap(), None);
        // Bad requests: errors naming the tensor.
        let mut dst = [0.0; 12];
        for (name, shape, len) in [
            ("z.f64", &[12][..], 12),
            ("z.f64", &[3, 4][..], 11),
            ("k.i64", &[5][..], 5),
            ("nope", &[12][..], 12),
        ] {
            let e = f.read_f32_into(name, shape, &mut dst[..len]).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
            let e = f.one_pass().read_f32_into(name, shape, &mut dst[..len]).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn one_pass_detects_a_damaged_byte_read_or_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let want = mixed_file(&p);
        let bytes = std::fs::read(&p).unwrap();
        let q = dir.path().join("bad.safetensors");
        let f = TensorFile::open_header(&p).unwrap();
        for (name, shape, values) in &want {
            // One bit flipped past the first chunk of the tensor where it has one.
            let e = &f.entries[name];
            let at = (e.start + (e.end - e.start) * 3 / 4) as usize;
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            std::fs::write(&q, &bad).unwrap();
            let g = TensorFile::open_header(&q).unwrap();
            // Damaged while read into place…
            let mut r = g.one_pass();
            let mut dst = vec![0.0; values.len()];
            r.read_f32_into(name, shape, &mut dst).unwrap();
            let e = r.finish().unwrap_err();
            assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("checksum mismatch"), "{name}: {e}");
            // …and while streamed only for the checksum.
            let e = g.one_pass().finish().unwrap_err();
            assert!(e.to_string().contains("checksum mismatch"), "{name}: {e}");
            assert!(TensorFile::open(&q).is_err());
        }
        // Truncated after opening: an i/o error, not a panic or a signal.
        let g = TensorFile::open_header(&p).unwrap();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(100).unwrap();
        let (name, shape, values) = &want[0];
        let mut dst = vec![0.0; values.len()];
        assert!(matches!(g.one_pass().read_f32_into(name, shape, &mut dst), Err(Error::Io { .. })));
        assert!(matches!(g.one_pass().finish(), Err(Error::Io { .. })));
    }
}
