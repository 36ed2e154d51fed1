use latte_video::{SpatialTransform, WindowRule};

/// The dataset layouts the toolkit reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    /// Generated bouncing shapes (H.264 mp4), labelled by motion class.
    Synthetic,
    /// FaceForensics: a directory of video files, walked recursively; every file is a video.
    FaceForensics,
    /// UCF101: `UCF-101/<Class>/*.avi`, label = index of the class in the sorted folder names.
    Ucf101,
    /// SkyTimelapse: nested frame folders; a folder with more than 48 frames is a video.
    SkyTimelapse,
    /// Taichi-HD: frame folders (every non-empty one) or mp4 files, already 256×256.
    TaichiHd,
    /// Any folder of video files (recursive), unlabelled.
    Videos,
    /// Any folder of frame folders (recursive), unlabelled.
    Frames,
}

impl DatasetKind {
    pub const NAMES: [&'static str; 7] = ["synthetic", "ffs", "ucf101", "sky", "taichi", "videos", "frames"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "synthetic" => Self::Synthetic,
            "ffs" | "faceforensics" => Self::FaceForensics,
            "ucf101" => Self::Ucf101,
            "sky" | "skytimelapse" => Self::SkyTimelapse,
            "taichi" => Self::TaichiHd,
            "videos" => Self::Videos,
            "frames" => Self::Frames,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Synthetic => "synthetic",
            Self::FaceForensics => "ffs",
            Self::Ucf101 => "ucf101",
            Self::SkyTimelapse => "sky",
            Self::TaichiHd => "taichi",
            Self::Videos => "videos",
            Self::Frames => "frames",
        }
    }

    /// The reference's temporal rule: linspace for decoded video files, exact stride for the
    /// frame-folder datasets (Taichi keeps its rule when given as mp4).
    pub fn window_rule(self) -> WindowRule {
        match self {
            Self::SkyTimelapse | Self::TaichiHd | Self::Frames => WindowRule::Stride,
            _ => WindowRule::Linspace,
        }
    }

    /// The reference's spatial transform at output size `size`.
    pub fn transform(self, size: usize) -> SpatialTransform {
        match self {
            Self::SkyTimelapse => SpatialTransform::CropThenResize(size),
            // Taichi is 256×256 already; at another size it is resized like Sky (a square).
            Self::TaichiHd => SpatialTransform::CropThenResize(size),
            _ => SpatialTransform::ResizeThenCrop(size),
        }
    }

    /// Whether training flips clips horizontally (SkyTimelapse does not).
    pub fn flips(self) -> bool {
        !matches!(self, Self::SkyTimelapse)
    }
}
