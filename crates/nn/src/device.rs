//! Device selection by name, so configuration files and command lines can pick a backend.
//!
//! Names: `cpu` (burn's flex backend: pure Rust, rayon, SIMD; `flex` and the old `default` are
//! aliases), `wgpu` (burn's WGSL backend: any Vulkan/Metal/GL adapter, Mesa's software renderer
//! included, which is how CI runs the GPU-backend code on CPU-only machines), `cuda` (every
//! GPU of the machine), `cuda:N` (GPU N), `cuda:0,2` (a list). `cuda` needs a build with the
//! `cuda` feature and a machine with an NVIDIA driver; both are checked before burn touches the
//! device, because burn panics in a worker thread when the driver is missing.
//!
//! Why there is no "let burn choose": with the `wgpu` feature built in, burn's own default is
//! the wgpu adapter, and float results differ by backend; a run's backend must be what its
//! configuration says.

use std::fmt;

use crate::NnError;
use burn::tensor::{Device, Tensor};

/// The backend a device name selects. Float results differ between kinds, so the kind belongs
/// in a cache key; which GPU and how many do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Cpu,
    Wgpu,
    Cuda,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed device name: its kind and, for CUDA, which GPUs (`None`: all of the machine's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub kind: DeviceKind,
    pub ordinals: Option<Vec<usize>>,
}

const NAMES: &str = "`cpu` (default), `wgpu`, `cuda`, `cuda:N` or `cuda:N,M,…`";

/// Whether this build can run `kind` at all (compiled-in backends).
pub fn compiled(kind: DeviceKind) -> bool {
    match kind {
        DeviceKind::Cpu | DeviceKind::Wgpu => true,
        DeviceKind::Cuda => cfg!(feature = "cuda"),
    }
}

impl DeviceSpec {
    /// Parses a device name; an unknown name, a malformed ordinal, or `cuda` in a build
    /// without the `cuda` feature is an error saying what to write instead. Touches no device.
    pub fn parse(name: &str) -> Result<Self, NnError> {
        let lower = name.trim().to_ascii_lowercase();
        let bad = |extra: String| NnError::Device { name: name.to_string(), extra };
        let (head, tail) = match lower.split_once(':') {
            Some((h, t)) => (h, Some(t)),
            None => (lower.as_str(), None),
        };
        let kind = match head {
            "cpu" | "flex" | "default" | "" => DeviceKind::Cpu,
            "wgpu" => DeviceKind::Wgpu,
            "cuda" => DeviceKind::Cuda,
            _ => return Err(bad(format!("; use {NAMES}"))),
        };
        let ordinals = match (kind, tail) {
            (_, None) => None,
            (DeviceKind::Cuda, Some(list)) => {
                let mut v = Vec::new();
                for part in list.split(',') {
                    let n: usize = part
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("; `{part}` is not a GPU number: write e.g. `cuda:0` or `cuda:0,1`")))?;
                    if v.contains(&n) {
                        return Err(bad(format!("; GPU {n} is listed twice")));
                    }
                    v.push(n);
                }
                Some(v)
            }
            (k, Some(_)) => return Err(bad(format!("; `{k}` takes no number, use {NAMES}"))),
        };
        if !compiled(kind) {
            return Err(bad("; this build has no CUDA backend: rebuild with `--features cuda` (see README, GPU) or use `cpu`".into()));
        }
        Ok(DeviceSpec { kind, ordinals })
    }

    /// What a cache key records of this device: its kind only.
    pub fn cache_kind(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The burn devices this name stands for (one, or one per listed / present GPU), after
    /// checking that the backend can start here: a missing NVIDIA driver, a GPU number the
    /// machine lacks, or no wgpu adapter is an error that says so, never a panic.
    pub fn open(&self) -> Result<Vec<Device>, NnError> {
        match self.kind {
            DeviceKind::Cpu => Ok(vec![Device::flex()]),
            DeviceKind::Wgpu => {
                let dev = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
                probe_runs(&dev).map_err(|why| NnError::DeviceUnavailable {
                    name: "wgpu".into(),
                    why: format!("no usable wgpu adapter ({why}); install Mesa (`mesa-vulkan-drivers` or `libegl-mesa0`) or use `cpu`"),
                })?;
                Ok(vec![dev])
            }
            DeviceKind::Cuda => self.open_cuda(),
        }
    }

    #[cfg(feature = "cuda")]
    fn open_cuda(&self) -> Result<Vec<Device>, NnError> {
        let unavailable = |why: String| NnError::DeviceUnavailable { name: self.to_string(), why };
        let count = crate::cuda::probe(None).map_err(unavailable)?;
        let ordinals = match &self.ordinals {
            Some(list) => list.clone(),
            None => (0..count).collect(),
        };
        for &n in &ordinals {
            crate::cuda::probe(Some(n)).map_err(unavailable)?;
        }
        Ok(ordinals.into_iter().map(Device::cuda).collect())
    }

    #[cfg(not(feature = "cuda"))]
    fn open_cuda(&self) -> Result<Vec<Device>, NnError> {
        // `parse` refuses CUDA names in this build; kept for exhaustiveness.
        Err(NnError::DeviceUnavailable { name: self.to_string(), why: "this build has no CUDA backend".into() })
    }

    /// The single device of a stage that does not run data-parallel; several GPUs are an error
    /// naming the first one to use instead.
    pub fn open_one(&self) -> Result<Device, NnError> {
        let mut devices = self.open()?;
        if devices.len() != 1 {
            return Err(NnError::DeviceUnavailable {
                name: self.to_string(),
                why: format!("{} GPUs selected, but this step runs on one: write `cuda:0`", devices.len()),
            });
        }
        Ok(devices.remove(0))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ordinals {
            None => f.write_str(self.kind.as_str()),
            Some(list) => {
                let list: Vec<String> = list.iter().map(|n| n.to_string()).collect();
                write!(f, "{}:{}", self.kind, list.join(","))
            }
        }
    }
}

