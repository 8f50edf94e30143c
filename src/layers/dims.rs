//! The shape of one sample's values between two layers.

/// The shape of the values between two layers, per sample: `channels × height × width`, laid
/// out channel by channel, row by row (the book's NCHW without the N). A flat vector of `n`
/// values is `n × 1 × 1`. An Affine takes any shape, flattened, as the book's `Affine`
/// reshapes its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dims {
    /// Channels (or the length of a flat vector).
    pub channels: usize,
    /// Height (1 for a flat vector).
    pub height: usize,
    /// Width (1 for a flat vector).
    pub width: usize,
}

impl Dims {
    /// `channels × height × width`.
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        Dims {
            channels,
            height,
            width,
        }
    }

    /// A flat vector of `n` values.
    pub const fn flat(n: usize) -> Self {
        Dims::new(n, 1, 1)
    }

    /// Values per sample (saturating at `usize::MAX`; a net's `validate` rejects that).
    pub const fn len(&self) -> usize {
        self.channels
            .saturating_mul(self.height)
            .saturating_mul(self.width)
    }

    /// Values per channel, `height × width`.
    pub const fn plane(&self) -> usize {
        self.height.saturating_mul(self.width)
    }

    /// Whether there are no values.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
