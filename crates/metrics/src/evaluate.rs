//! One evaluation chain for FVD, FID and IS: which clips or frames ([`crate::sampling`]) →
//! their pixels (a [`VideoSet`]) → a [`Network`]'s features → statistics → the metric, with a
//! typed report of every setting that moves the value (serialised as `metrics.json` entries).

use std::path::Path;

use burn::tensor::Device;
use latte_nn::threads::{map_on_workers, workers};
use serde::Serialize;

use crate::frechet::{frechet_distance, Covariance, FeatureStats, Gaussian};
use crate::i3d;
use crate::inception;
use crate::inception_score::inception_score;
use crate::network::{Net, Network};
use crate::sampling::{fake_clips, held_out_clips, random_frames, real_clips, Clip, RealDraw};
use crate::weights::file_sha256;
use crate::MetricsError;

/// Videos of uint8 RGB frames, all of one size: the real set or the generated one.
pub trait VideoSet {
    /// Frames of each video.
    fn counts(&self) -> &[u64];
    /// `(height, width)` of every frame.
    fn frame_size(&self) -> (usize, usize);
    /// The frames `frames` (0-based within the video) of video `video`, `[len, H, W, 3]`.
    fn read(&self, video: usize, frames: &[u64]) -> Result<Vec<u8>, MetricsError>;
}

/// A ragged store of RGB videos (a `frames` or `sample` stage's output), read as it is.
impl VideoSet for latte_store::RgbVideos {
    fn counts(&self) -> &[u64] {
        &self.meta().counts
    }

    fn frame_size(&self) -> (usize, usize) {
        latte_store::RgbVideos::frame_size(self)
    }

    fn read(&self, video: usize, frames: &[u64]) -> Result<Vec<u8>, MetricsError> {
        latte_store::RgbVideos::read(self, video, frames).map_err(|e| MetricsError::Read {
            what: format!("reading video `{}` of {}", self.meta().ids[video], self.dir().display()),
            source: Box::new(e),
        })
    }
}

/// Where an evaluation reports progress, and how its caller stops it.
pub trait Monitor {
    /// Work of `total` inputs starts; `line` says what.
    fn begin(&self, _total: u64, _line: &str) {}
    /// A result worth a line of log.
    fn log(&self, _line: &str) {}
    /// One input is done; an error (e.g. [`MetricsError::Stopped`]) ends the evaluation.
    fn advance(&self) -> Result<(), MetricsError> {
        Ok(())
    }
}

/// A monitor that shows nothing and never stops.
pub struct Silent;

impl Monitor for Silent {}

/// A weights file as the reports name it.
#[derive(Clone, Debug, Serialize)]
pub struct WeightsRef {
    pub path: String,
    pub sha256: String,
}

impl WeightsRef {
    pub fn of(path: &Path) -> Result<WeightsRef, MetricsError> {
        Ok(WeightsRef { path: path.display().to_string(), sha256: file_sha256(path)? })
    }
}

/// A clip's pixels, mirrored left-right when the clip says so.
pub fn read_clip(set: &dyn VideoSet, clip: &Clip) -> Result<Vec<u8>, MetricsError> {
    let mut pixels = set.read(clip.video, &clip.frames)?;
    if clip.mirror {
        let row = set.frame_size().1 * 3;
        for line in pixels.chunks_exact_mut(row) {
            let mut px: Vec<[u8; 3]> = line.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
            px.reverse();
            line.copy_from_slice(px.as_flattened());
        }
    }
    Ok(pixels)
}

/// A clip (frames of `[H, W, 3]` uint8) with every pixel of every frame set to the clip's mean
/// colour, rounded: FVD's trivial baseline.
pub fn mean_colour_clip(pixels: &[u8]) -> Vec<u8> {
    let n = (pixels.len() / 3).max(1) as f64;
    let mut sum = [0f64; 3];
    for p in pixels.chunks_exact(3) {
        for k in 0..3 {
            sum[k] += p[k] as f64;
        }
    }
    let mean = sum.map(|s| (s / n).round().clamp(0.0, 255.0) as u8);
    pixels.chunks_exact(3).flat_map(|_| mean).collect()
}

