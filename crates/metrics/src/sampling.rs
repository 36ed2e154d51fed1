//! Which frames of which videos a metric sees, as Latte's copy of StyleGAN-V's evaluation
//! picks them, with every random draw seeded here (Latte's are unseeded).

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One clip: `frames` frame indices within video `video` (0-based, relative to its start),
/// flipped left-right when `mirror` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clip {
    pub video: usize,
    pub frames: Vec<u64>,
    pub mirror: bool,
}

/// How the real clips of FVD are drawn: the choices StyleGAN-V's `fvd2048_16f` makes (Latte
/// changes the stride to the training `frame_interval`), each one explicit and the draw seeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealDraw {
    /// Clips drawn, one per video (StyleGAN-V/Latte: 2048).
    pub num_clips: usize,
    /// Frames per clip (16).
    pub num_frames: usize,
    /// Frame stride within a clip (Latte: 3 = the training `frame_interval`; 6 for Taichi).
    pub stride: usize,
    /// Whether each clip is flipped left-right with probability ½, as drawing from StyleGAN-V's
    /// x-flipped (doubled) dataset does.
    pub mirror: bool,
    /// Seed of every choice (videos, start offsets, flips); Latte's draw is unseeded.
    pub seed: u64,
}

impl RealDraw {
    /// Frames a video needs to hold one clip.
    pub fn min_frames(&self) -> u64 {
        (self.num_frames * self.stride) as u64
    }
}

/// Real clips for FVD: `num_frames` frames at stride `stride` from a uniformly random start,
/// one clip per video, from `num_clips` videos drawn without replacement among those with at
/// least `num_frames·stride` frames (shorter videos are discarded, as StyleGAN-V's
/// `discard_short_videos`). With fewer eligible videos, every eligible video is used once.
/// Returns the clips (in drawn order) and the number of eligible videos.
pub fn real_clips(counts: &[u64], draw: &RealDraw) -> (Vec<Clip>, usize) {
    let eligible: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] >= draw.min_frames()).collect();
    let rng = latte_seed::stream(draw.seed, 0);
    let n = eligible.len();
    (clips_from(counts, eligible, draw, rng), n)
}

/// Real clips from the videos that [`real_clips`] did not choose (`reference`), drawn the same
/// way from another stream of the same seed: FVD between these and the reference is the
/// sampling floor, what a perfect generator would score with this many clips. Fewer than
/// `num_clips` when too few videos are left.
pub fn held_out_clips(counts: &[u64], draw: &RealDraw, reference: &[Clip]) -> Vec<Clip> {
    let eligible: Vec<usize> =
        (0..counts.len()).filter(|&i| counts[i] >= draw.min_frames() && !reference.iter().any(|c| c.video == i)).collect();
    let rng = latte_seed::stream(draw.seed, 1);
    clips_from(counts, eligible, draw, rng)
}

fn clips_from(counts: &[u64], eligible: Vec<usize>, draw: &RealDraw, mut rng: ChaCha8Rng) -> Vec<Clip> {
    let (need, stride) = (draw.min_frames(), draw.stride as u64);
    let chosen: Vec<usize> = if eligible.len() <= draw.num_clips {
        eligible
    } else {
        sample(&mut rng, eligible.len(), draw.num_clips).into_iter().map(|k| eligible[k]).collect()
    };
    chosen
        .into_iter()
        .map(|video| {
            // StyleGAN-V: random.randint(0, n - num_frames*s + s - 1), inclusive.
            let max_start = counts[video] - need + stride - 1;
            let start = rng.random_range(0..=max_start);
            // Drawn only when asked for, so that unmirrored draws stay what they were.
            let mirror = draw.mirror && rng.random_bool(0.5);
            Clip { video, frames: (0..draw.num_frames as u64).map(|k| start + k * stride).collect(), mirror }
        })
        .collect()
}

/// Generated clips for FVD: the first `num_frames` frames (stride `stride`) of the first
/// `num_clips` videos long enough for them.
pub fn fake_clips(counts: &[u64], num_clips: usize, num_frames: usize, stride: usize) -> Vec<Clip> {
    let need = ((num_frames - 1) * stride + 1) as u64;
    (0..counts.len())
        .filter(|&i| counts[i] >= need)
        .take(num_clips)
        .map(|video| Clip { video, frames: (0..num_frames as u64).map(|k| k * stride as u64).collect(), mirror: false })
        .collect()
}

/// `n` distinct frame indices out of `total`, drawn at random (seeded), in increasing order.
pub fn random_frames(total: usize, n: usize, seed: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_F1D0);
    let mut idx: Vec<u64> = sample(&mut rng, total, n.min(total)).into_iter().map(|i| i as u64).collect();
    idx.sort_unstable();
    idx
}
