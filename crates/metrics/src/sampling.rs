//! Which frames of which videos a metric sees, as Latte's copy of StyleGAN-V's evaluation
//! picks them, with every random draw seeded here (Latte's are unseeded).

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One clip: `frames` frame indices within video `video` (0-based, relative to its start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clip {
    pub video: usize,
    pub frames: Vec<u64>,
}

/// Real clips for FVD: `num_frames` frames at stride `stride` from a uniformly random start,
/// one clip per video, from `num_clips` videos drawn without replacement among those with at
/// least `num_frames·stride` frames (shorter videos are discarded, as StyleGAN-V's
/// `discard_short_videos`). With fewer eligible videos, every eligible video is used once.
/// Returns the clips (in drawn order) and the number of eligible videos.
pub fn real_clips(
    counts: &[u64],
    num_clips: usize,
    num_frames: usize,
    stride: usize,
    seed: u64,
) -> (Vec<Clip>, usize) {
    let need = (num_frames * stride) as u64;
    let eligible: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] >= need).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let chosen: Vec<usize> = if eligible.len() <= num_clips {
        eligible.clone()
    } else {
        sample(&mut rng, eligible.len(), num_clips)
            .into_iter()
            .map(|k| eligible[k])
            .collect()
    };
    let clips = chosen
        .into_iter()
        .map(|video| {
            // StyleGAN-V: random.randint(0, n - num_frames*s + s - 1), inclusive.
            let max_start = counts[video] - need + stride as u64 - 1;
            let start = rng.random_range(0..=max_start);
            Clip {
                video,
                frames: (0..num_frames as u64)
                    .map(|k| start + k * stride as u64)
                    .collect(),
            }
        })
        .collect();
    (clips, eligible.len())
}

/// Generated clips for FVD: the first `num_frames` frames (stride `stride`) of the first
/// `num_clips` videos long enough for them.
pub fn fake_clips(counts: &[u64], num_clips: usize, num_frames: usize, stride: usize) -> Vec<Clip> {
    let need = ((num_frames - 1) * stride + 1) as u64;
    (0..counts.len())
        .filter(|&i| counts[i] >= need)
        .take(num_clips)
        .map(|video| Clip {
            video,
            frames: (0..num_frames as u64).map(|k| k * stride as u64).collect(),
        })
        .collect()
}

/// `n` distinct frame indices out of `total`, drawn at random (seeded), in increasing order.
pub fn random_frames(total: usize, n: usize, seed: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_F1D0);
    let mut idx: Vec<u64> = sample(&mut rng, total, n.min(total))
        .into_iter()
        .map(|i| i as u64)
        .collect();
    idx.sort_unstable();
    idx
}