fn expect(network: &Network, net: Net, metric: &str) -> Result<(), MetricsError> {
    if network.net() == net {
        Ok(())
    } else {
        Err(MetricsError::Input(format!("{metric} needs the {} network, got {}", net.name(), network.net().name())))
    }
}

/// Feature statistics of `inputs` (each `frames` frames, read by `read`) under `network`.
fn stats_of<T>(
    network: &Network,
    inputs: &[T],
    frames: usize,
    (h, w): (usize, usize),
    read: &dyn Fn(&T) -> Result<Vec<u8>, MetricsError>,
    device: &Device,
    monitor: &dyn Monitor,
) -> Result<FeatureStats, MetricsError> {
    let mut stats = FeatureStats::new(network.dim());
    // Inputs are read and embedded a round at a time, as many as there are workers, each on one
    // thread of its own ([`map_on_workers`]: the networks' ops keep two threads only partly
    // busy): only a round's pixels are held, and the rows, hence the statistics, are those of
    // one input at a time, bit for bit. Progress is reported, and a stop honoured, per input.
    for round in inputs.chunks(workers()) {
        let pixels = round.iter().map(read).collect::<Result<Vec<_>, _>>()?;
        for row in map_on_workers(&pixels, |p| network.embed(p, frames, h, w, device)) {
            stats.push_f32(&row?)?;
            monitor.advance()?;
        }
    }
    Ok(stats)
}

/// FVD's choices beyond the network.
#[derive(Clone, Copy, Debug)]
pub struct FvdSettings {
    /// The real clips: count (also the generated count), frames, stride, mirroring, seed.
    pub draw: RealDraw,
    /// Frame stride of the generated clips.
    pub fake_stride: usize,
    /// Also score held-out real clips (the floor) and per-clip mean colours (a trivial baseline).
    pub references: bool,
    pub covariance: Covariance,
}

/// A computed FVD, as `metrics.json`'s `fvd` entry.
#[derive(Clone, Debug, Serialize)]
pub struct FvdReport {
    pub status: &'static str,
    pub name: String,
    pub value: f64,
    pub num_real_clips: usize,
    pub num_generated_clips: usize,
    pub eligible_real_videos: usize,
    pub frames_per_clip: usize,
    pub real_stride: usize,
    pub generated_stride: usize,
    pub seed: u64,
    pub protocol: FvdProtocol,
    pub references: FvdReferences,
    pub real_selection: &'static str,
    pub generated_selection: &'static str,
    pub resize: String,
    pub feature: &'static str,
    pub covariance: &'static str,
    pub weights: WeightsRef,
}

/// How the real clips were chosen, each of the paper's choices named.
#[derive(Clone, Debug, Serialize)]
pub struct FvdProtocol {
    pub base: &'static str,
    pub real_split: &'static str,
    pub real_stride: usize,
    pub real_mirror: bool,
    pub num_clips: usize,
    pub frames_per_clip: usize,
    pub real_selection: String,
    pub latte_difference: &'static str,
}

/// The reference points that give an FVD meaning, or `{"status": "disabled"}`.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum FvdReferences {
    Disabled { status: &'static str },
    Computed { real_floor: RealFloor, mean_colour_baseline: Baseline },
}

/// FVD of held-out real clips against the reference ones; `value` is null (and `why` says
/// why) when too few videos are left over.
#[derive(Clone, Debug, Serialize)]
pub struct RealFloor {
    pub value: Option<f64>,
    pub num_clips: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// FVD of per-clip mean colours against the reference clips.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    pub value: f64,
    pub num_clips: usize,
    pub what: String,
}

