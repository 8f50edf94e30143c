//! `zeronn export`: everything a firmware build embeds, in one directory.
//!
//! | file | what |
//! | --- | --- |
//! | `model.zrnn` | the model, validated (the on-flash format) |
//! | `mlp.zrnn` | a second model of any layer list (the chapter 6 MLP), BatchNorm folded into the Affine before it |
//! | `mlp-pred.u8` | the class the desktop predicts for each test image with `mlp.zrnn`, through the portable kernel (the device's sums) |
//! | `conv.zrnn` | a third model, a conv net (SimpleConvNet in CI), BatchNorm after an Affine folded |
//! | `conv-pred.u8` | the desktop's class for each test image with `conv.zrnn`, as for `mlp-pred.u8` |
//! | `conv-int8.zrnn` | the conv net quantized to int8 (as `model-int8.zrnn`) |
//! | `conv-int8-logits.i8` | its int8 logits for each test image on the desktop (10 bytes an image) |
//! | `model-int8.zrnn` | `model.zrnn` quantized to int8 (`zeronn quantize`, ranges from the first 300 training images) |
//! | `int8-logits.i8` | its int8 logits for each test image on the desktop (10 bytes an image) |
//! | `test-x.u8`, `test-t.u8` | the first test images (784 bytes each) and their labels |
//! | `train-x.u8`, `train-t.u8` | the first training images and their labels, for on-device training |
//! | `expected.rs` | the layer lists of `mlp.zrnn` and of the on-device Adam net as Rust constants, and what the desktop computes on the same data: the correct answers `zeronn eval` gives, and the on-device training run (its settings, first and last loss, CRC-32 of the final parameters) computed through the portable kernel, which rounds exactly as the microcontroller does |

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use zeronn::functions::argmax;
use zeronn::gemm::Backend;
use zeronn::model::{self, Model, crc32_params};
use zeronn::optimizer::{Adam, Optimizer};
use zeronn::random::{self, seeded};
use zeronn::{MlpOptions, Net, NetSpec, Sgd, TwoLayerNet, TwoLayerShape, WeightInit};

use crate::mnist::{Mnist, Split};
use crate::pixels;
use crate::sparse::EvalSet;
use crate::train::EVAL_CHUNK;

/// The on-device training run, as the firmware's `train` binary does it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceTraining {
    /// Hidden units (784-hidden-10).
    pub hidden: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// SGD steps.
    pub steps: usize,
    /// Seed of the generator that draws the initial weights, then the batches.
    pub seed: u64,
    /// Learning rate.
    pub lr: f32,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
}

impl Default for DeviceTraining {
    fn default() -> Self {
        DeviceTraining {
            hidden: 50,
            batch: 10,
            steps: 200,
            seed: 1,
            lr: 0.1,
            init_std: 0.01,
        }
    }
}

/// What a device training run ends with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceResult {
    /// Loss of the first step.
    pub first_loss: f32,
    /// Loss of the last step.
    pub last_loss: f32,
    /// CRC-32 of the final parameters (little-endian bytes).
    pub params_crc: u32,
}

/// Runs the firmware's training on the host, through `backend` (the portable kernel rounds
/// exactly as the device does): the same initialisation, the same draws, the same steps.
pub fn device_training(
    cfg: &DeviceTraining,
    images: &Split,
    backend: Backend,
) -> zeronn::Result<DeviceResult> {
    let shape = TwoLayerShape::new(images.pixels, cfg.hidden, 10);
    let mut net =
        TwoLayerNet::new(shape, vec![0.0f32; shape.param_len()])?.with_backend(backend)?;
    let mut rng = seeded(cfg.seed);
    net.init_params(&mut rng, cfg.init_std);
    let sgd = Sgd::new(cfg.lr);
    let mut ws = vec![0.0f32; shape.min_workspace_len(cfg.batch)];
    let mut idx = vec![0usize; cfg.batch];
    let mut x = vec![0.0f32; cfg.batch * images.pixels];
    let mut t = vec![0u8; cfg.batch];
    let (mut first, mut last) = (0.0, 0.0);
    for step in 0..cfg.steps {
        random::choice(&mut rng, images.len(), &mut idx);
        gather_unit(images, &idx, &mut x, &mut t);
        let loss = net.train_step(&x, &t, &sgd, &mut ws)?;
        if step == 0 {
            first = loss;
        }
        last = loss;
    }
    Ok(DeviceResult {
        first_loss: first,
        last_loss: last,
        params_crc: crc32_params(net.params()),
    })
}

