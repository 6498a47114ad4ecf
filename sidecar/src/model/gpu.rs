//! GPU memory and utilisation of the inference device, read through NVML
//! (`libnvidia-ml.so`, loaded at run time) in `cuda` builds; other builds have no GPU probe.
//! Together with the sidecar's throughput they tell a deadlock (busy, no output) from an
//! overload (busy, memory full, output falling) in the alert rules.

/// Reads memory and utilisation of one GPU.
pub struct GpuProbe {
    #[cfg(feature = "cuda")]
    nvml: nvml_wrapper::Nvml,
    #[cfg(feature = "cuda")]
    index: u32,
}

/// One reading of the GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSample {
    /// Memory in use, bytes.
    pub used: u64,
    /// Memory of the device, bytes.
    pub total: u64,
    /// Share (0–1) of NVML's last sample period in which kernels ran; `None` where the device
    /// does not report it.
    pub busy: Option<f64>,
}

impl GpuProbe {
    /// Opens NVML for GPU `index`; an error says why the GPU cannot be read.
    #[cfg(feature = "cuda")]
    pub fn open(index: u32) -> Result<GpuProbe, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML: {e}"))?;
        let probe = GpuProbe { nvml, index };
        probe
            .read()
            .map_err(|e| format!("NVML device {index}: {e}"))?;
        Ok(probe)
    }

    #[cfg(not(feature = "cuda"))]
    pub fn open(_index: u32) -> Result<GpuProbe, String> {
        Err("built without the `cuda` feature".into())
    }

    #[cfg(feature = "cuda")]
    fn read(&self) -> Result<GpuSample, nvml_wrapper::error::NvmlError> {
        let device = self.nvml.device_by_index(self.index)?;
        let memory = device.memory_info()?;
        // Some devices (and vGPU profiles) do not report utilisation: memory still counts.
        let busy = device.utilization_rates().ok().map(|u| busy_share(u.gpu));
        Ok(GpuSample {
            used: memory.used,
            total: memory.total,
            busy,
        })
    }

    /// The current reading, `None` if NVML fails now.
    pub fn sample(&self) -> Option<GpuSample> {
        #[cfg(feature = "cuda")]
        {
            self.read().ok()
        }
        #[cfg(not(feature = "cuda"))]
        {
            None
        }
    }
}

/// NVML's utilisation percent as a share, clamped to 0–1.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn busy_share(percent: u32) -> f64 {
    f64::from(percent.min(100)) / 100.0
}

impl GpuSample {
    /// Memory in use / total (`None` for a device that reports no memory).
    pub fn fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| self.used as f64 / self.total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_as_shares() {
        assert_eq!(busy_share(0), 0.0);
        assert_eq!(busy_share(37), 0.37);
        assert_eq!(busy_share(250), 1.0);
        let s = GpuSample {
            used: 3,
            total: 4,
            busy: Some(0.5),
        };
        assert_eq!(s.fraction(), Some(0.75));
        assert_eq!(GpuSample { total: 0, ..s }.fraction(), None);
    }

    #[test]
    fn without_cuda_there_is_no_probe() {
        if cfg!(not(feature = "cuda")) {
            assert!(GpuProbe::open(0).is_err());
        }
    }
}
