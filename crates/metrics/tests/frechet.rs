//! Fréchet distance against the scipy reference vectors in `shared/fixtures/frechet`.

use std::path::PathBuf;

use latte_metrics::frechet::{frechet_distance, Covariance, FeatureStats, Gaussian};
use latte_metrics::npy;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/frechet")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("read expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

fn fd_of_case(case: &str, cov: Covariance) -> f64 {
    let a = npy::read_matrix(&fixtures().join(format!("{case}_a.npy"))).expect("read a");
    let b = npy::read_matrix(&fixtures().join(format!("{case}_b.npy"))).expect("read b");
    let ga = Gaussian::from_rows(a.rows, a.cols, &a.data, cov).expect("stats a");
    let gb = Gaussian::from_rows(b.rows, b.cols, &b.data, cov).expect("stats b");
    frechet_distance(&ga, &gb).expect("fd")
}

fn check(case: &str, key: &str, cov: Covariance, rel_tol: f64) {
    let want = expected()["cases"][case][key].as_f64().expect("expected value");
    let got = fd_of_case(case, cov);
    let rel = ((got - want) / want).abs();
    println!("{case} {key}: got {got:.15} want {want:.15} rel {rel:.2e}");
    assert!(rel <= rel_tol, "{case} {key}: got {got}, want {want}, relative error {rel:e} > {rel_tol:e}");
}

#[test]
fn population_covariance_matches_stylegan_v_sqrtm() {
    for case in ["case1", "case2", "case3"] {
        check(case, "fd_stylegan_v_popcov_sqrtm", Covariance::Population, 1e-9);
    }
    check("case4", "fd_stylegan_v_popcov_sqrtm", Covariance::Population, 1e-6);
}

#[test]
fn unbiased_covariance_matches_pytorch_fid() {
    for case in ["case1", "case2", "case3"] {
        check(case, "fd_pytorch_fid_unbiasedcov_sqrtm", Covariance::Unbiased, 1e-9);
    }
    check("case4", "fd_pytorch_fid_unbiasedcov_sqrtm", Covariance::Unbiased, 1e-6);
}

#[test]
fn rank_deficient_case_matches_numpy_eigh_closely() {
    // The eigh route is better conditioned than scipy's sqrtm on singular covariances; against
    // numpy's eigh the spec measured 1.7e-10.
    check("case4", "fd_popcov_eigh", Covariance::Population, 1e-8);
}

#[test]
fn shapes_are_read_as_stored() {
    let e = expected();
    for case in ["case1", "case2", "case3", "case4"] {
        let a = npy::read_matrix(&fixtures().join(format!("{case}_a.npy"))).unwrap();
        assert_eq!(a.rows as u64, e["cases"][case]["n_a"].as_u64().unwrap());
        assert_eq!(a.cols as u64, e["cases"][case]["d"].as_u64().unwrap());
    }
}

#[test]
fn identical_sets_have_zero_distance_and_order_does_not_matter() {
    let a = npy::read_matrix(&fixtures().join("case2_a.npy")).unwrap();
    let b = npy::read_matrix(&fixtures().join("case2_b.npy")).unwrap();
    let ga = Gaussian::from_rows(a.rows, a.cols, &a.data, Covariance::Population).unwrap();
    let gb = Gaussian::from_rows(b.rows, b.cols, &b.data, Covariance::Population).unwrap();
    let same = frechet_distance(&ga, &ga).unwrap();
    assert!(same.abs() < 1e-9, "FD(a, a) = {same}");
    let ab = frechet_distance(&ga, &gb).unwrap();
    let ba = frechet_distance(&gb, &ga).unwrap();
    assert!(((ab - ba) / ab).abs() < 1e-12, "{ab} vs {ba}");
}

#[test]
fn chunked_accumulation_equals_one_shot() {
    // More rows than one accumulation chunk, pushed one at a time as float32.
    let a = npy::read_matrix(&fixtures().join("case3_a.npy")).unwrap();
    let mut stats = FeatureStats::new(a.cols);
    for r in 0..a.rows {
        let row: Vec<f32> = a.row(r).iter().map(|&v| v as f32).collect();
        stats.push_f32(&row).unwrap();
    }
    let g1 = stats.gaussian(Covariance::Population).unwrap();
    let g2 = Gaussian::from_rows(a.rows, a.cols, &a.data, Covariance::Population).unwrap();
    let d = a.cols;
    let max = (0..d * d).map(|k| (g1.cov[(k / d, k % d)] - g2.cov[(k / d, k % d)]).abs()).fold(0.0, f64::max);
    assert!(max < 1e-12, "covariance differs by {max}");
}

#[test]
fn bad_inputs_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    std::fs::write(&p, b"not numpy").unwrap();
    let err = npy::read_matrix(&p).unwrap_err().to_string();
    assert!(err.contains("x.npy") && err.contains("magic"), "{err}");

    let mut bytes = npy::encode_f64(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    bytes.truncate(bytes.len() - 8);
    std::fs::write(&p, &bytes).unwrap();
    let err = npy::read_matrix(&p).unwrap_err().to_string();
    assert!(err.contains("needs 48"), "{err}");

    let missing = dir.path().join("missing.npy");
    assert!(npy::read_matrix(&missing).unwrap_err().to_string().contains("missing.npy"));

    let mut s = FeatureStats::new(2);
    assert!(s.push(&[1.0, f64::NAN]).is_err());
    assert!(s.push(&[1.0]).is_err());
    assert!(s.gaussian(Covariance::Unbiased).is_err());

    let g2 = Gaussian::from_rows(2, 2, &[0.0, 1.0, 1.0, 0.0], Covariance::Population).unwrap();
    let g3 = Gaussian::from_rows(2, 3, &[0.0; 6], Covariance::Population).unwrap();
    assert!(frechet_distance(&g2, &g3).is_err());
}

#[test]
fn npy_round_trip_and_integer_dtype_refused() {
    let m = npy::parse_matrix(&npy::encode_f64(2, 2, &[1.5, -2.0, 3.25, 4.0])).unwrap();
    assert_eq!((m.rows, m.cols, m.data.clone()), (2, 2, vec![1.5, -2.0, 3.25, 4.0]));
    let mut bytes = npy::encode_f64(1, 1, &[0.0]);
    let at = bytes.windows(3).position(|w| w == b"<f8").unwrap();
    bytes[at + 1] = b'i';
    let err = npy::parse_matrix(&bytes).unwrap_err();
    assert!(err.contains("not float32/float64"), "{err}");
}

#[test]
fn trace_sqrt_of_diagonal_products_through_both_routes() {
    use latte_metrics::frechet::trace_sqrt_product;
    let diag = |v: &[f64]| faer::Mat::<f64>::from_fn(v.len(), v.len(), |i, j| if i == j { v[i] } else { 0.0 });
    let b = diag(&[4.0, 1.0, 1.0, 5.0]);
    // Positive definite A: the Cholesky route.
    let pd = trace_sqrt_product(&diag(&[1.0, 4.0, 9.0, 16.0]), &b).unwrap();
    assert!((pd - (2.0 + 2.0 + 3.0 + 80f64.sqrt())).abs() < 1e-12, "{pd}");
    // Singular A: the eigendecomposition route.
    let singular = trace_sqrt_product(&diag(&[1.0, 4.0, 9.0, 0.0]), &b).unwrap();
    assert!((singular - 7.0).abs() < 1e-12, "{singular}");
}
