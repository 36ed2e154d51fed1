//! `latents`: encodes every stored frame, as stored and mirrored left-right, with the VAE and
//! stores the posterior mean and log-variance per frame, so the train stage can draw any window,
//! any flip and a fresh posterior sample each step, as the reference does.
//!
//! Output: `latents.zarr/` (Zarr v3 group, the frames store's ragged layout): arrays `mean` and
//! `logvar` `[2, total_frames, Z, h, w]` (axis 0: 0 = frames as stored, 1 = mirrored), f32 or
//! f16; group attributes are the frames store's plus `scale_factor`, `vae_digest`, `dtype`,
//! `latent_shape`, `downsample_factor`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use latte_engine::{Cancel, InputSpec, Interrupted, ParamSpec, ParamType, Params, Progress, Stage, StageContext, StageError};
use latte_nn::threads::{map_on_workers, workers};
use latte_store::{f16, ArraySpec, FrameElement, GroupInfo, LatentsAttrs, RaggedWriter, RgbVideos};
use latte_vae::burn::tensor::Device;
use latte_vae::train::{frames_to_tensor, FrameBatch};
use latte_vae::{AutoencoderKL, VaeFolder};

pub struct Latents;

const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "dtype", ty: ParamType::Str, default: Some("\"f32\""), help: "storage type of mean and logvar: \"f32\" or \"f16\"" },
    ParamSpec { name: "batch_size", ty: ParamType::Int, default: Some("16"), help: "frames encoded at once (bounds memory)" },
    crate::DEVICE,
    ParamSpec {
        name: "weights",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "a diffusers AutoencoderKL folder (e.g. Stable Diffusion's sd-vae-ft-ema); empty = the `vae` input",
    },
];

const INPUTS: &[InputSpec] = &[
    InputSpec { name: "frames", required: true, help: "the `frames` stage (frames.zarr)" },
    InputSpec { name: "vae", required: false, help: "a `vae_train` stage (vae/); not needed when `weights` is set" },
];

#[derive(Clone, Copy, Debug)]
pub enum StoreDtype {
    F32,
    F16,
}

fn dtype(p: &Params) -> Result<StoreDtype, String> {
    match p.str("dtype").map_err(|e| e.to_string())? {
        "f32" | "float32" => Ok(StoreDtype::F32),
        "f16" | "float16" => Ok(StoreDtype::F16),
        other => Err(format!("parameter `dtype` is \"{other}\"; use \"f32\" or \"f16\"")),
    }
}

impl Stage for Latents {
    fn kind(&self) -> &'static str {
        "latents"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        dtype(params)?;
        crate::device_spec(params)?;
        if params.usize("batch_size").map_err(|e| e.to_string())? == 0 {
            return Err("parameter `batch_size` must be at least 1".into());
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let dtype = dtype(ctx.params)?;
        let batch_size = ctx.params.usize("batch_size")?;
        let frames = ctx.input("frames")?.join("frames.zarr");
        let vae = vae_dir(ctx)?;
        let device = crate::open_device(ctx.params)?;
        encode_store(&frames, &vae, &ctx.out.join("latents.zarr"), dtype, batch_size, &device, ctx.progress, ctx.cancel)
            .map_err(crate::stage_error)
    }
}

fn vae_dir(ctx: &StageContext<'_>) -> anyhow::Result<PathBuf> {
    if let Some(path) = ctx.params.opt_str("weights").map_err(|e| anyhow::anyhow!("{e}"))? {
        return Ok(PathBuf::from(path));
    }
    match ctx.inputs.get("vae") {
        // A vae_train output holds the folder as `vae/`; any other upstream may be the folder.
        Some(dir) if dir.join("vae").is_dir() => Ok(dir.join("vae")),
        Some(dir) => Ok(dir.clone()),
        None => bail!(
            "stage `{}` needs a VAE: bind the `vae` input to a vae_train stage or set `weights` to a diffusers AutoencoderKL folder",
            ctx.name
        ),
    }
}

/// Mean and log-variance of `frames` (`[n, H, W, 3]` uint8), as stored and mirrored:
/// two `[2, n, Z, h, w]` buffers.
fn encode(vae: &AutoencoderKL, frames: FrameBatch<'_>, device: &Device) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let (mut mean, mut logvar) = (Vec::new(), Vec::new());
    for flip in [false, true] {
        let posterior = vae.encode(frames_to_tensor(frames, flip, device));
        mean.extend(posterior.mean.into_data().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("reading latents back: {e:?}"))?);
        logvar.extend(posterior.logvar.into_data().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("reading latents back: {e:?}"))?);
    }
    Ok((mean, logvar))
}

