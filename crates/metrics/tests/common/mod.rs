//! Helpers shared by the integration tests: an independent pickle *writer* in NumPy's format,
//! deterministic random numbers, and fixture paths.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures() -> PathBuf {
    repo_root().join("../shared/fixtures")
}

/// Where `cargo xtask weights fetch` puts converted weights.
pub fn weights_dir() -> PathBuf {
    std::env::var_os("LATTE_WEIGHTS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".latte/weights"))
}

/// SplitMix64: a tiny, seeded generator independent of the crate under test.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// A nested dict of float32 arrays, the shape of a Flax checkpoint.
pub enum Node {
    Dict(BTreeMap<String, Node>),
    Array(Vec<usize>, Vec<f32>),
}

/// Builds the nested tree from `a/b/c`-joined names, splitting on every `/`.
pub fn tree(flat: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Node {
    let mut root = BTreeMap::new();
    for (name, (shape, data)) in flat {
        let parts: Vec<&str> = name.split('/').collect();
        let mut node = &mut root;
        for p in &parts[..parts.len() - 1] {
            let entry = node.entry(p.to_string()).or_insert_with(|| Node::Dict(BTreeMap::new()));
            node = match entry {
                Node::Dict(d) => d,
                Node::Array(..) => panic!("name clash at {p}"),
            };
        }
        node.insert(parts[parts.len() - 1].to_string(), Node::Array(shape.clone(), data.clone()));
    }
    Node::Dict(root)
}

/// Writes `node` as a protocol-2 pickle the way NumPy pickles arrays
/// (`_reconstruct` + `BUILD`), with the dtype object memoized and re-fetched by later arrays.
pub fn numpy_pickle(node: &Node) -> Vec<u8> {
    let mut out = vec![0x80, 2];
    let mut dtype_memo: Option<u8> = None;
    let mut next_memo = 0u8;
    fn unicode(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn int(out: &mut Vec<u8>, v: i32) {
        out.push(b'J');
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn emit(out: &mut Vec<u8>, node: &Node, dtype_memo: &mut Option<u8>, next_memo: &mut u8) {
        match node {
            Node::Dict(d) => {
                out.push(b'}');
                out.push(b'(');
                for (k, v) in d {
                    unicode(out, k);
                    emit(out, v, dtype_memo, next_memo);
                }
                out.push(b'u');
            }
            Node::Array(shape, data) => {
                out.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\n");
                out.extend_from_slice(b"cnumpy\nndarray\n");
                out.push(b'K');
                out.push(0);
                out.push(0x85);
                out.push(b'C');
                out.push(1);
                out.push(b'b');
                out.push(0x87);
                out.push(b'R');
                out.push(b'(');
                int(out, 1);
                out.push(b'(');
                for &s in shape {
                    int(out, s as i32);
                }
                out.push(b't');
                match dtype_memo {
                    Some(m) => {
                        out.push(b'h');
                        out.push(*m);
                    }
                    None => {
                        out.extend_from_slice(b"cnumpy\ndtype\n");
                        unicode(out, "f4");
                        out.push(0x89);
                        out.push(0x88);
                        out.push(0x87);
                        out.push(b'R');
                        out.push(b'q');
                        out.push(*next_memo);
                        *dtype_memo = Some(*next_memo);
                        *next_memo += 1;
                        // BUILD after memoizing: the byte order must reach the memo's alias.
                        out.push(b'(');
                        int(out, 3);
                        unicode(out, "<");
                        out.push(b'N');
                        out.push(b'N');
                        out.push(b'N');
                        int(out, -1);
                        int(out, -1);
                        int(out, 0);
                        out.push(b't');
                        out.push(b'b');
                    }
                }
                out.push(0x89);
                let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                out.push(b'B');
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
                out.push(b't');
                out.push(b'b');
            }
        }
    }
    emit(&mut out, node, &mut dtype_memo, &mut next_memo);
    out.push(b'.');
    out
}

// A TorchScript zip writer (pickle protocol 2 by hand), for the `.pt` readers.

pub fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `_rebuild_tensor_v2(persistent_id(('storage', FloatStorage, key, 'cpu', numel)), offset, size, stride, False, OrderedDict())`.
pub fn tensor(out: &mut Vec<u8>, key: &str, numel: u8, offset: u8, size: &[u8], stride: &[u8]) {
    out.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    out.push(b'(');
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
    out.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)Rt");
    out.push(b'R');
}

pub fn write_torchscript_zip(path: &std::path::Path, storages: &[(&str, Vec<f32>)], pkl: &[u8]) {
    use std::io::Write;
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("m/data.pkl", opts).unwrap();
    zip.write_all(pkl).unwrap();
    for (key, values) in storages {
        zip.start_file(format!("m/data/{key}"), opts).unwrap();
        for v in values {
            zip.write_all(&v.to_le_bytes()).unwrap();
        }
    }
    zip.start_file("m/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}
