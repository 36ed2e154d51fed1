use serde::{Deserialize, Serialize};

/// How the frame indices inside a training window are laid out (spec §4.2). The frames stage
/// records the dataset's rule so that readers apply the rule of the source; `latte-video`'s
/// `WindowSpec` computes the indices. Stored as `"linspace"` / `"stride"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowRule {
    /// Video files (FaceForensics, UCF101): `np.linspace(begin, end - 1, num_frames, dtype=int)`,
    /// i.e. offsets 0,3,…,21,25,…,47 for a full 48-frame window (not a uniform stride).
    Linspace,
    /// Frame folders (Sky, Taichi): the linspace indices' span sliced with an exact stride,
    /// `frames[idx[0] : idx[-1] + 1 : interval]`, offsets 0,3,…,45.
    Stride,
}

/// What the caller knows about the dataset as a whole, given when the store is finished.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupInfo {
    pub dataset: String,
    pub num_classes: Option<u32>,
    pub window: WindowRule,
    pub flip: bool,
    /// Free-form attributes stored beside the fixed ones (e.g. `scale_factor`, `vae_digest`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The group attributes of a ragged store: video `i` occupies frames
/// `offsets[i] .. offsets[i] + counts[i]` of every array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaggedMeta {
    pub offsets: Vec<u64>,
    pub counts: Vec<u64>,
    pub ids: Vec<String>,
    /// `None` for unlabelled datasets (stored as JSON null).
    pub labels: Vec<Option<u32>>,
    pub num_classes: Option<u32>,
    pub dataset: String,
    pub window: WindowRule,
    pub flip: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl RaggedMeta {
    pub fn num_videos(&self) -> usize {
        self.ids.len()
    }

    pub fn total_frames(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The frame range of video `i` along the frames axis.
    pub fn range(&self, i: usize) -> Option<std::ops::Range<u64>> {
        Some(self.offsets.get(i).copied()?..self.offsets[i] + *self.counts.get(i)?)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.ids.len();
        if self.offsets.len() != n || self.counts.len() != n || self.labels.len() != n {
            return Err(format!(
                "attribute lengths disagree: {} ids, {} offsets, {} counts, {} labels",
                n,
                self.offsets.len(),
                self.counts.len(),
                self.labels.len()
            ));
        }
        let mut next = 0;
        for (i, (&o, &c)) in self.offsets.iter().zip(&self.counts).enumerate() {
            if o != next {
                return Err(format!("video {i} (`{}`) starts at frame {o}, expected {next}", self.ids[i]));
            }
            next = o + c;
        }
        if let Some(k) = self.num_classes {
            if let Some((i, l)) = self.labels.iter().enumerate().find_map(|(i, l)| l.filter(|&l| l >= k).map(|l| (i, l))) {
                return Err(format!("video {i} has label {l} but num_classes is {k}"));
            }
        }
        Ok(())
    }
}
