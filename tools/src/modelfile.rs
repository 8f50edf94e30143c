//! Model files on disk: written atomically in the zeronn model format, read back into an
//! aligned buffer and validated by the core.

use std::fs;
use std::io::Write;
use std::path::Path;

use zeronn::TwoLayerShape;
use zeronn::model::{self, Model};

/// Writes a two-layer net's parameters to `path` in the model format. The file appears only
/// when complete (written beside it, then renamed), so a failure never leaves half a model.
pub fn save(path: &Path, shape: &TwoLayerShape, params: &[f32]) -> Result<(), String> {
    let arch = model::two_layer_architecture(shape);
    let mut bytes = vec![0u8; model::encoded_len(arch.len(), params.len())];
    model::write(&arch, params, &mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let tmp = path.with_extension("zrnn.partial");
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("{}: cannot write model: {e}", path.display())
    })
}

/// Bytes held in `u64` words so they start 8-aligned, as the model format's in-place view
/// needs (f32 alignment).
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    /// An aligned copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let words = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w)
            })
            .collect();
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds `words.len() * 8 >= len` initialised bytes, u8 has alignment
        // 1, and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// Reads a model file into an aligned buffer (validate it with [`parse`]).
pub fn read(path: &Path) -> Result<AlignedBytes, String> {
    let bytes =
        fs::read(path).map_err(|e| format!("{}: cannot read model: {e}", path.display()))?;
    Ok(AlignedBytes::new(&bytes))
}

/// Validates model bytes read from `path`.
pub fn parse<'a>(path: &Path, bytes: &'a AlignedBytes) -> Result<Model<'a>, String> {
    Model::from_bytes(bytes.bytes())
        .map_err(|e| format!("{}: not a valid zeronn model: {e}", path.display()))
}
