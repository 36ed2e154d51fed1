//! `eval_curve`: FVD (and FID where asked) of every kept checkpoint of a `train` output, the
//! paper's evidence (Fig. 6, Fig. 8) being FVD over training iterations, not one number.
//!
//! For each checkpoint it samples as the `sample` stage does and scores with the `metrics` stage
//! (their parameters keep their meaning here; the metrics stage's `seed` is `metrics_seed`), so
//! a point of the curve is exactly what those two stages give for that checkpoint. Each
//! checkpoint's evaluation is kept in the engine's memo directory under the digest of its
//! weights and every setting that moves the numbers: evaluating a longer run of the same
//! recipe samples only its new checkpoints.
//!
//! Inputs: `train` (its `checkpoints/`: set `keep_checkpoints` high enough to keep every step
//! the curve should show), `vae`, `frames` (the real clips). Output: `curve.json` (step →
//! values, with the settings), `curve.png`, `metrics.json` (the last checkpoint's entries, for
//! a grid's summary table) and `points/step-NNNNNNNN/` (each checkpoint's `metrics.json` and
//! sample `grid.gif`).

use std::path::Path;
use std::sync::LazyLock;

use anyhow::{anyhow, bail, Context};
use latte_engine::{InputSpec, ParamSpec, ParamType, Params, Stage, StageContext, StageError};
use latte_metrics::curve::{Curve, CurvePoint};
use latte_sample::{sample_to_dir, vae_folder, ModelSource};
use latte_train::checkpoint::{self, CheckpointState};
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::sample::Sample;
use latte_engine::atomic::write_atomic;

pub struct EvalCurve;

/// Parameters passed to the `sample` stage under their own names.
const SAMPLE_KEYS: &[&str] =
    &["n", "batch_size", "method", "steps", "eta", "cfg_scale", "use_ema", "seed", "decode_batch", "device", "precision"];
/// Parameters passed to the `metrics` stage under their own names (`metrics_seed` is its `seed`).
const METRICS_KEYS: &[&str] = &[
    "fid",
    "i3d_weights",
    "inception_weights",
    "num_clips",
    "frames_per_clip",
    "real_stride",
    "fake_stride",
    "real_mirror",
    "fid_num_real",
    "fid_num_fake",
    "covariance",
];

const OWN: &[ParamSpec] = &[
    ParamSpec {
        name: "metrics_seed",
        ty: ParamType::Int,
        default: Some("0"),
        help: "the metrics stage's `seed`: the real clips' draw (videos, starts, flips)",
    },
    ParamSpec { name: "log_x", ty: ParamType::Bool, default: Some("false"), help: "draw curve.png with a log-scaled step axis" },
];

/// The sample stage's and the metrics stage's specs of the keys passed on (one definition of
/// each parameter: its help and default are theirs), then this stage's own.
static PARAMS: LazyLock<Vec<ParamSpec>> = LazyLock::new(|| {
    let pick = |stage: &dyn Stage, keys: &[&str]| -> Vec<ParamSpec> {
        keys.iter()
            .map(|k| {
                *stage.params().iter().find(|p| p.name == *k).unwrap_or_else(|| panic!("stage `{}` has no parameter `{k}`", stage.kind()))
            })
            .collect()
    };
    let mut specs = pick(&Sample, SAMPLE_KEYS);
    let mut fid = pick(&Metrics, METRICS_KEYS);
    // A curve evaluates many checkpoints: FID only where asked.
    fid[0] = ParamSpec { default: Some("false"), ..fid[0] };
    specs.extend(fid);
    specs.extend_from_slice(OWN);
    specs
});

const INPUTS: &[InputSpec] = &[
    InputSpec { name: "train", required: true, help: "the `train` stage: every checkpoint in its checkpoints/ is evaluated" },
    InputSpec { name: "vae", required: true, help: "the `vae_train` stage the latents were encoded with" },
    InputSpec { name: "frames", required: true, help: "the `frames` stage (frames.zarr): the real clips" },
];