/// The on-device Adam run, as the firmware's `train` binary does it after the SGD one: a net
/// of `hidden` layers with BatchNorm, He initial weights, Adam, a dense batch of the embedded
/// training images, the optimizer applied during backward ([`Net::step_with`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceAdam {
    /// Hidden sizes (784-…-10).
    pub hidden: Vec<usize>,
    /// Mini-batch size.
    pub batch: usize,
    /// Adam steps.
    pub steps: usize,
    /// Seed of the initial weights, then the batches.
    pub seed: u64,
    /// Adam's learning rate.
    pub lr: f64,
}

impl Default for DeviceAdam {
    fn default() -> Self {
        DeviceAdam {
            hidden: vec![100, 100],
            batch: 10,
            steps: 10,
            seed: 2,
            lr: 0.003,
        }
    }
}

impl DeviceAdam {
    /// The net: 784-hidden…-10 with BatchNorm after each hidden Affine, ReLU.
    pub fn spec(&self, pixels: usize) -> NetSpec {
        let options = MlpOptions {
            batch_norm: true,
            ..MlpOptions::PLAIN
        };
        NetSpec::mlp(pixels, &self.hidden, 10, options)
    }
}

/// What the Adam run ends with: as [`DeviceResult`], and the CRC-32 of the BatchNorm state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceAdamResult {
    /// Losses and the parameters' CRC.
    pub run: DeviceResult,
    /// CRC-32 of the final state (running means and variances).
    pub state_crc: u32,
}

/// Runs the firmware's Adam training on the host through `backend`.
pub fn device_adam(
    cfg: &DeviceAdam,
    images: &Split,
    backend: Backend,
) -> zeronn::Result<DeviceAdamResult> {
    let spec = cfg.spec(images.pixels);
    let mut net = Net::with_state(
        spec,
        vec![0.0f32; spec.param_len()],
        vec![0.0f32; spec.state_len()],
    )?
    .with_backend(backend)?;
    let mut rng = seeded(cfg.seed);
    net.init(&mut rng, WeightInit::He);
    let mut adam = Adam::<f32>::new(cfg.lr);
    let mut opt_state = vec![0.0f32; adam.state_len(spec.param_len())];
    let mut scratch = vec![0.0f32; spec.apply_scratch_len()];
    let mut ws = vec![0.0f32; spec.min_workspace_len(cfg.batch)];
    let mut idx = vec![0usize; cfg.batch];
    let mut x = vec![0.0f32; cfg.batch * images.pixels];
    let mut t = vec![0u8; cfg.batch];
    let (mut first, mut last) = (0.0, 0.0);
    for step in 0..cfg.steps {
        random::choice(&mut rng, images.len(), &mut idx);
        gather_unit(images, &idx, &mut x, &mut t);
        let loss = net.step_with(
            &x,
            None,
            &t,
            &mut adam,
            &mut opt_state,
            &mut scratch,
            &mut ws,
        )?;
        if step == 0 {
            first = loss;
        }
        last = loss;
    }
    Ok(DeviceAdamResult {
        run: DeviceResult {
            first_loss: first,
            last_loss: last,
            params_crc: crc32_params(net.params()),
        },
        state_crc: crc32_params(net.state()),
    })
}

/// Images `idx` of `images` as f32 in [0, 1] (the firmware's `load_image`), and their labels.
fn gather_unit(images: &Split, idx: &[usize], x: &mut [f32], t: &mut [u8]) {
    for ((&i, row), label) in idx
        .iter()
        .zip(x.chunks_exact_mut(images.pixels))
        .zip(t.iter_mut())
    {
        for (v, &p) in row.iter_mut().zip(images.image_raw(i)) {
            *v = pixels::unit(p);
        }
        *label = images.t[i];
    }
}

