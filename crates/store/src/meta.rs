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

/// What a latents store records beside its frames store's attributes: the latents stage writes
/// them and the train stage reads them, through this one type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentsAttrs {
    /// Factor a posterior sample is multiplied by before diffusion (SD's VAE: 0.18215).
    pub scale_factor: f64,
    /// SHA-256 of the VAE weights that encoded the frames.
    pub vae_digest: String,
    /// Element type of `mean`/`logvar`: `float32` or `float16`.
    pub dtype: String,
    /// `[channels, height, width]` of one latent frame.
    pub latent_shape: [u64; 3],
    /// Pixels per latent cell along each side.
    pub downsample_factor: usize,
}

impl LatentsAttrs {
    /// Adds the attributes to a store's `extra` map, after what it holds, in field order.
    pub fn insert_into(&self, extra: &mut serde_json::Map<String, serde_json::Value>) {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self) {
            extra.extend(fields);
        }
    }

    /// The attributes of a latents store; the error names the attribute that is missing or
    /// malformed (a frames store, or one written by another tool, has none).
    pub fn from_meta(meta: &RaggedMeta) -> Result<LatentsAttrs, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(meta.extra.clone()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latents_attributes_round_trip_in_field_order_and_name_what_is_missing() {
        let mut meta = RaggedMeta {
            offsets: vec![0],
            counts: vec![1],
            ids: vec!["a".into()],
            labels: vec![None],
            num_classes: None,
            dataset: "synthetic".into(),
            window: WindowRule::Linspace,
            flip: true,
            extra: serde_json::Map::new(),
        };
        meta.extra.insert("size".into(), 64.into());
        let err = LatentsAttrs::from_meta(&meta).unwrap_err();
        assert!(err.to_string().contains("scale_factor"), "{err}");

        let attrs = LatentsAttrs {
            scale_factor: 0.485,
            vae_digest: "ab12".into(),
            dtype: "float16".into(),
            latent_shape: [4, 8, 8],
            downsample_factor: 8,
        };
        attrs.insert_into(&mut meta.extra);
        let keys: Vec<&str> = meta.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["size", "scale_factor", "vae_digest", "dtype", "latent_shape", "downsample_factor"]);
        assert_eq!(LatentsAttrs::from_meta(&meta).unwrap(), attrs);
    }
}
