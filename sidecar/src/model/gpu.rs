//! GPU memory of the inference device, read through NVML (`libnvidia-ml.so`, loaded at run
//! time) in `cuda` builds; other builds have no GPU probe.

/// Reads used / total memory of one GPU.
pub struct GpuProbe {
    #[cfg(feature = "cuda")]
    nvml: nvml_wrapper::Nvml,
    #[cfg(feature = "cuda")]
    index: u32,
}

/// GPU memory, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuMemory {
    pub used: u64,
    pub total: u64,
}

impl GpuProbe {
    /// Opens NVML for GPU `index`; an error says why GPU memory cannot be read.
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
    fn read(&self) -> Result<GpuMemory, nvml_wrapper::error::NvmlError> {
        let info = self.nvml.device_by_index(self.index)?.memory_info()?;
        Ok(GpuMemory {
            used: info.used,
            total: info.total,
        })
    }

    /// The current reading, `None` if NVML fails now.
    pub fn sample(&self) -> Option<GpuMemory> {
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

impl GpuMemory {
    pub fn fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| self.used as f64 / self.total as f64)
    }
}
