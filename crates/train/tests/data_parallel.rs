//! Issue #12, data parallelism on the CPU: ranks in threads (in-process sums, or TCP over
//! loopback) train the tiny network of `train_loop.rs` to the weights one rank reaches with the
//! same global batch; checkpoints resume across rank counts; bad launcher settings and batches
//! that do not split are clear errors.

mod common;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{bits, clips, config, max_abs_diff, meta, run, weights, Tiny, C, HW};
use latte_train::checkpoint::list_checkpoints;
use latte_train::parallel::{grads_from_host, grads_to_host, presence_flags, sum_grads_with, Master};
use latte_train::{
    read_log, train_on_devices, train_with, Collective, ModelInput, RunPaths, StepLog, TcpOptions, TrainConfig, TrainError, World,
};

/// What one rank ends with.
struct RankOut {
    model: Vec<f32>,
    ema: Vec<f32>,
    resumed_from: Option<u64>,
}

/// Trains `Tiny::new(seed)` with each collective on its own thread, rank r in `dirs[r]`.
fn ranks(collectives: Vec<Collective>, dirs: &[&Path], cfg: &TrainConfig, seeds: &[u64]) -> Vec<Result<RankOut, TrainError>> {
    let n = collectives.len();
    ranks_stopping(collectives, dirs, cfg, seeds, &vec![None; n])
}

/// [`ranks`] where rank r's `on_step` asks to stop after step `stop[r]`.
fn ranks_stopping(
    collectives: Vec<Collective>,
    dirs: &[&Path],
    cfg: &TrainConfig,
    seeds: &[u64],
    stop: &[Option<u64>],
) -> Vec<Result<RankOut, TrainError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = collectives
            .into_iter()
            .enumerate()
            .map(|(r, coll)| {
                let (dir, seed, stop) = (dirs[r], seeds[r], stop[r]);
                s.spawn(move || {
                    let dev = Device::flex().autodiff();
                    let out = train_with(
                        Tiny::new(seed, &dev),
                        |m: &Tiny, inp| m.forward(inp),
                        clips(1),
                        cfg,
                        &RunPaths::in_dir(dir),
                        &meta(),
                        coll,
                        |l: &StepLog| if Some(l.step) == stop { ControlFlow::Break(()) } else { ControlFlow::Continue(()) },
                    )?;
                    Ok(RankOut { model: weights(&out.model), ema: weights(&out.ema), resumed_from: out.resumed_from })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
    })
}

/// Two thread ranks sharing `dir` (as ranks share a checkpoint folder).
fn two_threads(dir: &Path, cfg: &TrainConfig) -> Vec<RankOut> {
    ranks(Collective::threads(2), &[dir, dir], cfg, &[5, 5]).into_iter().map(|r| r.expect("rank failed")).collect()
}

fn log_of(dir: &Path) -> Vec<StepLog> {
    read_log(&dir.join("loss.jsonl")).unwrap()
}

fn assert_logs_close(a: &[StepLog], b: &[StepLog]) {
    assert_eq!(a.len(), b.len(), "log lengths");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.step, y.step);
        for (what, p, q) in [("loss", x.loss, y.loss), ("mse", x.mse, y.mse), ("vb", x.vb, y.vb), ("grad_norm", x.grad_norm, y.grad_norm)] {
            assert!((p - q).abs() <= 1e-6, "step {} {what}: {p} vs {q}", x.step);
        }
        assert_eq!(x.clipped, y.clipped, "step {} clipped", x.step);
    }
}

