//! The reference's temporal sampling (`TemporalRandomCrop` + `np.linspace`, spec §4.2): which
//! frames of a video make one training clip.

use rand::Rng;

/// The rule is the one the frames store records, so the two never need converting.
pub use latte_store::WindowRule;

/// Clip length and frame interval (16 and 3 in every reference config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub num_frames: usize,
    pub interval: usize,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self { num_frames: 16, interval: 3 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("a video of {total} frames is too short for a clip of {need} frames (the reference asserts end - begin >= num_frames)")]
    TooShort { total: usize, need: usize },
    #[error("window start {begin} is past the last start {max_begin} for a video of {total} frames")]
    BadBegin { begin: usize, max_begin: usize, total: usize },
    #[error("num_frames and interval must be at least 1 (got {num_frames} and {interval})")]
    BadSpec { num_frames: usize, interval: usize },
}

impl WindowSpec {
    /// Frames a full window covers: `num_frames * interval` (48).
    pub fn span(&self) -> usize {
        self.num_frames * self.interval
    }

    /// The largest window start: `max(0, total - span - 1)` as the reference (which never
    /// lets a window touch the last frame of a long video).
    pub fn max_begin(&self, total: usize) -> usize {
        total.saturating_sub(self.span() + 1)
    }

    fn check(&self, total: usize) -> Result<(), WindowError> {
        if self.num_frames == 0 || self.interval == 0 {
            return Err(WindowError::BadSpec { num_frames: self.num_frames, interval: self.interval });
        }
        if total < self.num_frames {
            return Err(WindowError::TooShort { total, need: self.num_frames });
        }
        Ok(())
    }

    /// Indices of the clip whose window starts at `begin`. `Linspace` always gives
    /// `num_frames` indices; `Stride` gives fewer when the video is shorter than
    /// `(num_frames - 1) * interval + 1` frames, as the reference's slice does.
    pub fn indices(&self, total: usize, begin: usize, rule: WindowRule) -> Result<Vec<usize>, WindowError> {
        self.check(total)?;
        let max_begin = self.max_begin(total);
        if begin > max_begin {
            return Err(WindowError::BadBegin { begin, max_begin, total });
        }
        let end = (begin + self.span()).min(total);
        let lin = linspace_trunc(begin, end - 1, self.num_frames);
        Ok(match rule {
            WindowRule::Linspace => lin,
            WindowRule::Stride => (lin[0]..=lin[lin.len() - 1]).step_by(self.interval).collect(),
        })
    }

    /// A random clip: the start is uniform in `0..=max_begin` (Python's `randint`).
    pub fn sample<R: Rng + ?Sized>(&self, total: usize, rule: WindowRule, rng: &mut R) -> Result<Vec<usize>, WindowError> {
        self.check(total)?;
        let begin = rng.random_range(0..=self.max_begin(total));
        self.indices(total, begin, rule)
    }

    /// Whether a video of `total` frames yields a full clip of `num_frames` under `rule`.
    pub fn long_enough(&self, total: usize, rule: WindowRule) -> bool {
        self.indices(total, 0, rule).is_ok_and(|v| v.len() == self.num_frames)
    }
}

/// The reference's flip decision, `random.random() < 0.5`.
pub fn sample_flip<R: Rng + ?Sized>(rng: &mut R) -> bool {
    rng.random::<f64>() < 0.5
}

/// `np.linspace(start, stop, num, dtype=int)`: the float64 steps numpy computes
/// (`arange * (delta / (num - 1)) + start`, last element set to `stop`), truncated.
pub fn linspace_trunc(start: usize, stop: usize, num: usize) -> Vec<usize> {
    if num == 1 {
        return vec![start];
    }
    let delta = stop as f64 - start as f64;
    let step = delta / (num - 1) as f64;
    let mut v: Vec<usize> = (0..num)
        .map(|i| {
            let y = if step == 0.0 { i as f64 / (num - 1) as f64 * delta } else { i as f64 * step };
            (y + start as f64) as usize
        })
        .collect();
    v[num - 1] = stop;
    v
}
