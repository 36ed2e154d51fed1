//! Valid small files of each format, written independently of the readers under test, and the
//! helpers that rebuild a container around a mutated member.

use std::io::{Read as _, Write as _};
use std::path::Path;

/// A NumPy-format pickle (protocol 2) of a nested dict of float32 arrays, the layout of a
/// Flax checkpoint: `_reconstruct(ndarray, (0,), b'b')` + BUILD `(1, shape, dtype, False, raw)`,
/// with the dtype memoized and fetched again by the second array.
pub fn numpy_pickle() -> Vec<u8> {
    fn int(out: &mut Vec<u8>, v: i32) {
        out.push(b'J');
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn array(out: &mut Vec<u8>, shape: &[i32], first: bool) {
        out.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R(");
        int(out, 1);
        out.push(b'(');
        for &s in shape {
            int(out, s);
        }
        out.push(b't');
        if first {
            out.extend_from_slice(b"cnumpy\ndtype\n");
            unicode(out, "f4");
            out.extend_from_slice(b"\x89\x88\x87Rq\x00(");
            int(out, 3);
            unicode(out, "<");
            out.extend_from_slice(b"NNN");
            int(out, -1);
            int(out, -1);
            int(out, 0);
            out.extend_from_slice(b"tb");
        } else {
            out.extend_from_slice(b"h\x00");
        }
        out.push(0x89);
        let n: i32 = shape.iter().product();
        let raw: Vec<u8> = (0..n).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
        out.push(b'B');
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        out.extend_from_slice(&raw);
        out.extend_from_slice(b"tb");
    }
    let mut out = vec![0x80, 2, b'}', b'('];
    unicode(&mut out, "Conv3d_0a");
    out.extend_from_slice(b"}(");
    unicode(&mut out, "kernel");
    array(&mut out, &[2, 1, 1, 3, 4], true);
    unicode(&mut out, "bias");
    array(&mut out, &[4], false);
    out.extend_from_slice(b"u");
    unicode(&mut out, "Logits");
    array(&mut out, &[4, 3], false);
    out.extend_from_slice(b"u.");
    out
}

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `_rebuild_tensor_v2(persistent_id(('storage', FloatStorage, key, 'cpu', numel)), offset,
/// size, stride, False, OrderedDict())`.
fn tensor(out: &mut Vec<u8>, key: &str, numel: u8, offset: u8, size: &[u8], stride: &[u8]) {
    out.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    unicode(out, "storage");
    out.extend_from_slice(b"ctorch\nFloatStorage\n");
    unicode(out, key);
    unicode(out, "cpu");
    out.extend_from_slice(&[b'K', numel, b't', b'Q', b'K', offset, b'(']);
    for &s in size {
        out.extend_from_slice(&[b'K', s]);
    }
    out.extend_from_slice(b"t(");
    for &s in stride {
        out.extend_from_slice(&[b'K', s]);
    }
    out.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtR");
}

/// The `data.pkl` of a TorchScript module with two tensors, as torch.jit.save lays it out
/// (`__torch__` module objects whose BUILD state holds their attributes).
pub fn torchscript_pickle() -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend_from_slice(b"c__torch__.m\nTop\n)\x81}(");
    unicode(&mut p, "training");
    p.push(0x88);
    unicode(&mut p, "conv");
    p.extend_from_slice(b"c__torch__.m\nLayer\n)\x81}(");
    unicode(&mut p, "weight");
    tensor(&mut p, "0", 6, 0, &[2, 3], &[3, 1]);
    unicode(&mut p, "beta");
    tensor(&mut p, "1", 3, 1, &[2], &[1]);
    p.extend_from_slice(b"ubub.");
    p
}

/// A zip's members, in order.
pub fn unzip(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a valid zip");
    (0..a.len())
        .map(|i| {
            let mut f = a.by_index(i).expect("a member");
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).expect("a readable member");
            (f.name().expect("a UTF-8 member name").into_owned(), buf)
        })
        .collect()
}

/// A stored (uncompressed) zip of `members`, each aligned to 64 bytes as torch.save does.
pub fn zip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(64);
    for (name, data) in members {
        z.start_file(name.as_str(), opts).expect("zip member");
        z.write_all(data).expect("zip write");
    }
    z.finish().expect("zip finish");
    out.into_inner()
}

pub fn torchscript_zip() -> Vec<u8> {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    zip(&[
        ("m/data.pkl".into(), torchscript_pickle()),
        ("m/data/0".into(), f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ("m/data/1".into(), f32s(&[9.0, 7.5, -1.0])),
        ("m/version".into(), b"3\n".to_vec()),
    ])
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// CRC-32C (Castagnoli), the checksum zarrs puts after a shard index: recomputing it lets a
/// mutated index get past the checksum to the code that trusts the offsets.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