/// Whether devices of `kind` can sum gradients on the devices with burn's collectives
/// (`burn::tensor::distributed`): CUDA GPUs can, through NCCL, when `libnccl` loads; the CPU
/// and wgpu backends have no collectives. `Err` says why not, for a log line: the caller then
/// sums through host memory.
pub fn device_collectives(kind: DeviceKind) -> Result<(), String> {
    match kind {
        DeviceKind::Cuda => cuda_collectives(),
        other => Err(format!("burn's {other} backend has no device collectives")),
    }
}

#[cfg(feature = "cuda")]
fn cuda_collectives() -> Result<(), String> {
    crate::cuda::probe_nccl()
}

#[cfg(not(feature = "cuda"))]
fn cuda_collectives() -> Result<(), String> {
    Err("this build has no CUDA backend".into())
}

/// Runs one tiny op on `device`, turning a panic of the backend's start-up into an error.
fn probe_runs(device: &Device) -> Result<(), String> {
    let dev = device.clone();
    std::panic::catch_unwind(move || Tensor::<1>::ones([2], &dev).sum().into_scalar::<f32>())
        .map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend panicked while starting".into())
        })
        .and_then(|v| if v == 2.0 { Ok(()) } else { Err(format!("a test sum gave {v} instead of 2")) })
}

/// The compute dtype a precision name stands for: `f32` is `Some(None)` (the plain path),
/// `bf16`/`f16` the reduced dtype; any other name `None`.
pub fn compute_dtype(name: &str) -> Option<Option<burn::tensor::FloatDType>> {
    use burn::tensor::FloatDType;
    match name {
        "f32" => Some(None),
        "bf16" => Some(Some(FloatDType::BF16)),
        "f16" => Some(Some(FloatDType::F16)),
        _ => None,
    }
}

/// The single device a name stands for (see [`DeviceSpec`]), checked to start.
pub fn device_from_name(name: &str) -> Result<Device, NnError> {
    DeviceSpec::parse(name)?.open_one()
}

/// The same device with automatic differentiation enabled (for training).
pub fn autodiff(device: &Device) -> Device {
    device.clone().autodiff()
}

/// The same device with automatic differentiation and, when `checkpointing`, burn's balanced
/// gradient checkpointing: activations of cheap (memory-bound) ops are recomputed in the
/// backward pass instead of kept, lowering peak memory at some extra compute.
pub fn autodiff_with(device: &Device, checkpointing: bool) -> Device {
    let device = device.clone().autodiff();
    if checkpointing {
        device.gradient_checkpointing()
    } else {
        device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_fail_clearly() {
        for name in ["cpu", "CPU", "flex", "default", " cpu "] {
            let spec = DeviceSpec::parse(name).unwrap();
            assert_eq!(spec.kind, DeviceKind::Cpu, "{name}");
            assert_eq!(spec.cache_kind(), "cpu");
        }
        assert!(device_from_name("cpu").is_ok());
        let err = DeviceSpec::parse("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("`cpu`") && err.contains("cuda:N"), "{err}");
        let err = DeviceSpec::parse("cpu:1").unwrap_err().to_string();
        assert!(err.contains("takes no number"), "{err}");
        assert_eq!(DeviceSpec::parse("wgpu").unwrap().cache_kind(), "wgpu");
    }

    #[test]
    fn cuda_names_keep_the_kind_and_the_gpus() {
        let parsed = DeviceSpec::parse("cuda:0,2");
        if cfg!(feature = "cuda") {
            let spec = parsed.unwrap();
            assert_eq!(spec, DeviceSpec { kind: DeviceKind::Cuda, ordinals: Some(vec![0, 2]) });
            assert_eq!(spec.cache_kind(), "cuda");
            assert_eq!(spec.to_string(), "cuda:0,2");
            assert_eq!(DeviceSpec::parse("cuda").unwrap().ordinals, None);
            let err = DeviceSpec::parse("cuda:x").unwrap_err().to_string();
            assert!(err.contains("`x` is not a GPU number"), "{err}");
            let err = DeviceSpec::parse("cuda:1,1").unwrap_err().to_string();
            assert!(err.contains("twice"), "{err}");
        } else {
            let err = parsed.unwrap_err().to_string();
            assert!(err.contains("--features cuda") && err.contains("cuda:0,2"), "{err}");
        }
    }

    /// With the CUDA backend built in but no NVIDIA driver (these machines), opening a CUDA
    /// device is an error naming the missing driver, never a panic.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_without_a_driver_is_an_error() {
        if crate::cuda::probe(None).is_ok() {
            eprintln!("SKIPPED: this machine has a CUDA driver");
            return;
        }
        let err = DeviceSpec::parse("cuda:0").unwrap().open().unwrap_err().to_string();
        assert!(err.contains("cuda:0") && err.to_lowercase().contains("libcuda"), "{err}");
    }
}
