//! Inception Score against numbers NumPy produced (StyleGAN-V's formula, RandomState(42)).

use latte_metrics::inception_score::{inception_score, LegacyRandomState};

#[test]
fn shuffle_matches_numpy_random_state_42() {
    // np.random.RandomState(42).shuffle(np.arange(20))
    let want = [0, 17, 15, 1, 8, 5, 11, 3, 18, 16, 13, 2, 9, 19, 4, 12, 7, 10, 14, 6];
    assert_eq!(LegacyRandomState::new(42).shuffle_permutation(20), want);
    // The same with 2048 rows (IS uses 2048 clips): first 8 and last 4.
    let p = LegacyRandomState::new(42).shuffle_permutation(2048);
    assert_eq!(p[..8], [1476, 693, 100, 1421, 1810, 1185, 393, 514]);
    assert_eq!(p[2044..], [1294, 860, 1459, 1126]);
}

fn table(n: usize, k: usize) -> Vec<f32> {
    // softmax(sin(0.7 i + 1.3 j) + 0.1 j), computed in float64 and stored as float32.
    let mut out = Vec::with_capacity(n * k);
    for i in 0..n {
        let logits: Vec<f64> = (0..k).map(|j| (0.7 * i as f64 + 1.3 * j as f64).sin() + 0.1 * j as f64).collect();
        let z: f64 = logits.iter().map(|l| l.exp()).sum();
        out.extend(logits.iter().map(|l| (l.exp() / z) as f32));
    }
    out
}

#[test]
fn score_matches_numpy_reference() {
    // NumPy (float32 arithmetic) gave mean 1.1721844673156738, std 0.03410330414772034.
    let (mean, std) = inception_score(&table(40, 5), 40, 5, 10, 42);
    assert!((mean - 1.1721844673156738).abs() / 1.1721844673156738 < 1e-5, "mean {mean}");
    assert!((std - 0.03410330414772034).abs() / 0.03410330414772034 < 1e-3, "std {std}");
}

#[test]
fn uniform_predictions_score_one_and_confident_distinct_ones_score_k() {
    let (n, k) = (20, 4);
    let uniform = vec![0.25f32; n * k];
    let (m, s) = inception_score(&uniform, n, k, 2, 42);
    assert!((m - 1.0).abs() < 1e-12 && s.abs() < 1e-12);
    // Near-one-hot, classes balanced in each part after any shuffle? Use one split instead.
    let mut sharp = vec![1e-6f32; n * k];
    for i in 0..n {
        sharp[i * k + i % k] = 1.0 - 3e-6;
    }
    let (m, _) = inception_score(&sharp, n, k, 1, 42);
    assert!((m - k as f64).abs() < 1e-3, "{m}");
}

#[test]
fn zero_probability_gives_nan_like_the_reference() {
    let mut p = vec![0.5f32; 8];
    p[0] = 0.0;
    p[1] = 1.0;
    let (m, _) = inception_score(&p, 4, 2, 1, 42);
    assert!(m.is_nan());
}