/// Global batch 4 (grad_accum 2, clipping from step 2): two ranks of 2 clips reach the weights
/// and log of one rank of 4, both ranks hold the same bits, and only rank 0 writes files.
#[test]
fn data_parallel_two_thread_ranks_match_one_rank() {
    let cfg = TrainConfig { batch_size: 4, ..config(3) };
    let one = tempfile::tempdir().unwrap();
    let (w1, e1) = run(one.path(), &cfg).unwrap();

    let lead = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let outs: Vec<RankOut> =
        ranks(Collective::threads(2), &[lead.path(), other.path()], &cfg, &[5, 5]).into_iter().map(|r| r.expect("rank failed")).collect();
    assert_eq!(bits(&outs[0].model), bits(&outs[1].model), "the ranks' weights differ");
    assert_eq!(bits(&outs[0].ema), bits(&outs[1].ema), "the ranks' EMA weights differ");
    let init = weights(&Tiny::new(5, &Device::flex()));
    assert!(max_abs_diff(&w1, &init) > 1e-2, "training moved the weights");
    let d = max_abs_diff(&outs[0].model, &w1);
    assert!(d <= 1e-6, "two ranks vs one: max |Δw| = {d:e}");
    let d = max_abs_diff(&outs[0].ema, &e1);
    assert!(d <= 1e-6, "two ranks vs one: max |Δema| = {d:e}");
    // The tolerance tells a wrong split apart: one rank of only 2 clips per micro-batch.
    let half = tempfile::tempdir().unwrap();
    let (w_half, _) = run(half.path(), &TrainConfig { batch_size: 2, ..cfg.clone() }).unwrap();
    assert!(max_abs_diff(&w_half, &w1) > 1e-4, "batch 2 must train differently from batch 4");

    assert_logs_close(&log_of(lead.path()), &log_of(one.path()));
    assert_eq!(log_of(lead.path()).len(), 3);
    assert!(lead.path().join("loss.png").is_file());
    let steps: Vec<u64> = list_checkpoints(&lead.path().join("checkpoints")).unwrap().into_iter().map(|c| c.0).collect();
    assert_eq!(steps, vec![2, 3]);
    let written: Vec<_> = std::fs::read_dir(other.path()).unwrap().collect();
    assert!(written.is_empty(), "rank 1 wrote into its run folder: {written:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tcp_world(rank: usize, port: u16) -> World {
    World { rank, world_size: 2, local_rank: rank, master: Some(Master { addr: "127.0.0.1".into(), port }) }
}

/// The same two ranks talking over loopback TCP end with the bits of the in-process group.
#[test]
fn data_parallel_over_tcp_matches_threads() {
    let cfg = TrainConfig { batch_size: 4, ..config(3) };
    let threads = tempfile::tempdir().unwrap();
    let by_threads = two_threads(threads.path(), &cfg);

    let port = free_port();
    let options = TcpOptions { connect_timeout: Duration::from_secs(30), io_timeout: Duration::from_secs(60) };
    // Each rank connects on its own thread: rank 0 waits for rank 1 to join.
    let collectives: Vec<Collective> = std::thread::scope(|s| {
        let options = &options;
        let hs: Vec<_> = (0..2).map(|r| s.spawn(move || Collective::connect(&tcp_world(r, port), options))).collect();
        hs.into_iter().map(|h| h.join().unwrap().expect("connect")).collect()
    });
    assert!(matches!(collectives[0], Collective::Tcp(_)));
    assert_eq!((collectives[1].rank(), collectives[1].world_size()), (1, 2));
    let tcp = tempfile::tempdir().unwrap();
    let by_tcp: Vec<RankOut> =
        ranks(collectives, &[tcp.path(), tcp.path()], &cfg, &[5, 5]).into_iter().map(|r| r.expect("rank failed")).collect();
    for (r, out) in by_tcp.iter().enumerate() {
        assert_eq!(bits(&out.model), bits(&by_threads[0].model), "rank {r}: TCP and threads differ");
        assert_eq!(bits(&out.ema), bits(&by_threads[0].ema), "rank {r}: TCP and threads differ (EMA)");
    }
    let strip = |p: &Path| log_of(p).into_iter().map(|l| (l.step, l.loss.to_bits(), l.grad_norm.to_bits())).collect::<Vec<_>>();
    assert_eq!(strip(tcp.path()), strip(threads.path()));
}

/// A checkpoint of a one-rank run resumes with two ranks and vice versa; both end where one
/// rank training straight through ends.
#[test]
fn data_parallel_resumes_with_a_different_rank_count() {
    let cfg = |steps| TrainConfig { batch_size: 4, ..config(steps) };
    let straight = tempfile::tempdir().unwrap();
    let (w, e) = run(straight.path(), &cfg(4)).unwrap();

    let one_then_two = tempfile::tempdir().unwrap();
    let (w_half, _) = run(one_then_two.path(), &cfg(2)).unwrap();
    assert!(max_abs_diff(&w_half, &w) > 1e-3, "two steps must differ from four");
    let outs = two_threads(one_then_two.path(), &cfg(4));
    for (r, out) in outs.iter().enumerate() {
        assert_eq!(out.resumed_from, Some(2), "rank {r}");
        let d = max_abs_diff(&out.model, &w);
        assert!(d <= 1e-6, "1 → 2 ranks, rank {r}: max |Δw| = {d:e}");
        let d = max_abs_diff(&out.ema, &e);
        assert!(d <= 1e-6, "1 → 2 ranks, rank {r}: max |Δema| = {d:e}");
    }
    assert_logs_close(&log_of(one_then_two.path()), &log_of(straight.path()));

    let two_then_one = tempfile::tempdir().unwrap();
    two_threads(two_then_one.path(), &cfg(2));
    let (w2, e2) = run(two_then_one.path(), &cfg(4)).unwrap();
    let d = max_abs_diff(&w2, &w);
    assert!(d <= 1e-6, "2 → 1 rank: max |Δw| = {d:e}");
    let d = max_abs_diff(&e2, &e);
    assert!(d <= 1e-6, "2 → 1 rank: max |Δema| = {d:e}");
    assert_logs_close(&log_of(two_then_one.path()), &log_of(straight.path()));
    let steps: Vec<u64> = list_checkpoints(&two_then_one.path().join("checkpoints")).unwrap().into_iter().map(|c| c.0).collect();
    assert_eq!(steps, vec![2, 4]);
}

/// Ctrl-C reaching only rank 1 (after step 3, off the checkpoint schedule) stops both ranks
/// there; rank 0 writes the interrupt checkpoint, and one rank resumes from it to the weights
/// of a run never interrupted.
#[test]
fn data_parallel_stops_every_rank_when_one_is_interrupted() {
    let cfg = TrainConfig { batch_size: 4, ..config(5) };
    let straight = tempfile::tempdir().unwrap();
    let (w, _) = run(straight.path(), &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outs = ranks_stopping(Collective::threads(2), &[dir.path(), dir.path()], &cfg, &[5, 5], &[None, Some(3)]);
    for (r, out) in outs.into_iter().enumerate() {
        match out.err().expect("the run must stop") {
            TrainError::Interrupted { step: 3, checkpoint } => {
                assert!(checkpoint.ends_with("step-00000003") && checkpoint.join("model.bpk").is_file(), "rank {r}: {checkpoint:?}")
            }
            other => panic!("rank {r}: unexpected error {other}"),
        }
    }
    assert_eq!(log_of(dir.path()).len(), 3);
    let (w2, _) = run(dir.path(), &cfg).unwrap();
    let d = max_abs_diff(&w2, &w);
    assert!(d <= 1e-6, "interrupted on 2 ranks, resumed on 1: max |Δw| = {d:e}");
}

/// `train_on_devices` trains rank 0 and the other local ranks beside it, each in a one-thread
/// pool of its own (CPU ranks): two CPU "devices" with thread collectives reach the bits of two
/// thread ranks, with rank 0's `on_step` seeing every step on a thread of its pool.
#[test]
fn train_on_devices_runs_the_local_ranks_together() {
    let cfg = TrainConfig { batch_size: 4, ..config(3) };
    let reference = tempfile::tempdir().unwrap();
    let want = two_threads(reference.path(), &cfg);
    let dir = tempfile::tempdir().unwrap();
    let devices = [Device::flex(), Device::flex()];
    let build = |d: &Device| Ok::<_, TrainError>(Tiny::new(5, &d.clone().autodiff()));
    let model = build(&devices[0]).unwrap();
    let mut seen = Vec::new();
    let forward = |m: &Tiny, inp| m.forward(inp);
    let on_step = |l: &StepLog| seen.push((l.step, rayon::current_num_threads()));
    let paths = RunPaths::in_dir(dir.path());
    let trained =
        train_on_devices(model, build, &devices, Collective::threads(2), || clips(1), forward, &cfg, &paths, &meta(), Some(1), on_step);
    let trained = trained.unwrap();
    assert_eq!(bits(&weights(&trained.model)), bits(&want[0].model));
    assert_eq!(bits(&weights(&trained.ema)), bits(&want[0].ema));
    assert_eq!(seen, [(1, 1), (2, 1), (3, 1)]);
}

/// A rank whose model cannot be built fails the call, named, even when rank 0 got through
/// (here two independent single ranks, so that rank 0 does not wait for it).
#[test]
fn train_on_devices_names_a_rank_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let devices = [Device::flex(), Device::flex()];
    let model = Tiny::new(5, &Device::flex().autodiff());
    let build = |_: &Device| Err::<Tiny, _>(TrainError::Device("no such device".into()));
    let forward = |m: &Tiny, inp| m.forward(inp);
    let paths = RunPaths::in_dir(dir.path());
    let collectives = vec![Collective::Single, Collective::Single];
    let e = train_on_devices(model, build, &devices, collectives, || clips(1), forward, &config(1), &paths, &meta(), None, |_| {}).err();
    match e.expect("rank 1 failed") {
        TrainError::Rank { rank: 1, source } => assert_eq!(source.to_string(), "device: no such device"),
        other => panic!("unexpected error {other}"),
    }
}

fn world_from(vars: &[(&str, &str)]) -> Result<World, TrainError> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    World::from_vars(|name| vars.get(name).cloned())
}

