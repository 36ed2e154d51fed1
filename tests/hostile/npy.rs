//! `.npy` feature matrices (latte-metrics' FVD/FID inputs).

use crate::harness::{self, Case, CI, LONG};
use crate::mutate::{fields_digits, Field, Kind};

fn npy(cases: usize) {
    let _serial = harness::serial();
    let data: Vec<f64> = (0..15).map(|i| i as f64 * 0.25 - 1.0).collect();
    let valid = latte_metrics::npy::encode_f64(5, 3, &data);
    assert_eq!(latte_metrics::npy::parse_matrix(&valid).expect("the valid .npy reads").data, data);
    let header_len = u16::from_le_bytes([valid[8], valid[9]]) as usize;
    // The header length, the major version byte (as a u16 with the minor) and the shape.
    let mut fields = vec![Field::new(8, Kind::U16Le), Field::new(6, Kind::U16Le)];
    fields.extend(fields_digits(&valid[10..10 + header_len], 10));
    let t = harness::run(
        "metrics npy",
        cases,
        None,
        |m| {
            let bytes = m.mutate(&valid, &fields, true);
            Case { bytes: bytes.len(), input: bytes }
        },
        |b| latte_metrics::npy::parse_matrix(b).map(drop),
    );
    harness::check("metrics npy", t);
}

#[test]
fn metrics_npy() {
    npy(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn metrics_npy_long() {
    npy(LONG);
}
