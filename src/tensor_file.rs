//! Safetensors files: strict reading (f32, f16, bf16 converted to f32; i64/i32 labels)
//! with errors that name the file and the tensor, and atomic writing (temp file in the
//! same folder, fsync, rename), so an interrupted write never damages the previous file.
//!
//! Every file the engine writes carries a CRC-32 of its tensors (names, dtypes, shapes
//! and data, in name order) in the metadata under [`CHECKSUM_KEY`]; [`TensorFile::open`]
//! verifies it, so bytes damaged on disk or in transfer fail to load instead of loading
//! as finite garbage. Files without one (converted official checkpoints) load unchecked.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};

/// Metadata key of the tensor checksum: `"crc32:<8 hex digits>"`.
pub const CHECKSUM_KEY: &str = "ucgm_checksum";

/// Header bytes accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Bytes read per call while verifying the checksum.
const CHUNK: usize = 16 << 20;

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
}

impl TensorFile {
    /// Opens a file: header validated, checksum (when stored) verified by streaming.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let tf = Self::open_header(path)?;
        if let Some(stored) = tf.metadata.get(CHECKSUM_KEY) {
            let computed = tf.compute_checksum()?;
            if *stored != computed {
                return Err(Error::format(
                    &tf.path,
                    format!("checksum mismatch: the tensor data is damaged (stored {stored}, computed {computed})"),
                ));
            }
        }
        Ok(tf)
    }

    /// Opens a file reading and validating only its header: no tensor data is read and
    /// the checksum is not verified (for checks of a large file's metadata before it
    /// is loaded with [`TensorFile::open`]).
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
        })
    }

    /// The checksum of the file's tensors, streamed in chunks.
    fn compute_checksum(&self) -> Result<String> {
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; CHUNK];
        for name in &self.names {
            let e = &self.entries[name];
            checksum_head(&mut h, name, e.dtype, &e.shape, (e.end - e.start) as usize);
            let mut at = e.start;
            while at < e.end {
                let k = ((e.end - at) as usize).min(CHUNK);
                read_at(&self.file, &mut buf[..k], at).map_err(|err| Error::io(&self.path, err))?;
                h.update(&buf[..k]);
                at += k as u64;
            }
        }
        Ok(checksum_text(h))
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
        let mut v = crate::limits::try_vec::<u8>("tensor data", len)?;
        read_at(&self.file, &mut v, e.start).map_err(|err| Error::io(&self.path, err))?;
        Ok(v)
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.shape.clone())
    }

    /// A floating-point tensor as f32 (f32, f16, bf16 and f64 accepted), with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let e = self.entry(name)?;
        if !matches!(e.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has unsupported dtype {:?} (expected F32, F16 or BF16)",
                self.path.display(),
                e.dtype
            )));
        }
        let data = self.data(e)?;
        let out: Vec<f32> = match e.dtype {
            Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        };
        Ok((e.shape.clone(), out))
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
        if e.shape != shape {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has shape {:?}, expected {shape:?}",
                self.path.display(),
                e.shape
            )));
        }
        Ok(self.f32(name)?.1)
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
}
