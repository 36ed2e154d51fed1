//! Sampling on a tiny random Latte and a tiny random VAE (seconds): determinism, batch
//! independence, the files per the contract, weights files sampled like train outputs, and
//! errors that name what to fix.

use std::path::{Path, PathBuf};

use latte_diffusion::Method;
use latte_model::burn::tensor::Device;
use latte_model::{Latte, LatteConfig};
use latte_sample::{sample_to_dir, vae_folder, ModelSource, SampleError, SampleOptions, SampleReport, Silent};
use latte_store::RaggedReader;
use latte_train::TrainOutputConfig;
use latte_vae::{AutoencoderKL, VaeConfig};
use latte_video::VideoReader;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FRAMES: usize = 3;
const LATENT: usize = 8;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latte-sample-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file: (header, data start, bytes).
fn safetensors_header(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header.as_object().unwrap().clone(), 8 + n)
}

fn tensor_range(info: &serde_json::Value, start: usize) -> std::ops::Range<usize> {
    let off = info["data_offsets"].as_array().unwrap();
    start + off[0].as_u64().unwrap() as usize..start + off[1].as_u64().unwrap() as usize
}

/// Replaces every f32 tensor of a safetensors file with seeded uniform values in ±0.2, so
/// that the (zero-initialised) final layer gives a non-trivial output.
fn randomise_safetensors(path: &Path, seed: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let (header, start) = safetensors_header(&bytes);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(info["dtype"], "F32", "{name}");
        for chunk in bytes[tensor_range(info, start)].chunks_exact_mut(4) {
            chunk.copy_from_slice(&rng.random_range(-0.2f32..0.2).to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn tiny_config(num_classes: Option<usize>) -> LatteConfig {
    let mut cfg = LatteConfig::preset("Latte-S/2").unwrap();
    (cfg.input_size, cfg.hidden_size, cfg.depth, cfg.num_heads, cfg.num_frames) = (LATENT, 32, 2, 2, FRAMES);
    cfg.num_classes = num_classes;
    cfg
}

fn train_output_config(model: LatteConfig, scale_factor: f64) -> TrainOutputConfig<LatteConfig> {
    let num_classes = model.num_classes.map(|k| k as u32);
    let latents =
        latte_train::LatentsInfo { dataset: "test".into(), latent_shape: [4, LATENT as u64, LATENT as u64], num_classes, scale_factor };
    TrainOutputConfig::new(model, latents)
}

/// A `train` output holding a random tiny Latte (EMA and raw weights differ).
fn train_dir(root: &Path, num_classes: Option<usize>) -> PathBuf {
    let dir = root.join(if num_classes.is_some() { "train-cond" } else { "train-uncond" });
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = tiny_config(num_classes);
    let model = Latte::new(&cfg, &Device::flex(), 0).unwrap();
    for (i, f) in ["model.safetensors", "model_raw.safetensors"].iter().enumerate() {
        model.save_safetensors(&dir.join(f)).unwrap();
        randomise_safetensors(&dir.join(f), 10 + i as u64);
    }
    train_output_config(cfg, 0.18215).write(&dir).unwrap();
    dir
}

/// A `vae_train`-shaped output (`vae/`) with a random two-level VAE (8×8 latents → 16×16).
fn vae_dir(root: &Path) -> PathBuf {
    let dir = root.join("vae_train");
    let cfg = VaeConfig::new(vec![8, 16], 1, 4, 4);
    let vae = AutoencoderKL::init(&cfg, 0, &Device::flex()).unwrap();
    latte_vae::save_pretrained(&vae, &cfg, &dir.join("vae")).unwrap();
    dir
}

fn opts(n: usize, batch_size: usize) -> SampleOptions {
    SampleOptions {
        n,
        batch_size,
        method: Method::Ddpm,
        steps: 6,
        cfg_scale: 1.0,
        use_ema: true,
        seed: 7,
        fps: 8,
        grid_n: 4,
        decode_batch: 4,
        device: "cpu".into(),
        precision: "f32".into(),
    }
}

fn run(train: &Path, vae: &Path, out: &Path, o: &SampleOptions) -> Result<SampleReport, SampleError> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    sample_to_dir(&ModelSource::TrainDir(train.to_owned()), &vae_folder(vae), out, o, &Silent)
}

fn stored_samples(out: &Path) -> (Vec<u8>, latte_store::RaggedMeta) {
    let store = RaggedReader::open(&out.join("samples.zarr")).unwrap();
    let a = store.array::<u8>("samples").unwrap();
    (a.read_range(&[], 0, a.total_frames()).unwrap(), store.meta().clone())
}

#[test]
fn same_seed_same_bytes_whatever_the_batch_size() {
    let root = tmp("determinism");
    let (train, vae) = (train_dir(&root, Some(3)), vae_dir(&root));
    let guided = SampleOptions { cfg_scale: 4.0, ..opts(3, 2) };
    let report = run(&train, &vae, &root.join("a"), &guided).unwrap();
    run(&train, &vae, &root.join("b"), &guided).unwrap();
    run(&train, &vae, &root.join("c"), &SampleOptions { batch_size: 3, ..guided.clone() }).unwrap();
    run(&train, &vae, &root.join("d"), &SampleOptions { seed: 8, ..guided.clone() }).unwrap();

    for f in ["videos/0000.mp4", "videos/0001.mp4", "videos/0002.mp4", "grid.mp4", "grid.gif"] {
        let (a, b) = (std::fs::read(root.join("a").join(f)).unwrap(), std::fs::read(root.join("b").join(f)).unwrap());
        assert!(a == b, "{f}: two runs with the same seed wrote different bytes");
    }
    let (a, meta) = stored_samples(&root.join("a"));
    let (c, meta_c) = stored_samples(&root.join("c"));
    let (d, _) = stored_samples(&root.join("d"));
    assert_eq!(a.len(), 3 * FRAMES * 16 * 16 * 3);
    assert_eq!(meta.counts, vec![FRAMES as u64; 3]);
    assert_eq!(meta.ids, vec!["0000", "0001", "0002"]);
    let labels: Vec<Option<u32>> = report.labels.unwrap().iter().map(|&l| Some(l as u32)).collect();
    assert_eq!(meta.labels, labels);
    assert_eq!((meta_c.labels.clone(), meta.num_classes), (labels, Some(3)));
    // Batches of 2 + 1 and one batch of 3 give the same videos.
    let diff = a.iter().zip(&c).filter(|(x, y)| x != y).count();
    assert_eq!(diff, 0, "{diff} of {} bytes depend on the batch size", a.len());
    assert!(a != d, "another seed gave the same videos");
    // The samples are not flat: the random model and VAE give varied pixels.
    let distinct = a.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct > 50, "only {distinct} distinct byte values");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn videos_decode_back_with_their_frame_count_and_size() {
    let root = tmp("files");
    let (train, vae) = (train_dir(&root, None), vae_dir(&root));
    let out = root.join("out");
    let o = SampleOptions { method: Method::Ddim { eta: 0.0 }, use_ema: false, grid_n: 3, ..opts(3, 2) };
    run(&train, &vae, &out, &o).unwrap();
    for i in 0..3 {
        let frames = VideoReader::open(&out.join(format!("videos/{i:04}.mp4"))).unwrap().read_all().unwrap();
        assert_eq!(frames.len(), FRAMES, "video {i}");
        assert_eq!((frames[0].width, frames[0].height), (16, 16));
    }
    // Three tiles: 2 columns × 2 rows of 16 px with 2 px borders = 38 × 38.
    let grid = VideoReader::open(&out.join("grid.mp4")).unwrap().read_all().unwrap();
    assert_eq!((grid.len(), grid[0].width, grid[0].height), (FRAMES, 38, 38));
    assert_eq!(&std::fs::read(out.join("grid.gif")).unwrap()[..6], b"GIF89a");
    let (pixels, meta) = stored_samples(&out);
    assert_eq!(meta.labels, vec![None; 3]);
    assert_eq!(meta.num_classes, None);
    // H.264 4:2:0 is lossy, and the random model's frames are noise, so chroma suffers;
    // luma (kept at full resolution) of the decoded first frame stays near the stored one.
    let first = VideoReader::open(&out.join("videos/0000.mp4")).unwrap().read_all().unwrap();
    let luma = |p: &[u8]| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
    let n = 16 * 16;
    let mean_err: f64 =
        first[0].data.chunks(3).zip(pixels[..n * 3].chunks(3)).map(|(a, b)| (luma(a) - luma(b)).abs()).sum::<f64>() / n as f64;
    println!("luma mean abs error of the mp4's first frame: {mean_err:.2}");
    assert!(mean_err < 8.0, "mp4 frame differs from the stored one by {mean_err} (luma) on average");
    let _ = std::fs::remove_dir_all(&root);
}

/// A weights file with its configuration (how official checkpoints are sampled) gives the
/// same videos as a train output holding the same weights; a wrong configuration is an
/// error that names the file and the parameters to check.
#[test]
fn a_checkpoint_file_samples_like_a_train_output() {
    let root = tmp("file");
    let fixture = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/latte-v1-class-cfg"));
    let spec = latte_model::reference::RefSpec::from_file(&fixture.join("config.json")).unwrap();
    let weights = fixture.join("weights.safetensors");
    let vae = vae_dir(&root);
    let train = root.join("train");
    std::fs::create_dir_all(&train).unwrap();
    std::fs::copy(&weights, train.join("model.safetensors")).unwrap();
    train_output_config(spec.config.clone(), 0.5).write(&train).unwrap();
    let o = SampleOptions { cfg_scale: 4.0, ..opts(2, 2) };
    let file = ModelSource::File { path: weights.clone(), config: spec.config.clone(), scale_factor: 0.5 };
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    let report = sample_to_dir(&file, &vae_folder(&vae), &a, &o, &Silent).unwrap();
    assert!(report.labels.unwrap().iter().all(|&l| l < 5));
    run(&train, &vae, &b, &o).unwrap();
    assert_eq!(stored_samples(&a).0, stored_samples(&b).0);
    assert_eq!(std::fs::read(a.join("grid.mp4")).unwrap(), std::fs::read(b.join("grid.mp4")).unwrap());

    let mut wrong = spec.config.clone();
    wrong.depth = 2;
    let bad = ModelSource::File { path: weights.clone(), config: wrong, scale_factor: 0.5 };
    let c = root.join("c");
    std::fs::create_dir_all(&c).unwrap();
    let e = chain(&sample_to_dir(&bad, &vae_folder(&vae), &c, &o, &Silent).unwrap_err());
    assert!(e.contains("weights.safetensors") && e.contains("num_classes"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The error and its causes, as a user reads them.
fn chain(e: &SampleError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// Guidance on an unconditional model, a missing train folder or VAE: errors that say what to
/// do, before anything is written.
#[test]
fn bad_options_and_missing_inputs_are_errors_that_name_them() {
    let root = tmp("errors");
    let (train, vae) = (train_dir(&root, None), vae_dir(&root));
    let e = run(&train, &vae, &root.join("x"), &SampleOptions { cfg_scale: 7.0, ..opts(1, 1) }).unwrap_err();
    assert!(chain(&e).contains("cfg_scale"), "{}", chain(&e));
    assert!(!root.join("x/videos/0000.mp4").exists());
    let e = run(&root.join("nowhere"), &vae, &root.join("x"), &opts(1, 1)).unwrap_err();
    assert!(chain(&e).contains("config.json"), "{}", chain(&e));
    let e = run(&train, &root.join("nowhere"), &root.join("x"), &opts(1, 1)).unwrap_err();
    assert!(chain(&e).contains("nowhere"), "{}", chain(&e));
    for (o, key) in [
        (SampleOptions { steps: 0, ..opts(1, 1) }, "steps"),
        (SampleOptions { n: 0, ..opts(1, 1) }, "`n`"),
        (SampleOptions { method: Method::Ddim { eta: -1.0 }, ..opts(1, 1) }, "eta"),
        (SampleOptions { precision: "f64".into(), ..opts(1, 1) }, "precision"),
        (SampleOptions { device: "tpu".into(), ..opts(1, 1) }, "device"),
    ] {
        let e = run(&train, &vae, &root.join("x"), &o).unwrap_err();
        assert!(chain(&e).contains(key), "{key}: {}", chain(&e));
    }
    let e = latte_sample::parse_method("euler", 0.0).unwrap_err();
    assert!(e.to_string().contains("method"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}
