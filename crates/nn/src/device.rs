//! Device selection by name, so configuration files and command lines can pick a backend.

use crate::NnError;
use burn::tensor::Device;

/// The device a name stands for. `flex` / `cpu`: burn's pure-Rust CPU backend (multi-threaded
/// with rayon and SIMD); `default`: burn's own choice (`BURN_DEVICE` honoured), which is flex in
/// the default build.
pub fn device_from_name(name: &str) -> Result<Device, NnError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "flex" | "cpu" => Ok(Device::flex()),
        "default" | "" => Ok(Device::default()),
        other if other.starts_with("cuda") => Err(NnError::Device {
            name: name.to_string(),
            extra: " (this build has no CUDA backend: burn's `cuda` feature is not enabled)".into(),
        }),
        _ => Err(NnError::Device { name: name.to_string(), extra: String::new() }),
    }
}

/// The same device with automatic differentiation enabled (for training).
pub fn autodiff(device: &Device) -> Device {
    device.clone().autodiff()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_fail_clearly() {
        assert!(device_from_name("flex").is_ok());
        assert!(device_from_name("CPU").is_ok());
        let err = device_from_name("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("flex"), "{err}");
        let err = device_from_name("cuda:0").unwrap_err().to_string();
        assert!(err.contains("cuda"), "{err}");
    }
}
