//! Model files on disk: written atomically in the zeronn model format, read back into an
//! aligned buffer and validated by the core.

use std::fs;
use std::path::Path;

use zeronn::NetSpec;
use zeronn::model::Model;
use zeronn::model_file::{self, FileError, ModelFile};

/// Writes a net's parameters and state to `path` in the model format. The file appears only
/// when complete (written beside it, then renamed), so a failure never leaves half a model.
pub fn save(path: &Path, spec: &NetSpec, params: &[f32], state: &[f32]) -> Result<(), String> {
    model_file::save(path, spec, params, state).map_err(|e| match e {
        FileError::Io { error, .. } => format!("{}: cannot write model: {error}", path.display()),
        e => e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically (the core's [`model_file::write_atomic`]).
pub use zeronn::model_file::write_atomic;

/// [`save`] to `path`, or if that fails, to `spare`: the error then says where the model is
/// (or that both failed).
pub fn save_or_spare(
    path: &Path,
    spare: &Path,
    spec: &NetSpec,
    params: &[f32],
    state: &[f32],
) -> Result<(), String> {
    save(path, spec, params, state).map_err(|e| match save(spare, spec, params, state) {
        Ok(()) => format!("{e}; the model is saved as {} instead", spare.display()),
        Err(e2) => format!("{e}; saving it as {} failed too: {e2}", spare.display()),
    })
}

/// Fails early, before a long run, if a model could not be written to `path`: it names a
/// directory, or its directory does not exist or does not let us create the file (tried with
/// the temporary file [`save`] writes first, removed again).
pub fn check_savable(flag: &str, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let raw = path.as_os_str().to_string_lossy();
    if raw.is_empty() || raw.ends_with('/') || path.file_name().is_none() || path.is_dir() {
        return Err(format!("{flag} {shown}: not a file name"));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "{flag} {shown}: directory {} does not exist",
            dir.display()
        ));
    }
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().readonly()
    {
        return Err(format!(
            "{flag} {shown}: the file is read-only; it would be replaced (remove it, make it \
             writable, or choose another name)"
        ));
    }
    let tmp = partial(path);
    let existed = tmp.exists();
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&tmp)
        .map_err(|e| format!("{flag} {shown}: cannot write in {}: {e}", dir.display()))?;
    if !existed {
        let _ = fs::remove_file(&tmp);
    }
    Ok(())
}

/// Fails if a net of `spec` could not be saved: its parameters and state must fit the model
/// format (4 GiB, every size below 2^32), and the list be valid.
pub fn check_size(spec: &NetSpec) -> Result<(), String> {
    spec.validate().map_err(|e| e.to_string())?;
    let values = spec.param_len() as u64 + spec.state_len() as u64;
    let bytes = values.saturating_mul(4);
    if bytes > u64::from(u32::MAX) {
        return Err(format!(
            "a {} net has {values} parameters and state values ({bytes} bytes), more than the \
             model format's 4 GiB",
            crate::describe::sizes(spec)
        ));
    }
    Ok(())
}

fn partial(path: &Path) -> std::path::PathBuf {
    model_file::partial_path(path)
}

/// Reads a model file (the core's [`ModelFile::read`]: a regular file, only the length its
/// header states); validate it with [`parse`].
pub fn read(path: &Path) -> Result<ModelFile, String> {
    ModelFile::read(path).map_err(|e| match e {
        FileError::Io { error, .. } => format!("{}: cannot read model: {error}", path.display()),
        FileError::NotAFile { .. } => {
            format!("{}: cannot read model: not a regular file", path.display())
        }
        e => e.to_string(),
    })
}

/// Validates model bytes read from `path`.
pub fn parse(file: &ModelFile) -> Result<Model<'_>, String> {
    file.model().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("zeronn-modelfile-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    use zeronn::TwoLayerShape;

    #[test]
    fn a_model_that_cannot_be_written_goes_to_the_spare_path() {
        let d = scratch("spare");
        let shape = TwoLayerShape::new(4, 3, 2);
        let spec = shape.spec();
        let params: Vec<f32> = (0..shape.param_len()).map(|i| i as f32 / 7.0).collect();
        let (bad, spare) = (d.join("missing").join("m.zrnn"), d.join("spare.zrnn"));
        assert!(check_savable("--save", &bad).is_err());
        let e = save_or_spare(&bad, &spare, &spec, &params, &[]).unwrap_err();
        assert!(e.contains("m.zrnn") && e.contains("spare.zrnn"), "{e}");
        let bytes = read(&spare).unwrap();
        let model = parse(&bytes).unwrap();
        let net = model.two_layer_net().unwrap();
        assert_eq!(*net.spec(), shape.spec());
        assert_eq!(net.params(), &params[..]);
        // Both failing: both named.
        let e = save_or_spare(&bad, &d.join("no").join("s.zrnn"), &spec, &params, &[]).unwrap_err();
        assert!(e.contains("failed too"), "{e}");
        // A good path: saved there, nothing beside it.
        let good = d.join("good.zrnn");
        check_savable("--save", &good).unwrap();
        save_or_spare(&good, &d.join("unused.zrnn"), &spec, &params, &[]).unwrap();
        assert!(good.is_file() && !d.join("unused.zrnn").exists());
        assert!(!d.join("good.zrnn.partial").exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn unsavable_paths_and_sizes_are_refused_up_front() {
        let d = scratch("check");
        assert!(
            check_savable("--save", &d)
                .unwrap_err()
                .contains("not a file name")
        );
        assert!(check_savable("--save", Path::new("")).is_err());
        let slash = format!("{}/", d.join("m.zrnn").display());
        assert!(
            check_savable("--save", Path::new(&slash))
                .unwrap_err()
                .contains("not a file name")
        );
        assert!(
            check_savable("--save", &d.join("nope").join("m.zrnn"))
                .unwrap_err()
                .contains("does not exist")
        );
        check_savable("--save", &d.join("m.zrnn")).unwrap();
        assert!(
            !d.join("m.zrnn.partial").exists(),
            "the probe file is removed"
        );
        check_size(&TwoLayerShape::new(784, 50, 10).spec()).unwrap();
        // 784·h + h + 10·h + 10 parameters of 4 bytes pass 4 GiB from h = 1 350 619 on.
        check_size(&TwoLayerShape::new(784, 1_350_617, 10).spec()).unwrap();
        let e = check_size(&TwoLayerShape::new(784, 1_350_619, 10).spec()).unwrap_err();
        assert!(e.contains("4 GiB"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }
}