fn env_var_of(err: TrainError) -> (&'static str, String) {
    let text = err.to_string();
    match err {
        TrainError::Env { var, .. } => (var, text),
        other => panic!("expected an environment error, got {other}"),
    }
}

#[test]
fn data_parallel_reads_the_launcher_environment() {
    assert_eq!(world_from(&[]).unwrap(), World::single());
    let full = [("RANK", "3"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node7"), ("MASTER_PORT", "29500")];
    assert_eq!(
        world_from(&full).unwrap(),
        World { rank: 3, world_size: 4, local_rank: 1, master: Some(Master { addr: "node7".into(), port: 29500 }) }
    );
    // One rank needs no master.
    assert_eq!(world_from(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap(), World::single());

    let with = |key: &str, value: Option<&str>| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = full.iter().filter(|(k, _)| *k != key).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(value) = value {
            v.push((key.to_string(), value.to_string()));
        }
        v
    };
    let cases: [(&str, Option<&str>, &str, &str); 10] = [
        ("RANK", Some("4"), "RANK", "below WORLD_SIZE = 4"),
        ("RANK", Some("two"), "RANK", "whole number"),
        ("RANK", Some("-1"), "RANK", "whole number"),
        ("WORLD_SIZE", Some("0"), "WORLD_SIZE", "at least 1"),
        ("WORLD_SIZE", None, "WORLD_SIZE", "set both"),
        ("LOCAL_RANK", None, "LOCAL_RANK", "is not set"),
        ("LOCAL_RANK", Some("4"), "LOCAL_RANK", "above RANK"),
        ("MASTER_ADDR", None, "MASTER_ADDR", "rank 0's machine"),
        ("MASTER_PORT", Some("70000"), "MASTER_PORT", "1 to 65535"),
        ("MASTER_PORT", None, "MASTER_PORT", "free TCP port"),
    ];
    for (key, value, var, says) in cases {
        let vars = with(key, value);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (got, text) = env_var_of(world_from(&vars).expect_err(&format!("{key} = {value:?} must be refused")));
        assert_eq!(got, var, "{text}");
        assert!(text.contains(says), "{key} = {value:?}: {text}");
    }
}

#[test]
fn data_parallel_refuses_a_batch_that_does_not_split_over_the_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { batch_size: 3, ..config(2) };
    for result in ranks(Collective::threads(2), &[dir.path(), dir.path()], &cfg, &[5, 5]) {
        match result.err().expect("batch 3 over 2 ranks must be refused") {
            TrainError::Config { key: "batch_size", reason } => assert!(reason.contains("multiple of 2"), "{reason}"),
            other => panic!("unexpected error {other}"),
        }
    }
    assert!(!dir.path().join("loss.jsonl").exists(), "nothing is written before the check");
}

/// Ranks built from different seeds would silently train apart: both are told at start.
#[test]
fn data_parallel_refuses_ranks_with_different_weights() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { batch_size: 4, ..config(2) };
    for (r, result) in ranks(Collective::threads(2), &[dir.path(), dir.path()], &cfg, &[5, 6]).into_iter().enumerate() {
        let err = result.err().expect("different weights must be refused");
        assert!(matches!(err, TrainError::Collective { .. }), "rank {r}: {err}");
        assert!(err.to_string().contains("rank 1") && err.to_string().contains("same seed"), "rank {r}: {err}");
    }
}

