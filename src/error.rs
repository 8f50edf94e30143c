//! The one error type of the core.

use core::fmt;

/// Everything that can go wrong with caller input. Nothing is modified before the check that
/// returns one of these.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A buffer does not have the exact length its shape requires.
    BufferLength {
        /// Which buffer (`"params"`, `"grads"`, `"x"`, …).
        buffer: &'static str,
        /// The length the shapes require.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A workspace is too short for the batch: the batch exceeds the capacity it was sized for.
    BatchTooLarge {
        /// The batch size asked for.
        batch: usize,
        /// The largest batch the given workspace can hold.
        capacity: usize,
    },
    /// A batch of zero rows.
    EmptyBatch,
    /// An input shorter than one sample.
    ShortInput {
        /// Values per sample the net takes.
        per_sample: usize,
        /// Values given.
        actual: usize,
    },
    /// More rows than the fused SGD step takes (its products hold the batch in one block).
    FusedBatchTooLarge {
        /// The batch size asked for.
        batch: usize,
        /// The most the fused step takes ([`crate::layers::FUSED_MAX_BATCH`]).
        max: usize,
    },
    /// A layer or matrix size of zero where a positive one is required.
    ZeroSize {
        /// Which size.
        what: &'static str,
    },
    /// Sizes whose product does not fit in `usize`.
    SizeOverflow,
    /// Two sizes that must agree do not.
    ShapeMismatch {
        /// What was compared.
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size given.
        actual: usize,
    },
    /// A class label is not below the number of classes.
    LabelOutOfRange {
        /// Position of the label in the batch.
        index: usize,
        /// The label.
        label: usize,
        /// Number of classes (the output size).
        classes: usize,
    },
    /// A matrix view reaches outside its slice, or maps two elements to one place.
    MatrixLayout {
        /// Which operand (`"a"`, `"b"`, `"c"`).
        matrix: &'static str,
    },
    /// A gemm backend was asked for that this build or this CPU does not have.
    BackendUnavailable {
        /// The backend's name.
        backend: &'static str,
    },
    /// A serialized model is malformed; see [`crate::model::ModelError`].
    Model(crate::model::ModelError),
    /// An output buffer is too short.
    OutputTooShort {
        /// Bytes or elements needed.
        needed: usize,
        /// Bytes or elements given.
        actual: usize,
    },
    /// A layer list longer than [`MAX_LAYERS`](crate::net::MAX_LAYERS).
    TooManyLayers {
        /// Layers given.
        layers: usize,
        /// The most a list holds.
        max: usize,
    },
    /// A layer's sizes do not fit the net: they do not chain to the layer before, or the
    /// layer is where it cannot be.
    LayerShape {
        /// Its index in the layer list, from 0.
        layer: usize,
        /// Its kind (`"Affine"`, `"BatchNorm"`, …).
        kind: &'static str,
        /// What does not fit.
        what: &'static str,
        /// The size (or position) required.
        expected: usize,
        /// The size (or position) given.
        actual: usize,
    },
    /// A value outside its allowed range (a Dropout ratio, a learning rate, …).
    InvalidValue {
        /// Which value, and its range.
        what: &'static str,
    },
    /// Something this net or method does not do.
    Unsupported {
        /// What, and what to do instead.
        what: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BufferLength {
                buffer,
                expected,
                actual,
            } => write!(
                f,
                "buffer `{buffer}` has length {actual}, but the shapes require {expected}"
            ),
            Error::BatchTooLarge { batch, capacity } => write!(
                f,
                "batch of {batch} exceeds the workspace capacity of {capacity} rows"
            ),
            Error::EmptyBatch => f.write_str("batch is empty: give at least one sample"),
            Error::ShortInput { per_sample, actual } => write!(
                f,
                "`x` holds {actual} values, less than one sample of {per_sample}: x is batch × \
                 {per_sample} values, one sample after another"
            ),
            Error::FusedBatchTooLarge { batch, max } => write!(
                f,
                "the fused SGD step (train_step) takes at most {max} rows, not {batch}: split the \
                 batch, or take the gradient then update (any batch the workspace holds)"
            ),
            Error::ZeroSize { what } => write!(f, "{what} must be positive"),
            Error::SizeOverflow => f.write_str("sizes overflow usize"),
            Error::ShapeMismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what}: expected {expected}, got {actual}"),
            Error::LabelOutOfRange {
                index,
                label,
                classes,
            } => write!(
                f,
                "label {label} at batch row {index} is out of range for {classes} classes"
            ),
            Error::MatrixLayout { matrix } => write!(
                f,
                "matrix `{matrix}`: its rows, columns and strides reach outside its slice or overlap"
            ),
            Error::BackendUnavailable { backend } => {
                write!(f, "gemm backend `{backend}` is not available here")
            }
            Error::Model(e) => write!(f, "model: {e}"),
            Error::OutputTooShort { needed, actual } => {
                write!(f, "output buffer too short: need {needed}, got {actual}")
            }
            Error::TooManyLayers { layers, max } => {
                write!(f, "{layers} layers, but a net holds at most {max}")
            }
            Error::LayerShape {
                layer,
                kind,
                what,
                expected,
                actual,
            } => write!(
                f,
                "layer {layer} ({kind}): {what} is {actual}, but the net needs {expected}"
            ),
            Error::InvalidValue { what } => write!(f, "invalid value: {what}"),
            Error::Unsupported { what } => write!(f, "not supported: {what}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<crate::model::ModelError> for Error {
    fn from(e: crate::model::ModelError) -> Self {
        Error::Model(e)
    }
}

/// Shorthand for results of the core.
pub type Result<T> = core::result::Result<T, Error>;

/// `a·b`, or [`Error::SizeOverflow`].
#[inline]
pub(crate) fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::SizeOverflow)
}

/// Checks an exact buffer length.
#[inline]
pub(crate) fn check_len(buffer: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::BufferLength {
            buffer,
            expected,
            actual,
        })
    }
}