/// The parameters of the sample and the metrics stage runs this stage's `p` stands for.
fn split(p: &Params) -> anyhow::Result<(Params, Params)> {
    let get = |k: &str| p.values.get(k).cloned().ok_or_else(|| anyhow!("missing parameter `{k}`"));
    let sample =
        Params::with_defaults(&Sample, SAMPLE_KEYS.iter().map(|k| Ok((k.to_string(), get(k)?))).collect::<anyhow::Result<Vec<_>>>()?)
            .map_err(anyhow::Error::msg)?;
    let mut set = METRICS_KEYS.iter().map(|k| Ok((k.to_string(), get(k)?))).collect::<anyhow::Result<Vec<_>>>()?;
    set.extend([
        ("device".to_owned(), get("device")?),
        ("seed".to_owned(), get("metrics_seed")?),
        ("fvd".to_owned(), toml::Value::Boolean(true)),
        ("is".to_owned(), toml::Value::Boolean(false)),
        // The floor and the baseline do not depend on the checkpoint: the metrics stage
        // reports them once.
        ("fvd_references".to_owned(), toml::Value::Boolean(false)),
    ]);
    Ok((sample, Params::with_defaults(&Metrics, set).map_err(anyhow::Error::msg)?))
}

impl Stage for EvalCurve {
    fn kind(&self) -> &'static str {
        "eval_curve"
    }

    fn version(&self) -> &'static str {
        // 2: metrics version 4 (Fréchet distances that do not depend on the thread budget)
        "2"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        let (sample, metrics) = split(params).map_err(|e| format!("{e:#}"))?;
        Sample.validate(&sample)?;
        Metrics.validate(&metrics)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        run(ctx).map_err(crate::stage_error)
    }
}

fn run(ctx: &StageContext<'_>) -> anyhow::Result<()> {
    let (sample_p, metrics_p) = split(ctx.params)?;
    let train = ctx.input("train").map_err(|e| anyhow!("{e}"))?;
    let checkpoints = checkpoint::list_checkpoints(&train.join("checkpoints"))?;
    if checkpoints.is_empty() {
        bail!(
            "{}: no checkpoints to evaluate; the `train` stage keeps `keep_checkpoints` of them, every `checkpoint_every` steps",
            train.join("checkpoints").display()
        );
    }
    let use_ema = sample_p.bool("use_ema").map_err(|e| anyhow!("{e}"))?;
    // What moves a checkpoint's numbers besides its weights: the settings, the two stages'
    // code versions, and the VAE and real frames (store folders are named by their key).
    // The device enters as its kind only, as in the engine's cache keys: another GPU of the same
    // kind gives the same numbers.
    let keyed = |p: &Params| {
        let mut values = p.values.clone();
        if let Some(toml::Value::String(d)) = values.get_mut("device") {
            *d = latte_engine::device_kind(d);
        }
        values
    };
    let settings = json!({
        "sample": keyed(&sample_p),
        "metrics": keyed(&metrics_p),
        "versions": {"eval_curve": EvalCurve.version(), "sample": Sample.version(), "metrics": Metrics.version()},
        "vae": input_name(ctx, "vae")?,
        "frames": input_name(ctx, "frames")?,
        // A network file replaced at the same path must not reuse old evaluations.
        "networks": network_digests(&metrics_p)?,
    });
    ctx.progress.set_length(checkpoints.len() as u64);
    let (mut curve, mut reused) = (Curve::default(), 0);
    for (step, dir) in &checkpoints {
        ctx.check_cancelled()?;
        let state = checkpoint::read_state(dir)?;
        let key = memo_key(dir, &state, use_ema, &settings)?;
        let entry = ctx.memo.join(&key);
        if entry.join("metrics.json").is_file() {
            reused += 1;
            ctx.progress.log(&format!("eval_curve: step {step}: evaluated before ({})", entry.display()));
        } else {
            ctx.progress.log(&format!("eval_curve: step {step}: sampling and scoring"));
            evaluate(ctx, dir, &sample_p, &metrics_p, &entry)?;
        }
        let metrics: Value = serde_json::from_slice(&std::fs::read(entry.join("metrics.json"))?)
            .with_context(|| format!("{}", entry.join("metrics.json").display()))?;
        let shown = ctx.out.join("points").join(format!("step-{step:08}"));
        std::fs::create_dir_all(&shown)?;
        for f in ["metrics.json", "grid.gif"] {
            if entry.join(f).is_file() {
                std::fs::copy(entry.join(f), shown.join(f)).with_context(|| format!("copying {}", entry.join(f).display()))?;
            }
        }
        curve.points.push(CurvePoint { step: *step, metrics });
        ctx.progress.inc(1);
    }
    ctx.progress.log(&format!("eval_curve: {} checkpoints, {reused} evaluated before", checkpoints.len()));
    write_outputs(ctx, &curve, &settings)
}

