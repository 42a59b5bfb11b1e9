//! Which precision a detector runs in (`YOLO_PRECISION` for the object detector,
//! `ANPR_PLATE_PRECISION` for the plate detector): the float model as given, or the INT8 model
//! that `scripts/quantize.py` makes beside it (`yolov8n.onnx` -> `yolov8n.int8.onnx`).
//!
//! The choice is a pure function of (setting, provider, CPU features), [`choose`], so it is
//! tested on any machine: `auto` takes INT8 only on the CPU provider of an x86 CPU with VNNI
//! (AVX-512 VNNI or AVX-VNNI), whose int8 dot-product instructions make ONNX Runtime's u8s8
//! kernels about twice as fast as FP32 (docs/int8.md); without VNNI the int8 kernels gain little
//! or lose, and GPU providers have their own fast path (TensorRT / FP16), so FP32 stays.
//! [`select_model`] adds the file check: INT8 chosen by `auto` but missing falls back to FP32
//! with a warning; asked for explicitly, a missing file is a start-up error naming the fix.

use super::session::{Device, InferenceError, Provider};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The `YOLO_PRECISION` / `ANPR_PLATE_PRECISION` setting (`fp32`: the float model as given,
/// which for the plate detector is an FP16 file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionSetting {
    /// INT8 on a CPU with VNNI, FP32 otherwise.
    Auto,
    Fp32,
    /// INT8, required (on any provider): start-up fails without the file.
    Int8,
}

/// The precision a detector really runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// What of the CPU's instruction set matters to the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// AVX-512 VNNI (`avx512vnni`) or AVX-VNNI (`avxvnni`): int8 dot products in one instruction.
    pub vnni: bool,
}

impl CpuFeatures {
    /// This machine's features.
    pub fn detect() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures { vnni: std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni") }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuFeatures { vnni: false }
        }
    }
}

/// The precision `setting` asks for on `provider` with `cpu`'s features (the file is not
/// looked at: [`select_model`] does that).
pub fn choose(setting: PrecisionSetting, provider: Provider, cpu: CpuFeatures) -> Precision {
    match setting {
        PrecisionSetting::Fp32 => Precision::Fp32,
        PrecisionSetting::Int8 => Precision::Int8,
        PrecisionSetting::Auto if provider == Provider::Cpu && cpu.vnni => Precision::Int8,
        PrecisionSetting::Auto => Precision::Fp32,
    }
}

/// The INT8 model beside an FP32 one: `models/yolov8n.onnx` -> `models/yolov8n.int8.onnx`.
pub fn int8_path(fp32: &Path) -> PathBuf {
    let stem = fp32.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    fp32.with_file_name(format!("{stem}.int8.onnx"))
}

/// The file to load and its precision: [`choose`], then the INT8 file's presence. `fp32` is
/// the configured model; one that already names an `.int8.onnx` file runs as given. `var` is
/// the precision setting's name (`YOLO_PRECISION`, `ANPR_PLATE_PRECISION`), named in the
/// warning and the error.
pub fn select_model(
    var: &'static str,
    setting: PrecisionSetting,
    fp32: &Path,
    provider: Provider,
    cpu: CpuFeatures,
) -> Result<(PathBuf, Precision), InferenceError> {
    if fp32.to_string_lossy().ends_with(".int8.onnx") {
        return Ok((fp32.to_path_buf(), Precision::Int8));
    }
    match choose(setting, provider, cpu) {
        Precision::Fp32 => Ok((fp32.to_path_buf(), Precision::Fp32)),
        Precision::Int8 => {
            let int8 = int8_path(fp32);
            if int8.is_file() {
                Ok((int8, Precision::Int8))
            } else if setting == PrecisionSetting::Auto {
                log::warn!(
                    "{}=auto would run INT8 on this CPU (VNNI) but {} is missing; running the float model {} \
                     (make it with scripts/quantize.py, which scripts/setup.sh runs)",
                    var,
                    int8.display(),
                    fp32.display()
                );
                Ok((fp32.to_path_buf(), Precision::Fp32))
            } else {
                Err(InferenceError::Int8Missing { var, path: int8.display().to_string() })
            }
        }
    }
}