/// The second model for firmware: `mlp` with BatchNorm folded, its bytes, and the class the
/// desktop predicts for each test image, one image at a time through the portable kernel.
fn fold_for_device(mlp: &Model<'_>, test: &Split) -> zeronn::Result<(NetSpec, Vec<u8>, Vec<u8>)> {
    let folded = zeronn::net::folded_spec(mlp.spec());
    let mut params = vec![0.0f32; folded.param_len()];
    let mut state = vec![0.0f32; folded.state_len()];
    zeronn::net::fold_batch_norm(
        mlp.spec(),
        mlp.params(),
        mlp.state(),
        &mut params,
        &mut state,
    )?;
    let mut bytes = vec![0u8; model::encoded_len(&folded)];
    model::write(&folded, &params, &state, &mut bytes)?;
    let net = Net::with_state(folded, &params[..], &state[..])?.with_backend(Backend::Portable)?;
    let mut ws = vec![0.0f32; folded.min_predict_workspace_len(1)];
    let mut x = vec![0.0f32; test.pixels];
    let mut preds = Vec::with_capacity(test.len());
    for i in 0..test.len() {
        for (v, &p) in x.iter_mut().zip(test.image_raw(i)) {
            *v = pixels::unit(p);
        }
        preds.push(argmax(net.predict(&x, &mut ws)?) as u8);
    }
    Ok((folded, bytes, preds))
}

