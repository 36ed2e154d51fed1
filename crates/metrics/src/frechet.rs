//! Feature statistics and the Fréchet distance between two Gaussians, in float64.
//!
//! `FD = |μa − μb|² + tr Ca + tr Cb − 2 tr sqrt(Ca Cb)`. StyleGAN-V takes `scipy.linalg.sqrtm`
//! of the non-symmetric product; here `tr sqrt(Ca Cb)` comes from two symmetric
//! eigendecompositions instead, which needs no complex arithmetic and stays defined when a
//! covariance is singular (N ≤ d): `Ca = U diag(l) Uᵀ`, `W = U diag(√max(l,0))`; `Ca Cb` is
//! similar to the PSD matrix `Wᵀ Cb W`, so `tr sqrt(Ca Cb) = Σ √max(eig(Wᵀ Cb W), 0)`. When `Ca`
//! is comfortably positive definite its Cholesky factor serves as `W` at half the cost.
//!
//! Every faer operation runs sequentially ([`sequential`]): faer's parallel kernels split
//! their sums by the number of threads of the calling pool, so a metric computed with one
//! thread and with two differed in its last digits, and a cached `metrics.json` would not be
//! what a rerun with another thread budget writes.

use faer::{Mat, Par, Side};

use crate::MetricsError;

/// How the covariance is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Covariance {
    /// Divide by N, as StyleGAN-V (and Latte's copy) compute FVD and FID.
    Population,
    /// Divide by N − 1 (`np.cov`), as pytorch-fid does.
    Unbiased,
}

impl std::str::FromStr for Covariance {
    type Err = String;

    /// `population` or `unbiased`; the error names the value and the two that work.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "population" => Ok(Covariance::Population),
            "unbiased" => Ok(Covariance::Unbiased),
            other => Err(format!("\"{other}\" is no covariance; use \"population\" or \"unbiased\"")),
        }
    }
}

impl Covariance {
    pub fn name(self) -> &'static str {
        match self {
            Covariance::Population => "population (1/N)",
            Covariance::Unbiased => "unbiased (1/(N-1))",
        }
    }
}

/// Rows buffered before they are folded into `Σ xxᵀ` with one matrix product.
const CHUNK: usize = 256;

/// Running `Σx` and `Σxxᵀ` over feature vectors, like StyleGAN-V's `FeatureStats`.
#[derive(Clone, Debug)]
pub struct FeatureStats {
    dim: usize,
    count: usize,
    sum: Vec<f64>,
    sum_outer: Mat<f64>,
    pending: Vec<f64>,
}

impl FeatureStats {
    pub fn new(dim: usize) -> Self {
        FeatureStats { dim, count: 0, sum: vec![0.0; dim], sum_outer: Mat::zeros(dim, dim), pending: Vec::new() }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of feature vectors pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds one feature vector. Non-finite values are refused: they would silently poison
    /// every entry of the covariance.
    pub fn push(&mut self, row: &[f64]) -> Result<(), MetricsError> {
        if row.len() != self.dim {
            return Err(MetricsError::DimMismatch { a: self.dim, b: row.len() });
        }
        if let Some(col) = row.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite { row: self.count, col });
        }
        for (s, v) in self.sum.iter_mut().zip(row) {
            *s += v;
        }
        self.pending.extend_from_slice(row);
        self.count += 1;
        if self.pending.len() >= CHUNK * self.dim {
            self.flush();
        }
        Ok(())
    }

    /// Adds a float32 feature vector, widened exactly to float64 (StyleGAN-V casts its
    /// features to float32 and then to float64 the same way).
    pub fn push_f32(&mut self, row: &[f32]) -> Result<(), MetricsError> {
        let wide: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        self.push(&wide)
    }

    fn flush(&mut self) {
        sequential();
        let k = self.pending.len() / self.dim.max(1);
        if k == 0 {
            return;
        }
        let d = self.dim;
        let p = Mat::<f64>::from_fn(k, d, |i, j| self.pending[i * d + j]);
        self.sum_outer += p.transpose() * &p;
        self.pending.clear();
    }

    /// Mean and covariance (`Σxxᵀ/N − μμᵀ`, or scaled by N/(N−1) for the unbiased variant).
    pub fn gaussian(&self, cov: Covariance) -> Result<Gaussian, MetricsError> {
        let need = match cov {
            Covariance::Population => 1,
            Covariance::Unbiased => 2,
        };
        if self.count < need {
            return Err(MetricsError::TooFewSamples { n: self.count, need });
        }
        let mut this = self.clone();
        this.flush();
        let n = this.count as f64;
        let mean: Vec<f64> = this.sum.iter().map(|s| s / n).collect();
        let scale = match cov {
            Covariance::Population => 1.0,
            Covariance::Unbiased => n / (n - 1.0),
        };
        let cov = Mat::<f64>::from_fn(self.dim, self.dim, |i, j| (this.sum_outer[(i, j)] / n - mean[i] * mean[j]) * scale);
        Ok(Gaussian { mean, cov })
    }
}

