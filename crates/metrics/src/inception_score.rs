//! Inception Score over class probabilities, as StyleGAN-V's `video_inception_score.py`
//! computes IS (UCF101): the rows are shuffled with `np.random.RandomState(42)`, cut into
//! `splits` contiguous parts `[i·N/splits, (i+1)·N/splits)`, and each part scores
//! `exp(mean_x Σ_y p log(p / mean_part(p)))`; the result is the mean and population std over
//! parts. No epsilon is added: a zero probability gives NaN, as in the reference.

/// NumPy's legacy `RandomState` generator (MT19937), enough for `RandomState(seed).shuffle`.
pub struct LegacyRandomState {
    mt: [u32; 624],
    pos: usize,
}

impl LegacyRandomState {
    /// `np.random.RandomState(seed)` for an integer seed below 2³².
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        let mut s = seed;
        for (pos, slot) in mt.iter_mut().enumerate() {
            *slot = s;
            s = 1_812_433_253u32.wrapping_mul(s ^ (s >> 30)).wrapping_add(pos as u32 + 1);
        }
        LegacyRandomState { mt, pos: 624 }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            for i in 0..624 {
                let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[i] = v;
            }
            self.pos = 0;
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// NumPy's legacy `random_interval(max)`: uniform in `0..=max` by masked rejection.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for s in [1, 2, 4, 8, 16] {
            mask |= mask >> s;
        }
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// The permutation `RandomState.shuffle` applies to `n` rows: row `i` of the result is
    /// row `perm[i]` of the input.
    pub fn shuffle_permutation(&mut self, n: usize) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u32) as usize;
            perm.swap(i, j);
        }
        perm
    }
}

/// `(mean, std)` of the Inception Score over `splits` parts of the `n×k` row-major class
/// probabilities `probs`, shuffled with `RandomState(seed)` first (StyleGAN-V: seed 42,
/// 10 splits).
pub fn inception_score(probs: &[f32], n: usize, k: usize, splits: usize, seed: u32) -> (f64, f64) {
    assert_eq!(probs.len(), n * k, "probs must be n×k");
    let perm = LegacyRandomState::new(seed).shuffle_permutation(n);
    let row = |i: usize| &probs[perm[i] * k..(perm[i] + 1) * k];
    let mut scores = Vec::with_capacity(splits);
    for s in 0..splits {
        let (lo, hi) = (s * n / splits, (s + 1) * n / splits);
        let m = (hi - lo) as f64;
        // The reference keeps probabilities in float32 up to the log; float64 here.
        let mut marginal = vec![0f64; k];
        for i in lo..hi {
            for (acc, &p) in marginal.iter_mut().zip(row(i)) {
                *acc += p as f64;
            }
        }
        marginal.iter_mut().for_each(|v| *v /= m);
        let mut kl = 0f64;
        for i in lo..hi {
            kl += row(i).iter().zip(&marginal).map(|(&p, &q)| p as f64 * ((p as f64).ln() - q.ln())).sum::<f64>();
        }
        scores.push((kl / m).exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    (mean, var.sqrt())
}