/// Writes the bundle for `model_bytes` (already validated by the caller) into `out`, with
/// `mlp` as the second model and `adam` as the on-device Adam run.
#[allow(clippy::too_many_arguments)]
pub fn export(
    model_bytes: &[u8],
    net: &TwoLayerNet<f32, &[f32]>,
    mlp: &Model<'_>,
    conv: &Model<'_>,
    data: &Mnist,
    out: &Path,
    test_images: usize,
    train_images: usize,
    cfg: &DeviceTraining,
    adam: &DeviceAdam,
) -> Result<String, String> {
    let test = data.test.head(test_images);
    let train = data.train.head(train_images);
    if test.is_empty() || train.len() < cfg.batch {
        return Err("export needs at least one test image and a batch of training images".into());
    }
    let mut ws = vec![0.0f32; net.spec().workspace_len(EVAL_CHUNK)];
    let set = EvalSet::new(&test, EVAL_CHUNK);
    let correct = set
        .count_correct(net, (0, set.chunks()), &mut Default::default(), &mut ws)
        .map_err(|e| e.to_string())?;
    let run = device_training(cfg, &train, Backend::Portable).map_err(|e| e.to_string())?;
    if train.len() < adam.batch {
        return Err("export needs a batch of training images for the Adam run".into());
    }
    let adam_run = device_adam(adam, &train, Backend::Portable).map_err(|e| e.to_string())?;
    let (folded, mlp_bytes, preds) = fold_for_device(mlp, &test).map_err(|e| e.to_string())?;
    let mlp_correct = preds.iter().zip(&test.t).filter(|(p, t)| p == t).count();
    let (conv_spec, conv_bytes, conv_preds) =
        fold_for_device(conv, &test).map_err(|e| e.to_string())?;
    let conv_correct = conv_preds
        .iter()
        .zip(&test.t)
        .filter(|(p, t)| p == t)
        .count();
    // The chapter 5 net in the layout of the Cortex-M DSP kernel (a core without DSP reads it
    // as well); the conv net's Convolution in rows (its only layout).
    let (_, int8_bytes, int8_logits) = int8_for_device(
        net.spec(),
        net.params(),
        &[],
        zeronn::quant::WeightLayout::Dsp,
        &data.train,
        &test,
    )?;
    let (conv_int8_spec, conv_int8_bytes, conv_int8_logits) = int8_for_device(
        conv.spec(),
        conv.params(),
        conv.state(),
        zeronn::quant::WeightLayout::Rows,
        &data.train,
        &test,
    )
    .map_err(|e| format!("the conv net in int8: {e}"))?;
    let conv_int8_correct = int8_correct_of(&conv_int8_logits, &test.t);
    let int8_correct = int8_correct_of(&int8_logits, &test.t);

    let mut rs = String::new();
    let w = &mut rs;
    let _ = writeln!(
        w,
        "// Written by `zeronn export`: what the desktop computed on this bundle's data."
    );
    let _ = writeln!(
        w,
        "/// Test images in the bundle.\npub const TEST_IMAGES: usize = {};",
        test.len()
    );
    let _ = writeln!(
        w,
        "/// How many of them `zeronn eval` classifies correctly.\npub const TEST_CORRECT: usize = {correct};"
    );
    let _ = writeln!(
        w,
        "/// How many of them the int8 model classifies correctly on the desktop.\npub const INT8_CORRECT: usize = {int8_correct};"
    );
    let _ = writeln!(
        w,
        "/// Hidden units of the on-device training net (784-hidden-10).\npub const TRAIN_HIDDEN: usize = {};",
        cfg.hidden
    );
    let _ = writeln!(
        w,
        "/// Mini-batch size.\npub const TRAIN_BATCH: usize = {};",
        cfg.batch
    );
    let _ = writeln!(
        w,
        "/// SGD steps.\npub const TRAIN_STEPS: usize = {};",
        cfg.steps
    );
    let _ = writeln!(
        w,
        "/// Seed of the initial weights and the batches.\npub const TRAIN_SEED: u64 = {};",
        cfg.seed
    );
    let _ = writeln!(
        w,
        "/// Learning rate ({}), as f32 bits.\npub const TRAIN_LR_BITS: u32 = {:#010x};",
        cfg.lr,
        cfg.lr.to_bits()
    );
    let _ = writeln!(
        w,
        "/// Standard deviation of the initial weights.\npub const TRAIN_INIT_STD: f64 = {:?};",
        cfg.init_std
    );
    let _ = writeln!(
        w,
        "/// Loss of the first step ({}), as f32 bits.\npub const TRAIN_FIRST_LOSS_BITS: u32 = {:#010x};",
        run.first_loss,
        run.first_loss.to_bits()
    );
    let _ = writeln!(
        w,
        "/// Loss of the last step ({}), as f32 bits.\npub const TRAIN_LAST_LOSS_BITS: u32 = {:#010x};",
        run.last_loss,
        run.last_loss.to_bits()
    );
    let _ = writeln!(
        w,
        "/// CRC-32 of the final parameters.\npub const TRAIN_PARAMS_CRC: u32 = {:#010x};",
        run.params_crc
    );

    rs.push_str(&zeronn::model_file::layers_rs(
        "MLP_LAYERS",
        "The layers of `mlp.zrnn` (BatchNorm folded).",
        &folded,
    ));
    let _ = writeln!(
        rs,
        "/// How many test images the desktop's predictions with `mlp.zrnn` get right.\npub const MLP_CORRECT: usize = {mlp_correct};"
    );
    rs.push_str(&zeronn::model_file::layers_rs(
        "CONV_LAYERS",
        "The layers of `conv.zrnn`, the conv net (BatchNorm after an Affine folded).",
        &conv_spec,
    ));
    let _ = writeln!(
        rs,
        "/// How many test images the desktop's predictions with `conv.zrnn` get right.\npub const CONV_CORRECT: usize = {conv_correct};"
    );
    rs.push_str(&zeronn::model_file::layers_rs(
        "CONV_INT8_LAYERS",
        "The layers of `conv-int8.zrnn`, the conv net in int8.",
        &conv_int8_spec,
    ));
    let _ = writeln!(
        rs,
        "/// How many test images the desktop's int8 logits with `conv-int8.zrnn` get right.\npub const CONV_INT8_CORRECT: usize = {conv_int8_correct};"
    );
    rs.push_str(&zeronn::model_file::layers_rs(
        "ADAM_LAYERS",
        "The layers of the on-device Adam net.",
        &adam.spec(train.pixels),
    ));
    let w = &mut rs;
    for (name, doc, value) in [
        (
            "ADAM_BATCH",
            "Mini-batch size of the Adam run.",
            adam.batch as u64,
        ),
        ("ADAM_STEPS", "Adam steps.", adam.steps as u64),
        (
            "ADAM_SEED_U64",
            "Seed of its initial weights and batches.",
            adam.seed,
        ),
    ] {
        let _ = writeln!(w, "/// {doc}\npub const {name}: u64 = {value};");
    }
    let _ = writeln!(
        w,
        "/// Adam's learning rate ({}), as f64 bits.\npub const ADAM_LR_BITS: u64 = {:#018x};",
        adam.lr,
        adam.lr.to_bits()
    );
    for (name, doc, value) in [
        (
            "ADAM_FIRST_LOSS_BITS",
            "Loss of the first Adam step, as f32 bits.",
            adam_run.run.first_loss.to_bits(),
        ),
        (
            "ADAM_LAST_LOSS_BITS",
            "Loss of the last Adam step, as f32 bits.",
            adam_run.run.last_loss.to_bits(),
        ),
        (
            "ADAM_PARAMS_CRC",
            "CRC-32 of the parameters after the Adam run.",
            adam_run.run.params_crc,
        ),
        (
            "ADAM_STATE_CRC",
            "CRC-32 of the BatchNorm state after the Adam run.",
            adam_run.state_crc,
        ),
    ] {
        let _ = writeln!(w, "/// {doc}\npub const {name}: u32 = {value:#010x};");
    }

    let files: [(&str, &[u8]); 14] = [
        ("model.zrnn", model_bytes),
        ("model-int8.zrnn", &int8_bytes),
        ("int8-logits.i8", &int8_logits),
        ("mlp.zrnn", &mlp_bytes),
        ("mlp-pred.u8", &preds),
        ("conv.zrnn", &conv_bytes),
        ("conv-pred.u8", &conv_preds),
        ("conv-int8.zrnn", &conv_int8_bytes),
        ("conv-int8-logits.i8", &conv_int8_logits),
        ("test-x.u8", &test.raw),
        ("test-t.u8", &test.t),
        ("train-x.u8", &train.raw),
        ("train-t.u8", &train.t),
        ("expected.rs", rs.as_bytes()),
    ];
    write_bundle(out, &files)?;
    Ok(format!(
        "{}: model, {} test images ({correct} correct), {} training images; device training: loss {} -> {}, parameters crc {:08x}; \
         int8 ({int8_correct} correct); mlp {} ({mlp_correct} correct); conv {} ({conv_correct} correct; int8 {conv_int8_correct}); device Adam: loss {} -> {}, parameters crc {:08x}",
        out.display(),
        test.len(),
        train.len(),
        run.first_loss,
        run.last_loss,
        run.params_crc,
        crate::describe::layers(&folded),
        crate::describe::layers(&conv_spec),
        adam_run.run.first_loss,
        adam_run.run.last_loss,
        adam_run.run.params_crc
    ))
}