/// Sums are in rank order, the same bits everywhere; a rank that leaves makes the others' sum
/// fail rather than wait; a rank nobody answers times out naming the master.
#[test]
fn data_parallel_collectives_sum_in_rank_order_and_report_lost_peers() {
    let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
        let hs: Vec<_> = Collective::threads(3)
            .into_iter()
            .enumerate()
            .map(|(r, mut c)| {
                s.spawn(move || {
                    // (1 + 1e8) − 1e8 is 0 in f32; any other order gives 1.
                    let mut v = vec![[1.0f32, 1e8, -1e8][r], r as f32];
                    c.all_reduce_sum(&mut v).unwrap();
                    v
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in &sums {
        assert_eq!(bits(v), bits(&[0.0, 3.0]));
    }

    // Rank 2 leaves: rank 0 says who is gone, and rank 1, waiting for the sum, learns that
    // rank 0 is gone once it gives up.
    let mut group = Collective::threads(3).into_iter();
    let (mut hub, mut rank1) = (group.next().unwrap(), group.next().unwrap());
    drop(group);
    let waiting = std::thread::spawn(move || rank1.all_reduce_sum(&mut [1.0]));
    let err = hub.all_reduce_sum(&mut [1.0]).expect_err("a lost rank must fail the sum");
    assert!(err.to_string().contains("rank 2"), "{err}");
    drop(hub);
    let err = waiting.join().unwrap().expect_err("rank 0 left");
    assert!(err.to_string().contains("rank 0"), "{err}");

    let port = free_port();
    let started = std::time::Instant::now();
    let options = TcpOptions { connect_timeout: Duration::from_millis(300), io_timeout: Duration::from_secs(1) };
    let err = Collective::connect(&tcp_world(1, port), &options).err().expect("nobody listens");
    assert!(started.elapsed() < Duration::from_secs(10), "the connect timeout bounds the wait");
    assert!(err.to_string().contains(&format!("rank 0 at 127.0.0.1:{port}")), "{err}");
}

struct GradBits<'a>(&'a GradientsParams, Vec<Option<Vec<u32>>>);
impl ModuleVisitor for GradBits<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.1.push(self.0.get::<D>(p.id).map(|g| bits(&g.into_data().try_to_vec::<f32>().unwrap())));
    }
}

fn grad_bits<M: Module>(m: &M, g: &GradientsParams) -> Vec<Option<Vec<u32>>> {
    let mut v = GradBits(g, Vec::new());
    m.visit(&mut v);
    v.1
}

/// A tiny model's gradients of one unconditional clip (`value(i)` its i-th element) at
/// timestep `t`: every parameter has one but the class table.
fn unconditional_grads(value: impl Fn(usize) -> f32, t: i64) -> (Device, Tiny, GradientsParams) {
    let dev = Device::flex().autodiff();
    let model = Tiny::new(5, &dev);
    let values: Vec<f32> = (0..2 * C * HW * HW).map(value).collect();
    let x = Tensor::<5>::from_data(TensorData::new(values, [1, 2, C, HW, HW]), &dev);
    let t = Tensor::<1, Int>::from_data(TensorData::new(vec![t], [1]), &dev);
    let out = model.forward(ModelInput { x_t: x, t, y: None, y_image: None, image_frames: 0 });
    let grads = GradientsParams::from_grads(out.powi_scalar(2).sum().backward(), &model);
    (dev, model, grads)
}

/// Gradients survive the host buffer bit for bit; a parameter without a gradient (the class
/// table of an unconditional batch) stays without one.
#[test]
fn data_parallel_gradients_round_trip_through_a_host_buffer() {
    let (dev, model, grads) = unconditional_grads(|i| (i as f32 * 0.37).sin(), 500);
    let flat = grads_to_host(&model, &grads);
    let n_values = C * 2 * C + 2 * C + 2 * C + (common::CLASSES + 1) * 2 * C;
    assert_eq!(flat.len(), n_values + 4);
    assert_eq!(&flat[n_values..], &[1.0, 1.0, 1.0, 0.0], "presence: w, b, wt have gradients, emb not");
    let back = grads_from_host(&model, &flat, &grads, &dev.clone().inner()).unwrap();
    let before = grad_bits(&model, &grads);
    assert!(before[3].is_none() && before[0].is_some());
    assert_eq!(grad_bits(&model, &back), before);
    assert!(grads_from_host(&model, &flat[1..], &grads, &dev.inner()).is_err(), "a buffer of the wrong length is refused");
}

/// The device path's packing ([`sum_grads_with`], what NCCL sums between GPUs): the reduction
/// sees every gradient once, in order, and its result comes back to the right parameters; a
/// parameter no rank has a gradient for stays without one.
#[test]
fn data_parallel_gradients_round_trip_through_one_device_tensor() {
    let (dev, model, grads) = unconditional_grads(|i| (i as f32 * 0.37).cos(), 300);
    let counts = presence_flags(&model, &grads);
    assert_eq!(counts, [1.0, 1.0, 1.0, 0.0]);
    let inner = dev.clone().inner();
    let host = grads_to_host(&model, &grads);
    let same = sum_grads_with(&model, &grads, &counts, &inner, |flat| {
        assert_eq!(flat.dims(), [host.len() - counts.len()], "one tensor holding every parameter's values");
        flat
    })
    .unwrap();
    assert_eq!(grad_bits(&model, &same), grad_bits(&model, &grads));
    // a second rank's equal gradients: each parameter's sum is twice its own
    let doubled = sum_grads_with(&model, &grads, &counts.iter().map(|c| 2.0 * c).collect::<Vec<_>>(), &inner, |f| f.clone() + f).unwrap();
    let want = grads_from_host(&model, &host.iter().map(|v| 2.0 * v).collect::<Vec<_>>(), &grads, &inner).unwrap();
    assert_eq!(grad_bits(&model, &doubled), grad_bits(&model, &want));
    // a parameter only another rank has a gradient for gets this rank's zeros summed with it
    let mut with_emb = counts.clone();
    with_emb[3] = 1.0;
    let filled = sum_grads_with(&model, &grads, &with_emb, &inner, |f| f).unwrap();
    let emb = grad_bits(&model, &filled)[3].clone().expect("the class table now has a gradient");
    assert!(emb.iter().all(|&b| f32::from_bits(b) == 0.0), "zeros from this rank");
    assert!(sum_grads_with(&model, &grads, &counts[1..], &inner, |f| f).is_err(), "flags of another model are refused");
}
