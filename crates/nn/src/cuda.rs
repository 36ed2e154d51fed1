//! Checking that CUDA can run here before burn touches it (the `cuda` feature).
//!
//! burn's CUDA backend (cubecl-cuda, through cudarc) panics at the first tensor when the driver
//! library is missing, and again at the first kernel when NVRTC or the CUDA headers are. [`probe`]
//! asks the same libraries first, loading them at run time exactly as cudarc does, and turns each
//! missing piece into an error that says what to do. It never panics and never calls burn.

use std::path::PathBuf;

use cudarc::driver::{result as driver, sys as driver_sys};
use cudarc::nvrtc::sys as nvrtc_sys;

/// What the CPU fallback is called in the errors.
const USE_CPU: &str = "use device = \"cpu\"";

/// Returns the number of CUDA devices this process sees, after checking everything burn's CUDA
/// backend needs at run time: the driver library (`libcuda`), `cuInit`, at least one device,
/// device `ordinal` (when given) among them, NVRTC (`libnvrtc`, which compiles the CUDA C++
/// kernels) and the CUDA headers NVRTC reads. The error names the first thing missing and
/// what to do about it.
pub fn probe(ordinal: Option<usize>) -> Result<usize, String> {
    // cudarc panics on any driver call when libcuda cannot be opened: ask first.
    // SAFETY: only opens and closes the library (dlopen / dlclose), calls nothing in it.
    if !unsafe { driver_sys::is_culib_present() } {
        return Err(format!(
            "libcuda.so not found: this machine has no NVIDIA driver; {USE_CPU} (or put the \
             driver's libcuda.so.1 on LD_LIBRARY_PATH)"
        ));
    }
    driver::init().map_err(|e| {
        format!(
            "cuInit failed: {e}; driver {}, bindings built for CUDA {} (a driver older than \
             the bindings needs a rebuild with CUDARC_CUDA_VERSION set to its version); check \
             nvidia-smi, or {USE_CPU}",
            driver_version().map_or_else(|| "version unknown".into(), cuda_version_name),
            cuda_version_name(driver_sys::CUDA_VERSION as i32),
        )
    })?;
    let count = driver::device::get_count().map_err(|e| format!("cuDeviceGetCount failed: {e}; {USE_CPU}"))?;
    let count = usize::try_from(count).unwrap_or(0);
    if count == 0 {
        return Err(format!(
            "the NVIDIA driver sees no CUDA device (CUDA_VISIBLE_DEVICES={}); {USE_CPU}",
            std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "<unset>".into())
        ));
    }
    if let Some(ordinal) = ordinal {
        if ordinal >= count {
            return Err(format!("cuda:{ordinal} requested but this machine has {}", describe_devices(count)));
        }
    }
    // SAFETY: as above.
    if !unsafe { nvrtc_sys::is_culib_present() } {
        return Err(format!(
            "libnvrtc not found: burn's CUDA kernels are CUDA C++ compiled at run time by NVRTC; \
             install it (CUDA toolkit, or pip nvidia-cuda-nvrtc) and put its lib directory on \
             LD_LIBRARY_PATH, or {USE_CPU}"
        ));
    }
    match cuda_path() {
        Some(path) if path.join("include").is_dir() => Ok(count),
        Some(path) => Err(format!(
            "CUDA headers not found: {} is not a directory; NVRTC compiles the kernels against \
             them, so set CUDA_PATH to a CUDA toolkit (the directory holding include/cuda_fp16.h), \
             or {USE_CPU}",
            path.join("include").display()
        )),
        None => Err(format!(
            "CUDA headers not found (no CUDA_PATH, /usr/local/cuda, /opt/cuda or /usr/bin/nvcc): \
             NVRTC compiles the kernels against them, so set CUDA_PATH to a CUDA toolkit (the \
             directory holding include/cuda_fp16.h), or {USE_CPU}"
        )),
    }
}

/// Checks that NCCL (`libnccl`), which burn's CUDA collectives use to sum across GPUs, can be
/// loaded; without it they panic ("no transport between its devices").
pub fn probe_nccl() -> Result<(), String> {
    // SAFETY: only opens and closes the library (dlopen / dlclose), calls nothing in it.
    if unsafe { cudarc::nccl::sys::is_culib_present() } {
        Ok(())
    } else {
        Err("libnccl not found (install NCCL, e.g. pip nvidia-nccl-cu13, and put its lib directory on LD_LIBRARY_PATH)".into())
    }
}

/// The CUDA version the driver supports (`cuDriverGetVersion`, callable before `cuInit`).
fn driver_version() -> Option<i32> {
    let mut version = 0;
    // SAFETY: libcuda is present (checked by the caller); writes one int.
    let result = unsafe { driver_sys::cuDriverGetVersion(&mut version) };
    (result == driver_sys::CUresult::CUDA_SUCCESS).then_some(version)
}

/// 13000 -> "13.0".
fn cuda_version_name(version: i32) -> String {
    format!("{}.{}", version / 1000, version % 1000 / 10)
}

/// "1 GPU (cuda:0)", "4 GPUs (cuda:0 to cuda:3)".
fn describe_devices(count: usize) -> String {
    match count {
        1 => "1 GPU (cuda:0)".into(),
        n => format!("{n} GPUs (cuda:0 to cuda:{})", n - 1),
    }
}

/// Where cubecl-cuda looks for the CUDA toolkit whose `include/` it passes to NVRTC (a copy of
/// `cubecl_cuda::install::cuda_path`, which panics at the first kernel when this is `None`).
fn cuda_path() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CUDA_PATH") {
        return Some(PathBuf::from(path));
    }
    ["/usr/local/cuda", "/opt/cuda"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .or_else(|| std::path::Path::new("/usr/bin/nvcc").exists().then(|| PathBuf::from("/usr")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine (and CI) has no NVIDIA driver: the probe must say so instead of panicking.
    #[test]
    fn probe_without_a_driver_names_libcuda() {
        if unsafe { driver_sys::is_culib_present() } {
            eprintln!("skipped: this machine has libcuda");
            return;
        }
        let err = probe(None).unwrap_err();
        assert!(err.contains("libcuda"), "{err}");
        assert!(err.contains("device = \"cpu\""), "{err}");
        assert_eq!(probe(Some(3)).unwrap_err(), err);
    }

    #[test]
    fn device_lists_read_naturally() {
        assert_eq!(describe_devices(1), "1 GPU (cuda:0)");
        assert_eq!(describe_devices(4), "4 GPUs (cuda:0 to cuda:3)");
        assert_eq!(cuda_version_name(13000), "13.0");
        assert_eq!(cuda_version_name(12090), "12.9");
    }
}