/// A net (`spec`, `params`, `state`) quantized to int8 as `zeronn quantize` does (ranges from
/// the first 300 images of `train`), its weights in `layout`, and its int8 logits for every
/// image of `test` through the reference loop (the firmware's sums; an error unless the
/// desktop's fast kernels give the same bits): the int8 layer list, the model's bytes and the
/// logits.
fn int8_for_device(
    spec: &NetSpec,
    params: &[f32],
    state: &[f32],
    layout: zeronn::quant::WeightLayout,
    train: &crate::mnist::Split,
    test: &crate::mnist::Split,
) -> Result<(NetSpec, Vec<u8>, Vec<u8>), String> {
    let q = crate::quantize::quantize_on(spec, params, state, train, crate::quantize::CALIB)?;
    let bytes = q.to_bytes(layout).map_err(|e| e.to_string())?;
    let file = zeronn::ModelFile::from_bytes("(the int8 model)", &bytes);
    let model = file.int8_model().map_err(|e| e.to_string())?;
    let mut xq = vec![0i8; test.len() * test.pixels];
    crate::quantize::ToInt8::new(model.input_params()).samples(test, 0, test.len(), &mut xq);
    let mut ws = vec![0i8; zeronn::QModel::workspace_len(model.spec(), test.len())];
    let logits = model
        .predict(&xq, &mut ws, None)
        .map_err(|e| e.to_string())?
        .to_vec();
    // The desktop's fast kernels (VNNI, AMX for a batch) must give the reference's bits on
    // the images the firmware checks.
    let mut pack = vec![0i32; zeronn::QModel::pack_len(model.spec())];
    let packed = model.pack(&mut pack).map_err(|e| e.to_string())?;
    let fast = model
        .predict(&xq, &mut ws, Some(&packed))
        .map_err(|e| e.to_string())?;
    if fast != logits.as_slice() {
        return Err(format!(
            "the int8 fast kernel ({}) differs from the reference loop on the embedded images",
            zeronn::quant::kernel_name()
        ));
    }
    let (spec, logits) = (*model.spec(), logits.iter().map(|&v| v as u8).collect());
    Ok((spec, bytes, logits))
}

/// How many of `logits` (10 int8 values an image) pick the label in `t`.
fn int8_correct_of(logits: &[u8], t: &[u8]) -> usize {
    logits
        .chunks_exact(10)
        .zip(t)
        .filter(|(l, t)| {
            let l: Vec<i8> = l.iter().map(|&b| b as i8).collect();
            zeronn::quant::argmax(&l) == usize::from(**t)
        })
        .count()
}

