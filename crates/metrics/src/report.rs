//! `metrics.json`: one entry per metric (its report, or why there is none) and what was scored.

use std::path::PathBuf;

use burn::tensor::Device;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::evaluate::{FidReport, FvdReport, IsReport, VideoSet, WeightsRef};
use crate::network::{Net, Network};
use crate::weights;
use crate::MetricsError;

/// One metric's entry.
#[derive(Clone, Debug)]
pub enum Entry<R> {
    /// Not asked for: `{"status": "disabled"}`.
    Disabled,
    /// Asked for, but the network's weights file is not there (it may be fetched later).
    MissingWeights(MissingWeights),
    /// The metric's report (`"status": "computed"`).
    Computed(R),
}

impl<R: Serialize> Serialize for Entry<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Entry::Disabled => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("status", "disabled")?;
                map.end()
            }
            Entry::MissingWeights(missing) => missing.serialize(serializer),
            Entry::Computed(report) => report.serialize(serializer),
        }
    }
}

/// The entry of a metric without weights: which setting names the file and how to get one.
#[derive(Clone, Debug, Serialize)]
pub struct MissingWeights {
    status: &'static str,
    /// Always null: a reader that looks only at `value` sees no number.
    value: Option<f64>,
    /// The setting that names the weights file.
    pub missing: String,
    /// For weights nobody can fetch (C3D's), the path that held no file (null when none was
    /// named); absent for fetchable weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looked_for: Option<Option<String>>,
    pub how_to_get: String,
}

/// The entry of the metric `compute` gives on `net` loaded from `named` (the value of the
/// setting `setting`), or, when no file is there, `MissingWeights` saying `how_to_get` one.
pub fn entry<R>(
    net: Net,
    setting: &str,
    named: Option<PathBuf>,
    how_to_get: impl FnOnce() -> String,
    device: &Device,
    compute: impl FnOnce(&Network, WeightsRef) -> Result<R, MetricsError>,
) -> Result<Entry<R>, MetricsError> {
    let Some(path) = named.clone().filter(|p| p.exists()) else {
        let fetchable = weights::spec(net.key()).is_some();
        return Ok(Entry::MissingWeights(MissingWeights {
            status: "missing_weights",
            value: None,
            missing: setting.to_owned(),
            looked_for: (!fetchable).then(|| named.map(|p| p.display().to_string())),
            how_to_get: how_to_get(),
        }));
    };
    let network = Network::load(net, &path, device).map_err(|source| MetricsError::Load {
        net,
        path: path.clone(),
        setting: setting.to_owned(),
        source: Box::new(source),
    })?;
    Ok(Entry::Computed(compute(&network, WeightsRef::of(&path)?)?))
}

/// What was scored: the real and the generated videos.
#[derive(Clone, Debug, Serialize)]
pub struct Inputs {
    pub real_dataset: String,
    pub real_videos: usize,
    pub real_frames: u64,
    pub real_frame_size: [usize; 2],
    pub generated_videos: usize,
    pub generated_frames: u64,
    pub generated_frame_size: [usize; 2],
}

impl Inputs {
    pub fn of(real_dataset: &str, real: &dyn VideoSet, generated: &dyn VideoSet) -> Self {
        let size = |set: &dyn VideoSet| [set.frame_size().0, set.frame_size().1];
        Inputs {
            real_dataset: real_dataset.to_owned(),
            real_videos: real.counts().len(),
            real_frames: real.counts().iter().sum(),
            real_frame_size: size(real),
            generated_videos: generated.counts().len(),
            generated_frames: generated.counts().iter().sum(),
            generated_frame_size: size(generated),
        }
    }
}

/// `metrics.json`.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsReport {
    pub fvd: Entry<FvdReport>,
    pub fid: Entry<FidReport>,
    pub is: Entry<IsReport>,
    pub inputs: Inputs,
}

impl MetricsReport {
    /// The file's text: pretty-printed, keys in field order, a final newline.
    pub fn to_json(&self) -> serde_json::Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_without_a_value_say_why_in_the_layout_of_metrics_json() {
        let disabled = serde_json::to_string(&Entry::<FidReport>::Disabled).unwrap();
        assert_eq!(disabled, r#"{"status":"disabled"}"#);
        let device = Device::flex();
        let never = |_: &Network, _: WeightsRef| -> Result<(), MetricsError> { unreachable!("no weights, nothing computed") };
        let absent = PathBuf::from("/nonexistent/i3d.safetensors");
        let fetchable = entry(Net::I3d, "i3d_weights", Some(absent.clone()), || "fetch it".into(), &device, never).unwrap();
        assert_eq!(
            serde_json::to_string(&fetchable).unwrap(),
            r#"{"status":"missing_weights","value":null,"missing":"i3d_weights","how_to_get":"fetch it"}"#
        );
        let user = entry(Net::C3d, "c3d_weights", Some(absent), || "find it".into(), &device, never).unwrap();
        assert_eq!(
            serde_json::to_string(&user).unwrap(),
            r#"{"status":"missing_weights","value":null,"missing":"c3d_weights","looked_for":"/nonexistent/i3d.safetensors","how_to_get":"find it"}"#
        );
        let unnamed = entry(Net::C3d, "c3d_weights", None, String::new, &device, never).unwrap();
        assert!(serde_json::to_string(&unnamed).unwrap().contains(r#""looked_for":null"#));
    }

    #[test]
    fn unloadable_weights_are_an_error_naming_the_file_and_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("i3d.safetensors");
        std::fs::write(&bad, b"not a weights file").unwrap();
        let never = |_: &Network, _: WeightsRef| -> Result<(), MetricsError> { unreachable!("the network did not load") };
        let e = entry(Net::I3d, "i3d_weights", Some(bad.clone()), String::new, &Device::flex(), never).unwrap_err();
        assert_eq!(e.to_string(), format!("loading I3D weights {} (parameter `i3d_weights`)", bad.display()));
        assert!(std::error::Error::source(&e).is_some());
    }
}
