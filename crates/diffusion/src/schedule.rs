//! The noise schedule and its float64 tables, and uniform timestep respacing.
//!
//! Ported from IDDPM/DiT `gaussian_diffusion.py` (`get_named_beta_schedule`,
//! `GaussianDiffusion.__init__`) and `respace.py` (`space_timesteps`, `SpacedDiffusion`) as Latte
//! ships them. Every table is computed in float64 with numpy's operation order so that the
//! float32 values the steps extract are the reference's to the last bit.

use std::collections::BTreeSet;

use crate::DiffusionError;

/// `np.linspace(1e-4 * s, 0.02 * s, n)` with `s = 1000 / n` ("linear" in IDDPM).
pub fn linear_betas(num_timesteps: usize) -> Vec<f64> {
    let scale = 1000.0 / num_timesteps as f64;
    linspace(scale * 0.0001, scale * 0.02, num_timesteps)
}

/// numpy's `linspace` (endpoint=True): `i * step + start`, the last entry set to `stop` exactly.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    y[num - 1] = stop;
    y
}

/// The float64 tables of one Gaussian diffusion process (1000-step or respaced).
#[derive(Clone, Debug)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    /// `ᾱ_{t-1}` with `ᾱ_{-1} = 1`.
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// `log β̃_t` with entry 0 replaced by entry 1 (β̃_0 = 0).
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
    /// `log β_t`: the upper end of the learned-range interpolation.
    pub log_betas: Vec<f64>,
    /// Index of this process's step k in the original 1000-step process (identity when not
    /// respaced); the network is always called with the original timestep.
    pub timestep_map: Vec<usize>,
}

impl Schedule {
    /// Builds all tables from `betas` (each in (0, 1]); `timestep_map` has one entry per beta.
    pub fn from_betas(betas: Vec<f64>, timestep_map: Vec<usize>) -> Result<Self, DiffusionError> {
        let n = betas.len();
        if n < 2 {
            return Err(DiffusionError::BadSchedule(format!("need at least 2 steps, got {n}")));
        }
        if timestep_map.len() != n {
            return Err(DiffusionError::BadSchedule(format!("timestep map has {} entries for {n} betas", timestep_map.len())));
        }
        if let Some((i, b)) = betas.iter().enumerate().find(|(_, &b)| !(b > 0.0 && b <= 1.0)) {
            return Err(DiffusionError::BadSchedule(format!("beta[{i}] = {b} is outside (0, 1]")));
        }
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        // numpy's cumprod accumulates left to right.
        let alphas_cumprod: Vec<f64> = alphas
            .iter()
            .scan(1.0f64, |acc, a| {
                *acc *= a;
                Some(*acc)
            })
            .collect();
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0).chain(alphas_cumprod[..n - 1].iter().copied()).collect();
        let map = |f: &dyn Fn(usize) -> f64| (0..n).map(f).collect::<Vec<f64>>();
        let ac = &alphas_cumprod;
        let acp = &alphas_cumprod_prev;
        let posterior_variance = map(&|i| betas[i] * (1.0 - acp[i]) / (1.0 - ac[i]));
        let posterior_log_variance_clipped = map(&|i| posterior_variance[if i == 0 { 1 } else { i }].ln());
        Ok(Schedule {
            sqrt_alphas_cumprod: map(&|i| ac[i].sqrt()),
            sqrt_one_minus_alphas_cumprod: map(&|i| (1.0 - ac[i]).sqrt()),
            sqrt_recip_alphas_cumprod: map(&|i| (1.0 / ac[i]).sqrt()),
            sqrt_recipm1_alphas_cumprod: map(&|i| (1.0 / ac[i] - 1.0).sqrt()),
            posterior_log_variance_clipped,
            posterior_mean_coef1: map(&|i| betas[i] * acp[i].sqrt() / (1.0 - ac[i])),
            posterior_mean_coef2: map(&|i| (1.0 - acp[i]) * alphas[i].sqrt() / (1.0 - ac[i])),
            log_betas: map(&|i| betas[i].ln()),
            timestep_map,
            alphas_cumprod_prev,
            alphas_cumprod,
            betas,
        })
    }

    /// The linear schedule Latte uses (`create_diffusion("")`: 1000 steps).
    pub fn linear(num_timesteps: usize) -> Result<Self, DiffusionError> {
        Self::from_betas(linear_betas(num_timesteps), (0..num_timesteps).collect())
    }

    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// `SpacedDiffusion`: keep the timesteps in `use_timesteps` and rebuild the process from
    /// `β'_k = 1 − ᾱ_t / ᾱ_{previous kept}`, so that the kept `ᾱ` are (up to rounding) the
    /// original ones.
    pub fn respaced(&self, use_timesteps: &BTreeSet<usize>) -> Result<Self, DiffusionError> {
        if let Some(&t) = use_timesteps.iter().next_back().filter(|&&t| t >= self.num_timesteps()) {
            return Err(DiffusionError::TimestepOutOfRange { t, num_timesteps: self.num_timesteps() });
        }
        let mut last = 1.0f64;
        let mut betas = Vec::with_capacity(use_timesteps.len());
        let mut map = Vec::with_capacity(use_timesteps.len());
        for &t in use_timesteps {
            let ac = self.alphas_cumprod[t];
            betas.push(1.0 - ac / last);
            last = ac;
            map.push(self.timestep_map[t]);
        }
        Self::from_betas(betas, map)
    }
}

/// `space_timesteps(num_timesteps, section_counts)` of `respace.py`: `"250"` or `"10,15,20"`
/// (evenly strided steps per equal section, rounded like Python's `round`), or `"ddimN"` (a
/// fixed integer stride giving exactly N steps).
pub fn space_timesteps(num_timesteps: usize, spec: &str) -> Result<BTreeSet<usize>, DiffusionError> {
    let bad = |reason: String| DiffusionError::BadRespacing { spec: spec.to_owned(), reason };
    if let Some(count) = spec.strip_prefix("ddim") {
        let desired: usize = count.parse().map_err(|_| bad(format!("`{count}` is not a step count")))?;
        for stride in 1..num_timesteps {
            if (0..num_timesteps).step_by(stride).len() == desired {
                return Ok((0..num_timesteps).step_by(stride).collect());
            }
        }
        return Err(bad(format!("no integer stride gives exactly {desired} of {num_timesteps} steps")));
    }
    let counts = spec
        .split(',')
        .map(|s| s.trim().parse::<usize>().map_err(|_| bad(format!("`{s}` is not a step count"))))
        .collect::<Result<Vec<_>, _>>()?;
    let size_per = num_timesteps / counts.len();
    let extra = num_timesteps % counts.len();
    let mut start = 0usize;
    let mut steps = BTreeSet::new();
    for (i, &count) in counts.iter().enumerate() {
        let size = size_per + usize::from(i < extra);
        if size < count {
            return Err(bad(format!("cannot take {count} steps from a section of {size}")));
        }
        let frac_stride = if count <= 1 { 1.0 } else { (size - 1) as f64 / (count - 1) as f64 };
        // The reference accumulates the position by repeated addition; so do we, to round the
        // same values.
        let mut cur = 0.0f64;
        for _ in 0..count {
            steps.insert(start + cur.round_ties_even() as usize);
            cur += frac_stride;
        }
        start += size;
    }
    Ok(steps)
}