/// Writes `files` as the directory `out`: into a new sibling directory first, then swapped in
/// by renames, so a failure leaves any earlier bundle as it was. An existing `out` is replaced
/// only if it holds nothing but a bundle's files (regular files of those names).
fn write_bundle(out: &Path, files: &[(&str, &[u8])]) -> Result<(), String> {
    let shown = out.display();
    let raw = out.as_os_str().to_string_lossy();
    let last = raw.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let Some(name) = out.file_name().filter(|_| !matches!(last, "" | "." | "..")) else {
        return Err(format!("--out {shown}: not a directory name"));
    };
    if out.exists() {
        let entries = fs::read_dir(out).map_err(|e| format!("--out {shown}: {e}"))?;
        for e in entries {
            let e = e.map_err(|e| format!("--out {shown}: {e}"))?;
            let n = e.file_name();
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            if !is_file || !files.iter().any(|(f, _)| n == *f) {
                return Err(format!(
                    "--out {shown} holds {}, which is not part of a bundle: give a new \
                     directory, or one an earlier export wrote",
                    n.to_string_lossy()
                ));
            }
        }
    }
    // Siblings of our own, named by this process: never a directory of the user's.
    let sibling = |tag: &str| {
        let mut n = name.to_os_string();
        n.push(format!(".{tag}-{}", std::process::id()));
        out.with_file_name(n)
    };
    let (partial, old) = (sibling("partial"), sibling("old"));
    fs::create_dir(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let written = files.iter().try_for_each(|(name, bytes)| {
        let p = partial.join(name);
        fs::write(&p, bytes).map_err(|e| format!("{}: cannot write: {e}", p.display()))
    });
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    // The earlier bundle steps aside, the new one takes its place, then the earlier one goes.
    let existed = out.exists();
    if existed && let Err(e) = fs::rename(out, &old) {
        let _ = fs::remove_dir_all(&partial);
        return Err(format!("--out {shown}: {e}"));
    }
    if let Err(e) = fs::rename(&partial, out) {
        if existed {
            let _ = fs::rename(&old, out);
        }
        let _ = fs::remove_dir_all(&partial);
        return Err(format!("--out {shown}: {e}"));
    }
    if existed {
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_replaces_only_an_earlier_bundle() {
        let d = std::env::temp_dir().join(format!("zeronn-bundle-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let out = d.join("bundle");
        let (a, b): (&[u8], &[u8]) = (b"first", b"second");
        write_bundle(&out, &[("model.zrnn", a), ("expected.rs", a)]).unwrap();
        assert_eq!(fs::read(out.join("model.zrnn")).unwrap(), a);
        // An earlier bundle is replaced whole.
        write_bundle(&out, &[("model.zrnn", b), ("expected.rs", b)]).unwrap();
        assert_eq!(fs::read(out.join("expected.rs")).unwrap(), b);
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            1,
            "nothing left beside the bundle"
        );
        // A directory holding anything else is left alone.
        fs::write(out.join("notes.txt"), "mine").unwrap();
        let e = write_bundle(&out, &[("model.zrnn", a), ("expected.rs", a)]).unwrap_err();
        assert!(e.contains("notes.txt"), "{e}");
        assert_eq!(fs::read(out.join("model.zrnn")).unwrap(), b);
        assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
        // A file that cannot be written leaves the earlier bundle as it was.
        fs::remove_file(out.join("notes.txt")).unwrap();
        let files = [("model.zrnn", a), ("expected.rs", a), ("no/such", a)];
        let e = write_bundle(&out, &files).unwrap_err();
        assert!(e.contains("cannot write"), "{e}");
        assert_eq!(fs::read(out.join("model.zrnn")).unwrap(), b);
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            1,
            "nothing left beside the bundle"
        );
        // Not a directory name, or a directory entry that only looks like a bundle's file.
        for bad in [d.join("."), d.join("bundle/."), d.join("..")] {
            assert!(write_bundle(&bad, &[("model.zrnn", a)]).is_err(), "{bad:?}");
        }
        fs::remove_file(out.join("model.zrnn")).unwrap();
        fs::create_dir(out.join("model.zrnn")).unwrap();
        fs::write(out.join("model.zrnn").join("keep"), "mine").unwrap();
        assert!(write_bundle(&out, &[("model.zrnn", a)]).is_err());
        assert!(out.join("model.zrnn").join("keep").exists());
        // A directory of the user's named like our scratch is never touched.
        let theirs = d.join("other.partial");
        fs::create_dir(&theirs).unwrap();
        write_bundle(&d.join("other"), &[("model.zrnn", a)]).unwrap();
        assert!(theirs.is_dir());
        let _ = fs::remove_dir_all(&d);
    }
}
