//! Checkpoints of a training run, so that a run killed at any moment resumes and ends with the
//! very parameters (bit for bit) an uninterrupted run ends with.
//!
//! A checkpoint holds what the rest of the run depends on: the parameters, BatchNorm's running
//! statistics, the optimizer's state (its buffers and its step count), the history so far
//! (losses and evaluations), and the iteration to run next. The random generator is not
//! stored but replayed: it is seeded by the run's seed and drawn only to initialise the net and
//! to sample each mini-batch, so resuming draws the same numbers again up to the iteration
//! (Dropout's masks are a function of the seed and the step). A fingerprint of the settings
//! and the data refuses a resume with other ones.
//!
//! File: magic `ZRNNCKPT`, format version (u32), CRC-32 of everything after it (u32), then the
//! fingerprint (u32 length, UTF-8), the next iteration and the optimizer's steps (u64 each),
//! and the arrays (u64 count, then little-endian values): parameters, state, optimizer state,
//! losses (f32), evaluations (u64 iteration, f64 train and test accuracy). Written atomically.

use std::path::Path;

use crate::train::Epoch;

/// The magic bytes.
pub const MAGIC: &[u8; 8] = b"ZRNNCKPT";
/// The format version.
pub const VERSION: u32 = 1;

/// A training run's state at the start of iteration `next_iter`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The settings and data it belongs to.
    pub fingerprint: String,
    /// The iteration to run next.
    pub next_iter: usize,
    /// Steps the optimizer has begun (Adam's `iter`).
    pub opt_steps: u64,
    /// The parameters.
    pub params: Vec<f32>,
    /// BatchNorm's running statistics.
    pub state: Vec<f32>,
    /// The optimizer's buffers.
    pub opt_state: Vec<f32>,
    /// The loss of every iteration so far.
    pub losses: Vec<f32>,
    /// The evaluations so far.
    pub epochs: Vec<Epoch>,
}

impl Checkpoint {
    /// The bytes of the file.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let fp = self.fingerprint.as_bytes();
        b.extend_from_slice(&(fp.len() as u32).to_le_bytes());
        b.extend_from_slice(fp);
        b.extend_from_slice(&(self.next_iter as u64).to_le_bytes());
        b.extend_from_slice(&self.opt_steps.to_le_bytes());
        for v in [&self.params, &self.state, &self.opt_state, &self.losses] {
            b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        }
        b.extend_from_slice(&(self.epochs.len() as u64).to_le_bytes());
        for e in &self.epochs {
            b.extend_from_slice(&(e.iter as u64).to_le_bytes());
            b.extend_from_slice(&e.train_acc.to_le_bytes());
            b.extend_from_slice(&e.test_acc.to_le_bytes());
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&zeronn::model::crc32(&b).to_le_bytes());
        out.extend_from_slice(&b);
        out
    }

    /// Reads the bytes of a file; every length is checked against the bytes there are.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err("not a zeronn checkpoint (no ZRNNCKPT magic)".into());
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(format!(
                "checkpoint format version {version}; this build reads {VERSION}"
            ));
        }
        let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let body = &bytes[16..];
        if zeronn::model::crc32(body) != crc {
            return Err("the checkpoint is damaged (CRC mismatch)".into());
        }
        let mut r = Reader { b: body };
        let n = r.u32()? as usize;
        let fingerprint = String::from_utf8(r.take(n)?.to_vec())
            .map_err(|_| "the fingerprint is not UTF-8".to_string())?;
        let next_iter = r.u64()? as usize;
        let opt_steps = r.u64()?;
        let (params, state, opt_state, losses) = (r.f32s()?, r.f32s()?, r.f32s()?, r.f32s()?);
        let count = r.count(24)?;
        let mut epochs = Vec::with_capacity(count);
        for _ in 0..count {
            let iter = r.u64()? as usize;
            let (train_acc, test_acc) = (r.f64()?, r.f64()?);
            epochs.push(Epoch {
                iter,
                train_acc,
                test_acc,
            });
        }
        if !r.b.is_empty() {
            return Err(format!("{} bytes after the checkpoint's end", r.b.len()));
        }
        Ok(Checkpoint {
            fingerprint,
            next_iter,
            opt_steps,
            params,
            state,
            opt_state,
            losses,
            epochs,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.b.len() {
            return Err("the checkpoint is truncated".into());
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A count of items of `size` bytes that the remaining bytes can hold.
    fn count(&mut self, size: usize) -> Result<usize, String> {
        let n = self.u64()?;
        if n > (self.b.len() / size) as u64 {
            return Err("the checkpoint is truncated (a count larger than its bytes)".into());
        }
        Ok(n as usize)
    }
    fn f32s(&mut self) -> Result<Vec<f32>, String> {
        let n = self.count(4)?;
        Ok(self
            .take(4 * n)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Writes `ck` to `path` atomically (the previous checkpoint stays whole until the new one is).
pub fn save(path: &Path, ck: &Checkpoint) -> Result<(), String> {
    crate::modelfile::write_atomic(path, &ck.encode())
        .map_err(|e| format!("--checkpoint {}: {e}", path.display()))
}

/// Reads the checkpoint at `path`.
pub fn load(path: &Path) -> Result<Checkpoint, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--resume {}: {e}", path.display()))?;
    Checkpoint::decode(&bytes).map_err(|e| format!("--resume {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_back_and_damage_is_refused() {
        let ck = Checkpoint {
            fingerprint: "784-50-10 seed 1".into(),
            next_iter: 600,
            opt_steps: 600,
            params: vec![1.5, -2.0, f32::MIN_POSITIVE],
            state: vec![],
            opt_state: vec![0.25; 6],
            losses: vec![2.3, 0.5],
            epochs: vec![Epoch {
                iter: 0,
                train_acc: 0.1,
                test_acc: 0.2,
            }],
        };
        let b = ck.encode();
        assert_eq!(Checkpoint::decode(&b).unwrap(), ck);
        let mut bad = b.clone();
        bad[40] ^= 1;
        assert!(Checkpoint::decode(&bad).unwrap_err().contains("CRC"));
        assert!(Checkpoint::decode(&b[..b.len() - 3]).is_err());
        assert!(Checkpoint::decode(b"ZRNN").unwrap_err().contains("magic"));
    }
}