/// A Gaussian fitted to features.
#[derive(Clone, Debug)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub cov: Mat<f64>,
}

impl Gaussian {
    /// Statistics of the rows of a row-major `rows×cols` matrix.
    pub fn from_rows(rows: usize, cols: usize, data: &[f64], cov: Covariance) -> Result<Gaussian, MetricsError> {
        let mut stats = FeatureStats::new(cols);
        for r in 0..rows {
            stats.push(&data[r * cols..(r + 1) * cols])?;
        }
        stats.gaussian(cov)
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }
}

/// The Fréchet distance between two Gaussians (`a` generated, `b` real by convention; the
/// value is symmetric up to rounding).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> Result<f64, MetricsError> {
    let d = a.dim();
    if b.dim() != d {
        return Err(MetricsError::DimMismatch { a: d, b: b.dim() });
    }
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace_a: f64 = (0..d).map(|i| a.cov[(i, i)]).sum();
    let trace_b: f64 = (0..d).map(|i| b.cov[(i, i)]).sum();
    Ok(mean_term + trace_a + trace_b - 2.0 * trace_sqrt_product(&a.cov, &b.cov)?)
}

/// `tr sqrt(A B)` for symmetric positive semi-definite `A`, `B`.
pub fn trace_sqrt_product(a: &Mat<f64>, b: &Mat<f64>) -> Result<f64, MetricsError> {
    sequential();
    let d = a.nrows();
    let a = symmetrized(a);
    let b = symmetrized(b);
    let w = match cholesky_factor(&a) {
        Some(l) => l,
        None => {
            let evd = a.self_adjoint_eigen(Side::Lower).map_err(|_| MetricsError::Eigen { d })?;
            let u = evd.U();
            let l = evd.S().column_vector();
            let root: Vec<f64> = (0..d).map(|j| l[j].max(0.0).sqrt()).collect();
            Mat::<f64>::from_fn(d, d, |i, j| u[(i, j)] * root[j])
        }
    };
    // A = W Wᵀ, so A B is similar to the PSD matrix Wᵀ B W.
    let m = w.transpose() * (&b * &w);
    let eig = symmetrized(&m).self_adjoint_eigenvalues(Side::Lower).map_err(|_| MetricsError::Eigen { d })?;
    Ok(eig.iter().map(|v| v.max(0.0).sqrt()).sum())
}

/// Makes faer's operators and decompositions, which take their parallelism from one global
/// setting, run on the calling thread alone. faer is this crate's alone in the workspace, so
/// the setting touches nothing else.
fn sequential() {
    faer::set_global_parallelism(Par::Seq);
}

/// The Cholesky factor `L` of `A = L Lᵀ`, about twice as cheap as the eigendecomposition;
/// `None` when `A` is singular or so close to it that a pivot collapses (always when N ≤ d),
/// and the eigendecomposition route takes over.
fn cholesky_factor(a: &Mat<f64>) -> Option<Mat<f64>> {
    let llt = a.llt(Side::Lower).ok()?;
    let l = llt.L().to_owned();
    let max_diag = (0..a.nrows()).map(|i| a[(i, i)]).fold(0.0, f64::max);
    let min_pivot = (0..a.nrows()).map(|i| l[(i, i)] * l[(i, i)]).fold(f64::INFINITY, f64::min);
    (min_pivot > 1e-10 * max_diag).then_some(l)
}

/// `(M + Mᵀ)/2`: rounding leaves accumulated covariances a few ulps from symmetric.
fn symmetrized(m: &Mat<f64>) -> Mat<f64> {
    Mat::<f64>::from_fn(m.nrows(), m.ncols(), |i, j| 0.5 * (m[(i, j)] + m[(j, i)]))
}