/// Loads the float model `path` or its INT8 sibling, as `setting` (the setting named `var`)
/// chooses for the provider and this CPU ([`select_model`]), with `load(file, device)`. With `INFERENCE_DEVICE=auto` the
/// provider is known only once a session loaded, so the float model is loaded first and
/// swapped for the INT8 one when the choice asks for it (a yolov8n loads in ~0.1 s, the plate
/// detector in ~0.3 s); the swap keeps the provider the probe got.
pub fn load_chosen<T>(
    var: &'static str,
    setting: PrecisionSetting,
    path: &Path,
    device: &Device,
    load: impl Fn(&Path, &Device) -> Result<T, InferenceError>,
    provider_of: impl Fn(&T) -> Provider,
) -> Result<T, InferenceError> {
    let cpu = CpuFeatures::detect();
    let known = match device {
        Device::Cpu => Some(Provider::Cpu),
        Device::Cuda => Some(Provider::Cuda),
        Device::TensorRt(_) => Some(Provider::TensorRt),
        Device::Auto => None,
    };
    match known {
        Some(provider) => {
            let (file, _) = select_model(var, setting, path, provider, cpu)?;
            load(&file, device)
        }
        None => {
            let first = load(path, device)?;
            let provider = provider_of(&first);
            let (file, _) = select_model(var, setting, path, provider, cpu)?;
            if file == path {
                Ok(first)
            } else {
                let device = if provider == Provider::Cpu { Device::Cpu } else { device.clone() };
                drop(first);
                load(&file, &device)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VNNI: CpuFeatures = CpuFeatures { vnni: true };
    const PLAIN: CpuFeatures = CpuFeatures { vnni: false };

    /// auto: INT8 only on the CPU provider of a VNNI CPU; fp32 / int8 whatever the machine.
    #[test]
    fn auto_takes_int8_only_on_a_vnni_cpu() {
        assert_eq!(choose(PrecisionSetting::Auto, Provider::Cpu, VNNI), Precision::Int8);
        assert_eq!(choose(PrecisionSetting::Auto, Provider::Cpu, PLAIN), Precision::Fp32);
        assert_eq!(choose(PrecisionSetting::Auto, Provider::Cuda, VNNI), Precision::Fp32);
        assert_eq!(choose(PrecisionSetting::Auto, Provider::TensorRt, VNNI), Precision::Fp32);
        for p in [Provider::Cpu, Provider::Cuda, Provider::TensorRt] {
            for cpu in [VNNI, PLAIN] {
                assert_eq!(choose(PrecisionSetting::Fp32, p, cpu), Precision::Fp32);
                assert_eq!(choose(PrecisionSetting::Int8, p, cpu), Precision::Int8);
            }
        }
    }

    /// A missing INT8 file: auto falls back to FP32, int8 is an error naming the file and fix.
    #[test]
    fn missing_int8_file() {
        let dir = std::env::temp_dir().join(format!("int8-select-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fp32 = dir.join("yolov8n.onnx");
        assert_eq!(int8_path(&fp32), dir.join("yolov8n.int8.onnx"));
        assert_eq!(
            select_model("YOLO_PRECISION", PrecisionSetting::Auto, &fp32, Provider::Cpu, VNNI).unwrap(),
            (fp32.clone(), Precision::Fp32)
        );
        let e = select_model("YOLO_PRECISION", PrecisionSetting::Int8, &fp32, Provider::Cpu, PLAIN).unwrap_err().to_string();
        assert!(e.contains("YOLO_PRECISION=int8") && e.contains("yolov8n.int8.onnx") && e.contains("scripts/quantize.py"), "{e}");
        let plate = dir.join("plate.onnx");
        let e = select_model("ANPR_PLATE_PRECISION", PrecisionSetting::Int8, &plate, Provider::Cpu, VNNI).unwrap_err().to_string();
        assert!(e.contains("ANPR_PLATE_PRECISION=int8") && e.contains("plate.int8.onnx"), "{e}");
        std::fs::write(dir.join("yolov8n.int8.onnx"), b"x").unwrap();
        assert_eq!(
            select_model("YOLO_PRECISION", PrecisionSetting::Auto, &fp32, Provider::Cpu, VNNI).unwrap(),
            (dir.join("yolov8n.int8.onnx"), Precision::Int8)
        );
        assert_eq!(
            select_model("YOLO_PRECISION", PrecisionSetting::Auto, &fp32, Provider::Cpu, PLAIN).unwrap(),
            (fp32.clone(), Precision::Fp32)
        );
        assert_eq!(
            select_model("YOLO_PRECISION", PrecisionSetting::Fp32, &fp32, Provider::Cpu, VNNI).unwrap(),
            (fp32.clone(), Precision::Fp32)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