/// FVD between the generated clips of `fake` and real clips of `real` (I3D `network`).
pub fn fvd(
    network: &Network,
    weights: WeightsRef,
    real: &dyn VideoSet,
    fake: &dyn VideoSet,
    s: &FvdSettings,
    device: &Device,
    monitor: &dyn Monitor,
) -> Result<FvdReport, MetricsError> {
    expect(network, Net::I3d, "FVD")?;
    let (n, f, rs, fs, cov, seed, mirror) =
        (s.draw.num_clips, s.draw.num_frames, s.draw.stride, s.fake_stride, s.covariance, s.draw.seed, s.draw.mirror);
    let (rclips, eligible) = real_clips(real.counts(), &s.draw);
    let fclips = fake_clips(fake.counts(), n, f, fs);
    if rclips.len() < 2 || fclips.len() < 2 {
        return Err(MetricsError::Input(format!(
            "FVD needs at least 2 clips per side: {} real videos have >= {} frames, {} generated videos have >= {} frames",
            rclips.len(),
            f * rs,
            fclips.len(),
            (f - 1) * fs + 1
        )));
    }
    let held = if s.references { held_out_clips(real.counts(), &s.draw, &rclips) } else { Vec::new() };
    // The trivial baseline needs clips to take colours from: held-out ones when there are
    // enough, else the reference clips themselves (which flatters it slightly).
    let baseline_from = if held.len() >= 2 { &held } else { &rclips };
    let extra = if s.references { held.len() + baseline_from.len() } else { 0 };
    monitor.begin(
        (rclips.len() + fclips.len() + extra) as u64,
        &format!("FVD: I3D on {} real and {} generated clips of {f} frames", rclips.len(), fclips.len()),
    );
    let gaussian =
        |set: &dyn VideoSet, clips: &[Clip], read: &dyn Fn(&Clip) -> Result<Vec<u8>, MetricsError>| -> Result<Gaussian, MetricsError> {
            stats_of(network, clips, f, set.frame_size(), read, device, monitor)?.gaussian(cov)
        };
    let read_real = |c: &Clip| read_clip(real, c);
    let real_gauss = gaussian(real, &rclips, &read_real)?;
    let value = frechet_distance(&gaussian(fake, &fclips, &|c| read_clip(fake, c))?, &real_gauss)?;
    monitor.log(&format!("FVD-{n} = {value:.4}"));
    let references = if !s.references {
        FvdReferences::Disabled { status: "disabled" }
    } else {
        let real_floor = if held.len() >= 2 {
            let v = frechet_distance(&gaussian(real, &held, &read_real)?, &real_gauss)?;
            monitor.log(&format!("FVD-{n} of held-out real clips (the floor) = {v:.4}"));
            RealFloor {
                value: Some(v),
                num_clips: held.len(),
                what: Some("real clips of other videos, drawn as the reference ones (seed stream 1), against the reference clips"),
                why: None,
            }
        } else {
            RealFloor {
                value: None,
                num_clips: held.len(),
                what: None,
                why: Some(format!(
                    "{eligible} eligible real videos leave fewer than 2 beside the {} reference ones; use more videos or fewer `num_clips`",
                    rclips.len()
                )),
            }
        };
        let read_mean = |c: &Clip| read_clip(real, c).map(|px| mean_colour_clip(&px));
        let baseline = frechet_distance(&gaussian(real, baseline_from, &read_mean)?, &real_gauss)?;
        monitor.log(&format!("FVD-{n} of per-clip mean colours (trivial baseline) = {baseline:.4}"));
        FvdReferences::Computed {
            real_floor,
            mean_colour_baseline: Baseline {
                value: baseline,
                num_clips: baseline_from.len(),
                what: format!(
                    "each {} clip replaced by its mean RGB in every pixel and frame",
                    if held.len() >= 2 { "held-out real" } else { "reference real" }
                ),
            },
        }
    };
    Ok(FvdReport {
        status: "computed",
        name: format!("FVD-{n}"),
        value,
        num_real_clips: rclips.len(),
        num_generated_clips: fclips.len(),
        eligible_real_videos: eligible,
        frames_per_clip: f,
        real_stride: rs,
        generated_stride: fs,
        seed,
        protocol: FvdProtocol {
            base: "StyleGAN-V fvd2048_16f as Latte modifies it",
            real_split: "every video of the `frames` input (the training split, as Latte)",
            real_stride: rs,
            real_mirror: mirror,
            num_clips: n,
            frames_per_clip: f,
            real_selection: format!(
                "videos drawn without replacement (ChaCha8, seed {seed}), one clip each from a uniformly random start{}",
                if mirror { ", flipped left-right with probability 1/2" } else { "" }
            ),
            latte_difference:
                "Latte draws the real clips unseeded; here a rerun with the same seed gives the same clips and the same number",
        },
        references,
        real_selection: "videos drawn without replacement (ChaCha8, seed), one clip each from a uniformly random start",
        generated_selection: "first num_clips samples, frames from the first",
        resize: format!("bilinear (half-pixel, no antialias) to {0}x{0}, after x/255*2-1", i3d::INPUT_SIZE),
        feature: "I3D Kinetics-400 pre-softmax logits averaged over time (400-d)",
        covariance: cov.name(),
        weights,
    })
}

