//! Device selection: CPU by default; CUDA or Metal when built with the feature and present.

use candle_core::Device;

/// Which device the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePreference {
    /// Always the CPU.
    #[default]
    Cpu,
    /// The first CUDA or Metal device when available, else the CPU.
    BestAvailable,
    /// CUDA device `ordinal`; an error if not built or not present.
    Cuda(usize),
    /// Metal device `ordinal`; an error if not built or not present.
    Metal(usize),
}

impl std::str::FromStr for DevicePreference {
    type Err = crate::OpsError;
    fn from_str(s: &str) -> crate::Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let ordinal = |rest: &str| -> crate::Result<usize> {
            if rest.is_empty() {
                return Ok(0);
            }
            rest.trim_start_matches(':')
                .parse()
                .map_err(|_| crate::OpsError::Device(format!("bad device ordinal in {s:?}")))
        };
        match s.as_str() {
            "cpu" => Ok(Self::Cpu),
            "auto" | "best" => Ok(Self::BestAvailable),
            _ if s.starts_with("cuda") => Ok(Self::Cuda(ordinal(&s[4..])?)),
            _ if s.starts_with("metal") => Ok(Self::Metal(ordinal(&s[5..])?)),
            _ => Err(crate::OpsError::Device(format!(
                "unknown device {s:?} (cpu, auto, cuda[:N], metal[:N])"
            ))),
        }
    }
}

/// Resolves a preference to a device.
pub fn select_device(pref: DevicePreference) -> crate::Result<Device> {
    match pref {
        DevicePreference::Cpu => Ok(Device::Cpu),
        DevicePreference::BestAvailable => {
            if candle_core::utils::cuda_is_available()
                && let Ok(d) = Device::new_cuda(0)
            {
                return Ok(d);
            }
            if candle_core::utils::metal_is_available()
                && let Ok(d) = Device::new_metal(0)
            {
                return Ok(d);
            }
            Ok(Device::Cpu)
        }
        DevicePreference::Cuda(i) => {
            if !candle_core::utils::cuda_is_available() {
                return Err(crate::OpsError::Device(
                    "CUDA requested but xfer was built without the `cuda` feature: build with `cargo xtask build --cuda` (or `--features cuda`)".into(),
                ));
            }
            Device::new_cuda(i)
                .map_err(|e| crate::OpsError::Device(format!("CUDA device {i}: {e}")))
        }
        DevicePreference::Metal(i) => {
            if !candle_core::utils::metal_is_available() {
                return Err(crate::OpsError::Device(
                    "Metal requested but xfer was built without the `metal` feature: build with `cargo xtask build --metal` (or `--features metal`)".into(),
                ));
            }
            Device::new_metal(i)
                .map_err(|e| crate::OpsError::Device(format!("Metal device {i}: {e}")))
        }
    }
}

/// The device named by the `XFER_DEVICE` environment variable (`cpu` when unset).
pub fn device_from_env() -> crate::Result<Device> {
    match std::env::var("XFER_DEVICE") {
        Ok(s) if !s.trim().is_empty() => select_device(s.parse()?),
        _ => Ok(Device::Cpu),
    }
}