/// Encodes every frame of the store `store_dir` with the VAE folder `vae_dir` into the new
/// store `out` (`latents.zarr`); stops with `Interrupted` between two batches once `cancel`
/// is set.
pub fn encode_store(
    store_dir: &Path,
    vae_dir: &Path,
    out: &Path,
    dtype: StoreDtype,
    batch_size: usize,
    device: &Device,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    match dtype {
        StoreDtype::F32 => encode_as::<f32>(store_dir, vae_dir, out, "float32", |v| v, batch_size, device, progress, cancel),
        StoreDtype::F16 => encode_as::<f16>(store_dir, vae_dir, out, "float16", f16::from_f32, batch_size, device, progress, cancel),
    }
}

fn encode_as<T: FrameElement>(
    store_dir: &Path,
    vae_dir: &Path,
    out: &Path,
    dtype_name: &str,
    convert: fn(f32) -> T,
    batch_size: usize,
    device: &Device,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let device = device.clone();
    let folder = VaeFolder::open(vae_dir)?;
    let vae = folder.load(&device)?;
    let digest = folder.digest()?;
    let config = &folder.config;

    let frames = RgbVideos::open(store_dir, &["frames"]).context("the frames to encode")?;
    let (height, width) = frames.frame_size();
    latte_vae::check_input([1, 3, height, width], config)
        .with_context(|| format!("frames of {} with the VAE in {}", store_dir.display(), vae_dir.display()))?;
    let f = config.downsample_factor();
    let latent_shape = [config.latent_channels as u64, (height / f) as u64, (width / f) as u64];
    let batch_size = batch_size.max(1);

    let mut writer = RaggedWriter::create(out)?;
    for name in ["mean", "logvar"] {
        writer.add_array::<T>(&ArraySpec::new(name, &[2], &latent_shape))?;
    }
    let meta = frames.meta().clone();
    progress.set_length(meta.total_frames());
    progress.log(&format!(
        "latents: {} videos, {} frames of {height}×{width} → {latent_shape:?} ({dtype_name}), VAE {}",
        meta.num_videos(),
        meta.total_frames(),
        vae_dir.display()
    ));
    // The batches in store order, as (video, first frame, frames); a video without frames is
    // one empty batch, so that it still ends in the store.
    let mut batches = Vec::new();
    for v in 0..meta.num_videos() {
        let range = meta.range(v).context("video range")?;
        let mut start = range.start;
        loop {
            let n = (range.end - start).min(batch_size as u64);
            batches.push((v, start, n));
            start += n;
            if start >= range.end {
                break;
            }
        }
    }
    // Batches are encoded as many at a time as the stage has threads, one thread each
    // (`map_on_workers`: the same latents, bit for bit), and written in order.
    for round in batches.chunks(workers()) {
        if cancel.is_cancelled() {
            return Err(Interrupted.into());
        }
        let pixels = round
            .iter()
            .map(|&(v, start, n)| frames.read_range(start, n).with_context(|| format!("reading frames of video `{}`", meta.ids[v])))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let encoded = map_on_workers(&pixels, |pixels| match pixels.len() {
            0 => Ok((Vec::new(), Vec::new())),
            len => encode(&vae, FrameBatch { pixels, count: len / (height * width * 3), height, width }, &device),
        });
        for (&(v, start, n), latents) in round.iter().zip(encoded) {
            let (mean, logvar) = latents?;
            if n > 0 {
                writer.append::<T>("mean", &mean.into_iter().map(convert).collect::<Vec<T>>())?;
                writer.append::<T>("logvar", &logvar.into_iter().map(convert).collect::<Vec<T>>())?;
                progress.inc(n);
            }
            if start + n >= meta.range(v).context("video range")?.end {
                writer.end_video(&meta.ids[v], meta.labels[v])?;
            }
        }
    }

    let mut extra = meta.extra.clone();
    let attrs = LatentsAttrs {
        scale_factor: config.scaling_factor,
        vae_digest: digest.to_owned(),
        dtype: dtype_name.to_owned(),
        latent_shape,
        downsample_factor: f,
    };
    attrs.insert_into(&mut extra);
    let info = GroupInfo { dataset: meta.dataset.clone(), num_classes: meta.num_classes, window: meta.window, flip: meta.flip, extra };
    writer.finish(info)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vae_train::{train_on_store, Options};
    use latte_engine::NoProgress;
    use latte_store::RaggedReader;
    use latte_store::WindowRule;
    use latte_vae::train::VaeTrainConfig;
    use latte_vae::VaeConfig;

    /// A fresh scratch directory (stages has no tempfile dependency).
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("latte-latents-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A frames store of videos with `counts` frames of `s`×`s`, pixel values from a formula.
    pub(crate) fn frames_store(dir: &Path, s: usize, counts: &[usize]) -> PathBuf {
        let path = dir.join("frames.zarr");
        let mut w = RaggedWriter::create(&path).unwrap();
        w.add_array::<u8>(&ArraySpec::new("frames", &[], &[s as u64, s as u64, 3])).unwrap();
        for (v, &n) in counts.iter().enumerate() {
            let px: Vec<u8> = (0..n * s * s * 3).map(|i| ((i * 37 + v * 11 + (i / (s * 3)) * 5) % 251) as u8).collect();
            w.append::<u8>("frames", &px).unwrap();
            w.end_video(&format!("video{v}"), Some((v % 2) as u32)).unwrap();
        }
        let info =
            GroupInfo { dataset: "unit".into(), num_classes: Some(2), window: WindowRule::Linspace, flip: true, extra: Default::default() };
        w.finish(info).unwrap();
        path
    }

    pub(crate) fn tiny_options() -> Options {
        Options {
            vae: VaeConfig::new(vec![8, 16], 1, 4, 4),
            train: VaeTrainConfig { steps: 2, batch_size: 2, crop: 8, ..VaeTrainConfig::default() },
            heldout_fraction: 0.3,
            max_frames: 64,
            fit_scaling_factor: true,
            device: Device::flex(),
        }
    }

    #[test]
    fn trained_vae_encodes_every_frame_in_both_orientations() {
        let dir = scratch("both");
        let frames = frames_store(&dir, 16, &[5, 3, 4]);
        let trained = dir.join("vae_train");
        train_on_store(&frames, &tiny_options(), &trained, &NoProgress, &Cancel::new()).unwrap();
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(trained.join("report.json")).unwrap()).unwrap();
        assert!(report["heldout_psnr_db"].as_f64().is_some_and(f64::is_finite), "{report}");
        assert_eq!(report["heldout_frames"], 3, "the middle video (3 frames) is held out: {report}");

        let vae_dir = trained.join("vae");
        let out = dir.join("latents.zarr");
        encode_store(&frames, &vae_dir, &out, StoreDtype::F32, 3, &Device::flex(), &NoProgress, &Cancel::new()).unwrap();

        let latents = RaggedReader::open(&out).unwrap();
        let source = RaggedReader::open(&frames).unwrap();
        let meta = latents.meta();
        assert_eq!(
            (&meta.offsets, &meta.counts, &meta.ids, &meta.labels),
            (&source.meta().offsets, &source.meta().counts, &source.meta().ids, &source.meta().labels)
        );
        let folder = VaeFolder::open(&vae_dir).unwrap();
        assert_eq!(meta.extra["scale_factor"].as_f64(), Some(folder.config.scaling_factor));
        assert_eq!(meta.extra["vae_digest"].as_str(), Some(folder.digest().unwrap().as_str()));
        assert_eq!(meta.extra["dtype"], "float32");
        assert_eq!(meta.extra["latent_shape"], serde_json::json!([4, 8, 8]));

        // Orientation 1 is the encoding of the mirrored frames, orientation 0 of the frames.
        let device = Device::flex();
        let vae = folder.load(&device).unwrap();
        let pixels = source.array::<u8>("frames").unwrap().read_range(&[], 0, 12).unwrap();
        let batch = FrameBatch { pixels: &pixels, count: 12, height: 16, width: 16 };
        let mean = latents.array::<f32>("mean").unwrap();
        let logvar = latents.array::<f32>("logvar").unwrap();
        assert_eq!((mean.lead_shape(), mean.frame_shape()), (&[2u64][..], &[4u64, 8, 8][..]));
        for (slot, flip) in [(0u64, false), (1, true)] {
            let want = vae.encode(frames_to_tensor(batch, flip, &device));
            let want_mean = want.mean.into_data().try_into_vec::<f32>().unwrap();
            let want_logvar = want.logvar.into_data().try_into_vec::<f32>().unwrap();
            let got_mean = mean.read_range(&[slot], 0, 12).unwrap();
            let got_logvar = logvar.read_range(&[slot], 0, 12).unwrap();
            let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(diff(&got_mean, &want_mean) < 1e-5, "orientation {slot}: mean differs by {}", diff(&got_mean, &want_mean));
            assert!(diff(&got_logvar, &want_logvar) < 1e-5, "orientation {slot}: logvar differs");
        }
        assert_ne!(mean.read_range(&[0], 0, 1).unwrap(), mean.read_range(&[1], 0, 1).unwrap(), "orientations must differ");

        // Batches of 3 (some across a video's end) encoded one at a time on one thread, or three
        // at a time on one thread each: the same bits, and the videos end where they did.
        let encode_on = |threads: usize, name: &str| {
            let out = dir.join(name);
            latte_nn::threads::on_threads(Some(threads), || {
                encode_store(&frames, &vae_dir, &out, StoreDtype::F32, 3, &Device::flex(), &NoProgress, &Cancel::new())
            })
            .unwrap();
            let store = RaggedReader::open(&out).unwrap();
            let values: Vec<Vec<f32>> = ["mean", "logvar"]
                .iter()
                .flat_map(|a| [0u64, 1].map(|slot| store.array::<f32>(a).unwrap().read_range(&[slot], 0, 12).unwrap()))
                .collect();
            (store.meta().offsets.clone(), store.meta().counts.clone(), values)
        };
        let (one, three) = (encode_on(1, "one.zarr"), encode_on(3, "three.zarr"));
        assert_eq!(one, three, "encoding batches side by side changed the latents");
        assert_eq!(one.1, meta.counts);

        // f16 storage holds the same values to half precision.
        let out16 = dir.join("latents16.zarr");
        encode_store(&frames, &vae_dir, &out16, StoreDtype::F16, 5, &Device::flex(), &NoProgress, &Cancel::new()).unwrap();
        let half = RaggedReader::open(&out16).unwrap();
        assert_eq!(half.meta().extra["dtype"], "float16");
        let m16 = half.array::<f16>("mean").unwrap().read_range(&[1], 0, 12).unwrap();
        let m32 = mean.read_range(&[1], 0, 12).unwrap();
        assert!(m16.iter().zip(&m32).all(|(a, b)| (a.to_f32() - b).abs() <= 1e-3 * (1.0 + b.abs())));

        // A cancelled run stops both stages with `Interrupted` (vae_train from inside the
        // library's step callback, latents between batches).
        let cancelled = Cancel::new();
        cancelled.cancel();
        let e = train_on_store(&frames, &tiny_options(), &dir.join("vae_train2"), &NoProgress, &cancelled).unwrap_err();
        assert!(e.is::<Interrupted>(), "{e:#}");
        assert!(!dir.join("vae_train2/report.json").exists());
        let e = encode_store(&frames, &vae_dir, &dir.join("latents2.zarr"), StoreDtype::F32, 3, &Device::flex(), &NoProgress, &cancelled)
            .unwrap_err();
        assert!(e.is::<Interrupted>(), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frames_the_vae_cannot_take_fail_with_both_paths_named() {
        let dir = scratch("size");
        let frames = frames_store(&dir, 10, &[2]);
        let vae_dir = dir.join("vae");
        let model = latte_vae::AutoencoderKL::init(&VaeConfig::new(vec![8, 16, 16], 1, 4, 4), 0, &Device::flex()).unwrap();
        latte_vae::save_pretrained(&model, &VaeConfig::new(vec![8, 16, 16], 1, 4, 4), &vae_dir).unwrap();
        let err = encode_store(&frames, &vae_dir, &dir.join("out.zarr"), StoreDtype::F32, 4, &Device::flex(), &NoProgress, &Cancel::new())
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("multiples of the downsampling factor 4") && msg.contains("frames.zarr") && msg.contains("vae"), "{msg}");
        let err = encode_store(
            &frames,
            &dir.join("nowhere"),
            &dir.join("out2.zarr"),
            StoreDtype::F32,
            4,
            &Device::flex(),
            &NoProgress,
            &Cancel::new(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("config.json"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