/// FID's choices beyond the network.
#[derive(Clone, Copy, Debug)]
pub struct FidSettings {
    /// Real frames, drawn at random (seeded); 0 = every frame.
    pub num_real: usize,
    /// Generated frames, the first ones in order.
    pub num_fake: usize,
    pub seed: u64,
    pub covariance: Covariance,
}

/// A computed FID, as `metrics.json`'s `fid` entry.
#[derive(Clone, Debug, Serialize)]
pub struct FidReport {
    pub status: &'static str,
    pub name: String,
    pub value: f64,
    pub num_real_frames: usize,
    pub num_generated_frames: usize,
    pub real_selection: String,
    pub generated_selection: &'static str,
    pub seed: u64,
    pub resize: String,
    pub feature: &'static str,
    pub covariance: &'static str,
    pub weights: WeightsRef,
}

/// The (video, frame) of each index into a set's frames concatenated in video order.
fn locate(counts: &[u64], global: &[u64]) -> Vec<(usize, u64)> {
    let mut starts = Vec::with_capacity(counts.len());
    let mut acc = 0u64;
    for &c in counts {
        starts.push(acc);
        acc += c;
    }
    global
        .iter()
        .map(|&g| {
            let v = starts.partition_point(|&s| s <= g) - 1;
            (v, g - starts[v])
        })
        .collect()
}

/// FID between generated frames of `fake` and real frames of `real` (InceptionV3 `network`).
pub fn fid(
    network: &Network,
    weights: WeightsRef,
    real: &dyn VideoSet,
    fake: &dyn VideoSet,
    s: &FidSettings,
    device: &Device,
    monitor: &dyn Monitor,
) -> Result<FidReport, MetricsError> {
    expect(network, Net::Inception, "FID")?;
    let total_real = real.counts().iter().sum::<u64>() as usize;
    let total_fake = fake.counts().iter().sum::<u64>() as usize;
    let real_idx: Vec<u64> = if s.num_real == 0 || s.num_real >= total_real {
        (0..total_real as u64).collect()
    } else {
        random_frames(total_real, s.num_real, s.seed)
    };
    let fake_idx: Vec<u64> = (0..total_fake.min(s.num_fake) as u64).collect();
    if real_idx.len() < 2 || fake_idx.len() < 2 {
        return Err(MetricsError::Input(format!(
            "FID needs at least 2 frames per side: {} real, {} generated",
            real_idx.len(),
            fake_idx.len()
        )));
    }
    monitor.begin(
        (real_idx.len() + fake_idx.len()) as u64,
        &format!("FID: InceptionV3 on {} real and {} generated frames", real_idx.len(), fake_idx.len()),
    );
    let stats = |set: &dyn VideoSet, idx: &[u64]| -> Result<FeatureStats, MetricsError> {
        let frames = locate(set.counts(), idx);
        stats_of(network, &frames, 1, set.frame_size(), &|&(v, f)| set.read(v, &[f]), device, monitor)
    };
    let real_stats = stats(real, &real_idx)?;
    let fake_stats = stats(fake, &fake_idx)?;
    let value = frechet_distance(&fake_stats.gaussian(s.covariance)?, &real_stats.gaussian(s.covariance)?)?;
    monitor.log(&format!("FID-{} = {value:.4}", fake_idx.len()));
    Ok(FidReport {
        status: "computed",
        name: format!("FID-{}", fake_idx.len()),
        value,
        num_real_frames: real_idx.len(),
        num_generated_frames: fake_idx.len(),
        real_selection: if real_idx.len() == total_real {
            "every frame".to_string()
        } else {
            format!("frames drawn without replacement (ChaCha8, seed {})", s.seed)
        },
        generated_selection: "first frames in store order",
        seed: s.seed,
        resize: format!("TF-legacy bilinear (nv_bilinear, float) to {0}x{0}, then (x/255)*1.9921875-1", inception::INPUT_SIZE),
        feature: "InceptionV3 pool3 (2048-d), NVIDIA/TF inception-2015-12-05 layout",
        covariance: s.covariance.name(),
        weights,
    })
}