/// The memo key of one checkpoint's evaluation: its weights' digest and `settings`.
fn memo_key(dir: &Path, state: &CheckpointState, use_ema: bool, settings: &Value) -> anyhow::Result<String> {
    let digest = latte_metrics::weights::file_sha256(&checkpoint::weights_file(dir, use_ema))?;
    let keyed = json!({"weights": digest, "model": state.model, "scale_factor": state.config.scale_factor, "settings": settings});
    Ok(latte_engine::hash::sha256_hex(&serde_json::to_vec(&keyed)?))
}

/// The SHA-256 of each metric network's weights file that exists (by parameter name).
fn network_digests(metrics_p: &Params) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    for key in ["i3d_weights", "inception_weights"] {
        if let Some(path) = metrics_p.opt_str(key).map_err(|e| anyhow!("{e}"))?.map(Path::new).filter(|p| p.is_file()) {
            out.insert(key.to_owned(), json!(latte_metrics::weights::file_sha256(path)?));
        }
    }
    Ok(Value::Object(out))
}

fn input_name(ctx: &StageContext<'_>, slot: &str) -> anyhow::Result<String> {
    let dir = ctx.input(slot).map_err(|e| anyhow!("{e}"))?;
    Ok(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

/// Samples from the checkpoint in `dir` and scores the samples, leaving `metrics.json` and the
/// samples' `grid.gif` in `entry` (atomically: nothing there until both exist).
fn evaluate(ctx: &StageContext<'_>, dir: &Path, sample_p: &Params, metrics_p: &Params, entry: &Path) -> anyhow::Result<()> {
    let scratch = ctx.work.join(entry.file_name().unwrap_or_default());
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let (samples, scored) = (scratch.join("sample"), scratch.join("metrics"));
    std::fs::create_dir_all(&samples)?;
    let vae = vae_folder(ctx.input("vae").map_err(|e| anyhow!("{e}"))?);
    let opts = crate::sample::options(sample_p)?;
    // Stops between two denoising steps once the run is cancelled.
    let progress = crate::cancel::Stopping { inner: &latte_engine::NoProgress, cancel: ctx.cancel };
    let progress = crate::sample::StageProgress(&progress);
    crate::cancel::stoppable(|| sample_to_dir(&ModelSource::Checkpoint(dir.to_owned()), &vae, &samples, &opts, &progress))
        .map_err(anyhow::Error::new)?
        .with_context(|| format!("sampling from checkpoint {}", dir.display()))?;

    std::fs::create_dir_all(&scored)?;
    let inputs =
        [("samples".to_owned(), samples.clone()), ("frames".to_owned(), ctx.input("frames").map_err(|e| anyhow!("{e}"))?.to_owned())]
            .into_iter()
            .collect();
    let sub = ctx.nested(metrics_p, &inputs, &scored, &scratch);
    Metrics.run(&sub).map_err(|e| anyhow!("{e}")).with_context(|| format!("the metrics stage's run for checkpoint {}", dir.display()))?;

    let tmp = scratch.join("entry");
    std::fs::create_dir_all(&tmp)?;
    std::fs::copy(scored.join("metrics.json"), tmp.join("metrics.json"))?;
    if samples.join("grid.gif").is_file() {
        std::fs::copy(samples.join("grid.gif"), tmp.join("grid.gif"))?;
    }
    latte_atomic::replace_dir(&tmp, entry).with_context(|| format!("installing {}", entry.display()))?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

fn write_outputs(ctx: &StageContext<'_>, curve: &Curve, settings: &Value) -> anyhow::Result<()> {
    write_atomic(&ctx.out.join("curve.json"), &serde_json::to_vec_pretty(&curve.to_json(settings))?)?;
    if let Some(chart) = curve.chart(ctx.params.bool("log_x").map_err(|e| anyhow!("{e}"))?) {
        write_atomic(&ctx.out.join("curve.png"), &chart.to_png()?)?;
    } else {
        let missing = curve.missing_weights().join(", ");
        ctx.progress.log(&format!("eval_curve: no metric computed (missing weights: {missing}); curve.png not drawn"));
    }
    write_atomic(&ctx.out.join("metrics.json"), &serde_json::to_vec_pretty(&curve.last())?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use latte_engine::{Plan, RunOptions, Selection, Silent};
    use serde_json::Value;

    /// videos -> frames -> vae -> latents -> train (a checkpoint every step, all kept) ->
    /// eval_curve, and sample -> metrics on the final weights with the curve's settings.
    fn pipeline(steps: u64, i3d: &Path) -> String {
        format!(
            r#"
[stages.videos]
kind = "videos"
num_videos = 3
min_frames = 10
max_frames = 10
width = 16
height = 16

[stages.frames]
kind = "frames"
inputs = {{ videos = "videos" }}
size = 16
num_frames = 9
frame_interval = 1

[stages.vae]
kind = "vae_train"
inputs = {{ frames = "frames" }}
block_out_channels = [8, 16]
norm_num_groups = 4
steps = 2
batch_size = 1
crop = 8

[stages.latents]
kind = "latents"
inputs = {{ frames = "frames", vae = "vae" }}

[stages.train]
kind = "train"
inputs = {{ latents = "latents" }}
depth = 2
hidden_size = 32
num_heads = 2
num_frames = 9
frame_interval = 1
steps = {steps}
batch_size = 2
lr = 3e-2
ema_decay = 0.5
checkpoint_every = 1
keep_checkpoints = 100

[stages.curve]
kind = "eval_curve"
inputs = {{ train = "train", vae = "vae", frames = "frames" }}
n = 2
batch_size = 2
steps = 2
num_clips = 2
frames_per_clip = 9
real_stride = 1
metrics_seed = 4
i3d_weights = "{i3d}"

[stages.sample]
kind = "sample"
inputs = {{ train = "train", vae = "vae" }}
n = 2
batch_size = 2
steps = 2

[stages.metrics]
kind = "metrics"
inputs = {{ samples = "sample", frames = "frames" }}
fid = false
is = false
fvd_references = false
num_clips = 2
frames_per_clip = 9
real_stride = 1
seed = 4
i3d_weights = "{i3d}"
"#,
            i3d = i3d.display()
        )
    }

    fn run(dir: &Path, steps: u64, i3d: &Path) -> Plan {
        std::fs::write(dir.join("pipeline.toml"), pipeline(steps, i3d)).unwrap();
        let registry = crate::registry();
        let p = latte_engine::pipeline::load(&dir.join("pipeline.toml"), &registry, &Default::default()).unwrap();
        let mut plan = Plan::new(&p, &Selection::default()).unwrap();
        latte_engine::runner::run(std::slice::from_mut(&mut plan), &RunOptions { jobs: 1, observer: &Silent, cancel: None }).unwrap();
        plan
    }

    fn json(path: PathBuf) -> Value {
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
    }

    fn memo_entries(dir: &Path) -> usize {
        std::fs::read_dir(dir.join(".latte/memo/eval_curve"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().join("metrics.json").is_file())
            .count()
    }

    #[test]
    fn eval_curve_has_one_point_per_checkpoint_equal_to_the_metrics_stage_and_caches_each() {
        let dir = std::env::temp_dir().join(format!("latte-eval-curve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let i3d = dir.join("i3d.safetensors");
        crate::metrics::tests::random_i3d(&i3d);

        let plan = run(&dir, 2, &i3d);
        let out = |name: &str| plan.stage(name).unwrap().output.clone();
        let curve = json(out("curve").join("curve.json"));
        let steps: Vec<u64> = curve["points"].as_array().unwrap().iter().map(|p| p["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [1, 2], "one point per kept checkpoint: {curve}");
        let line = curve["curves"]["FVD-2"].as_array().unwrap();
        assert_eq!(line.len(), 2);
        // The last checkpoint's EMA weights are the train output's: its point is what the
        // sample and metrics stages give with the same settings, to the bit.
        let metrics = json(out("metrics").join("metrics.json"));
        assert_eq!(line[1][1], metrics["fvd"]["value"], "{curve}\n{metrics}");
        assert_ne!(line[0][1], line[1][1], "two checkpoints, two models");
        assert_eq!(json(out("curve").join("metrics.json"))["fvd"]["value"], metrics["fvd"]["value"]);
        let png = std::fs::read(out("curve").join("curve.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(out("curve").join("points/step-00000001/grid.gif").is_file());
        assert_eq!(memo_entries(&dir), 2);

        // One more step: a new train output and curve, but only the new checkpoint is sampled.
        let longer = run(&dir, 3, &i3d);
        assert_eq!(memo_entries(&dir), 3, "steps 1 and 2 were evaluated before");
        let again = json(longer.stage("curve").unwrap().output.join("curve.json"));
        let line3 = again["curves"]["FVD-2"].as_array().unwrap();
        assert_eq!(line3.len(), 3);
        assert_eq!(line3[..2], line[..], "the earlier checkpoints' points are the same");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parameters_keep_the_sample_and_metrics_stages_meanings_and_checks() {
        let p = |extra: &str| {
            let text = format!(
                "[stages.d]\nkind = \"videos\"\n[stages.f]\nkind = \"frames\"\ninputs = {{ videos = \"d\" }}\n[stages.v]\nkind = \"vae_train\"\ninputs = {{ frames = \"f\" }}\n\
                 [stages.l]\nkind = \"latents\"\ninputs = {{ frames = \"f\", vae = \"v\" }}\n[stages.t]\nkind = \"train\"\ninputs = {{ latents = \"l\" }}\n\
                 [stages.c]\nkind = \"eval_curve\"\ninputs = {{ train = \"t\", vae = \"v\", frames = \"f\" }}\n{extra}"
            );
            latte_engine::pipeline::parse(&text, Path::new("/tmp/pipeline.toml"), &crate::registry(), &Default::default())
                .map(|p| p.stage("c").unwrap().params.clone())
        };
        let params = p("").map_err(|e| e.to_string()).unwrap();
        let (sample, metrics) = super::split(&params).unwrap();
        assert_eq!(sample.usize("steps").unwrap(), 250, "the sample stage's default");
        assert_eq!(metrics.u64("seed").unwrap(), 0);
        assert!(!metrics.bool("fid").unwrap(), "FID only where asked");
        for (bad, key) in [
            ("steps = 0", "steps"),
            ("num_clips = 0", "num_clips"),
            ("frames_per_clip = 4", "frames_per_clip"),
            ("covariance = \"x\"", "covariance"),
        ] {
            let e = p(bad).err().unwrap_or_else(|| panic!("`{bad}` accepted")).to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