/// A computed video Inception Score, as `metrics.json`'s `is` entry. A non-finite score (a
/// probability of exactly 0, as in the reference) is reported as null.
#[derive(Clone, Debug, Serialize)]
pub struct IsReport {
    pub status: &'static str,
    pub name: String,
    pub value: Option<f64>,
    pub std: Option<f64>,
    pub finite: bool,
    pub num_generated_clips: usize,
    pub frames_per_clip: usize,
    pub stride: usize,
    pub splits: usize,
    pub shuffle: String,
    pub epsilon: &'static str,
    pub generated_selection: &'static str,
    pub resize: String,
    pub feature: &'static str,
    pub weights: WeightsRef,
}

/// StyleGAN-V's `isv2048_ucf` on the generated videos: C3D class probabilities of the first
/// 16 frames of the first `num_clips` videos long enough, shuffled with `RandomState(42)`, IS
/// per split, mean and population std.
pub fn video_inception_score(
    network: &Network,
    weights: WeightsRef,
    fake: &dyn VideoSet,
    num_clips: usize,
    splits: usize,
    device: &Device,
    monitor: &dyn Monitor,
) -> Result<IsReport, MetricsError> {
    const SHUFFLE_SEED: u32 = 42;
    expect(network, Net::C3d, "IS")?;
    let Network::C3d(model) = network else { unreachable!("checked above") };
    let cfg = model.config();
    let clips = fake_clips(fake.counts(), num_clips, cfg.frames, 1);
    if clips.len() < splits {
        return Err(MetricsError::Input(format!(
            "IS needs at least `is_splits` = {splits} generated videos of >= {} frames; the generated set has {}",
            cfg.frames,
            clips.len()
        )));
    }
    monitor.begin(clips.len() as u64, &format!("IS: C3D on {} generated clips of {} frames", clips.len(), cfg.frames));
    let (h, w) = fake.frame_size();
    let mut probs = Vec::with_capacity(clips.len() * cfg.classes);
    for clip in &clips {
        probs.extend(network.embed(&read_clip(fake, clip)?, cfg.frames, h, w, device)?);
        monitor.advance()?;
    }
    let (mean, std) = inception_score(&probs, clips.len(), cfg.classes, splits, SHUFFLE_SEED);
    monitor.log(&format!("IS-{} = {mean:.4} ± {std:.4}", clips.len()));
    Ok(IsReport {
        status: "computed",
        name: format!("IS-{}", clips.len()),
        value: mean.is_finite().then_some(mean),
        std: std.is_finite().then_some(std),
        finite: mean.is_finite(),
        num_generated_clips: clips.len(),
        frames_per_clip: cfg.frames,
        stride: 1,
        splits,
        shuffle: format!(
            "numpy RandomState({SHUFFLE_SEED}).shuffle of the probability rows, then contiguous parts [i*N/splits, (i+1)*N/splits)"
        ),
        epsilon: "none (a probability of exactly 0 gives NaN, as in StyleGAN-V; reported as null)",
        generated_selection: "first is_num_clips samples with >= 16 frames, their first 16 frames",
        resize: format!("x/255*2-1, then bilinear (align corners, Chainer resize_images) to {0}x{0}", cfg.size),
        feature: "C3D-UCF101 (TGAN2 C3DVersion1UCF101) softmax over 101 classes",
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_frame_indices_map_to_their_video() {
        assert_eq!(locate(&[3, 0, 2, 4], &[0, 2, 3, 4, 5, 8]), vec![(0, 0), (0, 2), (2, 0), (2, 1), (3, 0), (3, 3)]);
    }

    #[test]
    fn the_mean_colour_clip_is_flat_and_rounded() {
        let clip = [0u8, 10, 255, 1, 11, 254, 2, 13, 255];
        assert_eq!(mean_colour_clip(&clip), vec![1, 11, 255, 1, 11, 255, 1, 11, 255]);
    }
}
