//! Data parallelism: the group of ranks that train one model together.
//!
//! One process (or, in tests, one thread) per device, each holding a full copy of the model.
//! Every rank draws the same global micro-batches from the seeded data stream and keeps its
//! contiguous share of the clips; after the backward passes of a step the gradients are summed
//! over the ranks ([`Collective::all_reduce_sum`]), so every rank applies the identical update
//! and the weights stay identical without ever being sent.
//!
//! The ranks are described by a [`World`] (torchrun's `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`) and talk through a [`Collective`]:
//!
//! * [`Collective::Single`]: one rank, nothing to talk to.
//! * [`Collective::Threads`]: ranks that are threads of one process ([`Collective::threads`]).
//! * [`Collective::Tcp`]: ranks that are processes, on one machine or many: rank 0 listens on
//!   `MASTER_ADDR:MASTER_PORT`, the others connect to it ([`Collective::connect`]).
//! * [`Collective::Devices`]: ranks that are threads of one process, one per GPU, whose
//!   gradients are summed on the GPUs by burn's collective all-reduce (`burn::tensor::
//!   distributed`: NCCL on CUDA) in one call per step ([`Collective::on_devices`]); the few
//!   host values (loss terms, votes) still go through the threads.
//!
//! Threads and Tcp sum in rank order on rank 0 (`((g₀ + g₁) + g₂) + …`) and hand every rank
//! the same bits, so they give bit-identical training; they move the gradients through host
//! memory, which works for any device. Devices is the fast path between local GPUs: NCCL's
//! ring sums in its own order (equal on every rank, equal to the host sum up to rounding).
//! Across machines the gradients go over TCP: burn's collectives join the devices of one
//! process only.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, FloatDType, Shape, Tensor, TensorData};
use crossbeam_channel::{unbounded, Receiver, Sender};

use latte_nn::device::{DeviceKind, DeviceSpec};

use crate::TrainError;

/// Where this process stands in the group: torchrun's view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    /// This process's index in the group, `0..world_size`; rank 0 writes logs and checkpoints.
    pub rank: usize,
    /// How many processes train together.
    pub world_size: usize,
    /// This process's index among those on its machine: the GPU it should use.
    pub local_rank: usize,
    /// Rank 0's address, where the others connect; `None` for a single rank.
    pub master: Option<Master>,
}

/// `MASTER_ADDR:MASTER_PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Master {
    /// Host name or IP address of rank 0's machine.
    pub addr: String,
    pub port: u16,
}

impl World {
    /// One process training alone.
    pub fn single() -> Self {
        Self { rank: 0, world_size: 1, local_rank: 0, master: None }
    }

    /// The world torchrun (or any launcher setting the same variables) describes: `RANK`,
    /// `WORLD_SIZE`, `LOCAL_RANK`, and `MASTER_ADDR`/`MASTER_PORT` when there is more than one
    /// rank. Without `RANK` and `WORLD_SIZE` the process trains alone.
    pub fn from_env() -> Result<Self, TrainError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`World::from_env`] reading the variables through `var` (tests, config files).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, TrainError> {
        let rank = var("RANK");
        let world_size = var("WORLD_SIZE");
        let (rank, world_size) = match (rank, world_size) {
            (None, None) => return Ok(Self::single()),
            (Some(_), None) => return Err(env_err("WORLD_SIZE", None, "is not set but RANK is: set both (torchrun sets all of them)")),
            (None, Some(_)) => return Err(env_err("RANK", None, "is not set but WORLD_SIZE is: set both (torchrun sets all of them)")),
            (Some(r), Some(w)) => (number("RANK", &r)?, number("WORLD_SIZE", &w)?),
        };
        if world_size == 0 {
            return Err(env_err("WORLD_SIZE", Some("0".into()), "must be at least 1"));
        }
        if rank >= world_size {
            return Err(env_err("RANK", Some(rank.to_string()), &format!("must be below WORLD_SIZE = {world_size} (ranks count from 0)")));
        }
        if world_size == 1 {
            let local_rank = match var("LOCAL_RANK") {
                Some(v) => number("LOCAL_RANK", &v)?,
                None => 0,
            };
            return Ok(Self { rank, world_size, local_rank, master: None });
        }
        let local_rank = match var("LOCAL_RANK") {
            Some(v) => number("LOCAL_RANK", &v)?,
            None => {
                return Err(env_err(
                    "LOCAL_RANK",
                    None,
                    "is not set: set it to this process's index among the ranks on its machine (its GPU)",
                ))
            }
        };
        if local_rank > rank {
            return Err(env_err(
                "LOCAL_RANK",
                Some(local_rank.to_string()),
                &format!("is above RANK = {rank}; a rank's index on its machine cannot exceed its global index"),
            ));
        }
        let addr = match var("MASTER_ADDR") {
            Some(a) if !a.trim().is_empty() => a.trim().to_owned(),
            value => {
                return Err(env_err(
                    "MASTER_ADDR",
                    value,
                    &format!("must name rank 0's machine (host name or IP) when WORLD_SIZE = {world_size}"),
                ))
            }
        };
        let port = match var("MASTER_PORT") {
            None => {
                return Err(env_err(
                    "MASTER_PORT",
                    None,
                    &format!("must be set to a free TCP port on rank 0's machine when WORLD_SIZE = {world_size}"),
                ))
            }
            Some(p) => match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(env_err("MASTER_PORT", Some(p), "must be a TCP port number, 1 to 65535")),
            },
        };
        Ok(Self { rank, world_size, local_rank, master: Some(Master { addr, port }) })
    }
}

fn env_err(var: &'static str, value: Option<String>, reason: &str) -> TrainError {
    TrainError::Env { var, value, reason: reason.to_owned() }
}

fn number(var: &'static str, value: &str) -> Result<usize, TrainError> {
    value.trim().parse().map_err(|_| env_err(var, Some(value.to_owned()), "must be a whole number ≥ 0"))
}

/// How long a TCP group waits.
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// How long the ranks keep trying to reach each other at start (rank 0 waits for the
    /// others to connect; the others retry connecting to rank 0).
    pub connect_timeout: Duration,
    /// How long a rank waits for a peer's data during training before giving up on it; must
    /// cover the slowest rank's step, rank 0's checkpoint writes, and rank 0 receiving the
    /// gradients of the ranks before this one.
    pub io_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(300), io_timeout: Duration::from_secs(1800) }
    }
}

/// How the ranks of a group sum their gradients.
pub enum Collective {
    /// One rank: the sum is the rank's own.
    Single,
    /// Ranks that are threads of one process.
    Threads(ThreadRank),
    /// Ranks that are processes connected over TCP.
    Tcp(TcpRank),
    /// Ranks that are threads of one process, one per device, summing gradients on the devices.
    Devices(DeviceRank),
}

impl Collective {
    /// An in-process group of `n` ranks, one per thread: element `r` is rank `r`. Move each to
    /// its own thread; a rank that ends (or panics) makes the others' next sum fail instead of
    /// waiting forever.
    pub fn threads(n: usize) -> Vec<Collective> {
        if n <= 1 {
            return vec![Collective::Single];
        }
        let (mut up_rx, mut down_tx, mut leaves) = (Vec::new(), Vec::new(), Vec::new());
        for rank in 1..n {
            let (up, up_r) = unbounded();
            let (down, down_r) = unbounded();
            up_rx.push(up_r);
            down_tx.push(down);
            leaves.push(Collective::Threads(ThreadRank { rank, world_size: n, link: ThreadLink::Leaf { up, down: down_r } }));
        }
        let hub = Collective::Threads(ThreadRank { rank: 0, world_size: n, link: ThreadLink::Hub { up: up_rx, down: down_tx } });
        std::iter::once(hub).chain(leaves).collect()
    }

    /// An in-process group with one rank per device of `devices` (element `r` is rank `r`, to
    /// train on `devices[r]`) whose gradients are all-reduced on the devices by burn's
    /// collective (NCCL on CUDA; the backend must support collectives: CUDA does, the CPU and
    /// wgpu do not). One device is [`Collective::Single`].
    pub fn on_devices(devices: Vec<Device>) -> Vec<Collective> {
        let n = devices.len();
        Collective::threads(n)
            .into_iter()
            .map(|c| match c {
                Collective::Threads(threads) => Collective::Devices(DeviceRank { threads, devices: devices.clone() }),
                single => single,
            })
            .collect()
    }

    /// The devices this process trains on, one collective each, for the device name `spec`.
    /// Several local GPUs (`cuda`, `cuda:0,1`) are one in-process group, a thread each, summing
    /// gradients on the GPUs (NCCL) where the backend can and through host memory otherwise
    /// (`log` says so). Under a torchrun-style launch (`world` of more than one rank) this
    /// process is one rank of a group over TCP on one device: `cuda` means GPU `local_rank`.
    pub fn for_devices(spec: &DeviceSpec, world: &World, log: impl Fn(&str)) -> Result<(Vec<Device>, Vec<Collective>), TrainError> {
        if world.world_size > 1 {
            let spec = match spec {
                DeviceSpec { kind: DeviceKind::Cuda, ordinals: None } => {
                    DeviceSpec { kind: DeviceKind::Cuda, ordinals: Some(vec![world.local_rank]) }
                }
                other => other.clone(),
            };
            let device = spec.open_one().map_err(|e| TrainError::Device(format!("rank {} of {}: {e}", world.rank, world.world_size)))?;
            let collective = Collective::connect(world, &TcpOptions::default())?;
            return Ok((vec![device], vec![collective]));
        }
        let devices = spec.open().map_err(|e| TrainError::Device(e.to_string()))?;
        if devices.len() == 1 {
            return Ok((devices, vec![Collective::Single]));
        }
        let collectives = match latte_nn::device::device_collectives(spec.kind) {
            Ok(()) => Collective::on_devices(devices.clone()),
            Err(why) => {
                log(&format!("{why}; summing the {} GPUs' gradients through host memory (slower)", devices.len()));
                Collective::threads(devices.len())
            }
        };
        Ok((devices, collectives))
    }

    /// The devices whose gradients this rank sums on the devices ([`Collective::Devices`]);
    /// `None` when gradients go through host memory.
    pub fn device_group(&self) -> Option<&[Device]> {
        match self {
            Collective::Devices(d) => Some(&d.devices),
            _ => None,
        }
    }

    /// The group `world` describes: [`Collective::Single`] for one rank, else this process's
    /// end of a TCP group (rank 0 listens on the master address; the others connect to it).
    /// Returns once every rank has joined.
    pub fn connect(world: &World, options: &TcpOptions) -> Result<Collective, TrainError> {
        if world.world_size <= 1 {
            return Ok(Collective::Single);
        }
        let master = world
            .master
            .as_ref()
            .ok_or_else(|| env_err("MASTER_ADDR", None, &format!("must name rank 0's machine when WORLD_SIZE = {}", world.world_size)))?;
        TcpRank::connect(world.rank, world.world_size, master, options).map(Collective::Tcp)
    }

    pub fn rank(&self) -> usize {
        match self {
            Collective::Single => 0,
            Collective::Threads(t) => t.rank,
            Collective::Tcp(t) => t.rank,
            Collective::Devices(d) => d.threads.rank,
        }
    }

    pub fn world_size(&self) -> usize {
        match self {
            Collective::Single => 1,
            Collective::Threads(t) => t.world_size,
            Collective::Tcp(t) => t.world_size,
            Collective::Devices(d) => d.threads.world_size,
        }
    }

    /// Replaces `values` by their element-wise sum over all ranks, added in rank order, the
    /// same bits on every rank. Every rank must call it the same number of times with the same
    /// length; a length mismatch or a rank that left is an error on the ranks that notice it.
    pub fn all_reduce_sum(&mut self, values: &mut [f32]) -> Result<(), TrainError> {
        match self {
            Collective::Single => Ok(()),
            Collective::Threads(t) | Collective::Devices(DeviceRank { threads: t, .. }) => t.all_reduce_sum(values),
            Collective::Tcp(t) => t.all_reduce_sum(values),
        }
    }
}

/// One rank of an in-process group on several devices ([`Collective::on_devices`]).
pub struct DeviceRank {
    /// The host values' path.
    threads: ThreadRank,
    /// Every rank's device, in rank order.
    devices: Vec<Device>,
}

/// One rank of an in-process group ([`Collective::threads`]).
pub struct ThreadRank {
    rank: usize,
    world_size: usize,
    link: ThreadLink,
}

enum ThreadLink {
    /// Rank 0: `up[r - 1]` receives rank r's values, `down[r - 1]` sends it the sum.
    Hub {
        up: Vec<Receiver<Vec<f32>>>,
        down: Vec<Sender<Vec<f32>>>,
    },
    Leaf {
        up: Sender<Vec<f32>>,
        down: Receiver<Vec<f32>>,
    },
}

const GONE: &str = "the rank stopped (see its own error); every rank must run the same steps";

impl ThreadRank {
    fn all_reduce_sum(&mut self, values: &mut [f32]) -> Result<(), TrainError> {
        let peer = |r: usize| format!("rank {r} (thread)");
        match &self.link {
            ThreadLink::Hub { up, down } => {
                for (i, rx) in up.iter().enumerate() {
                    let other = rx.recv().map_err(|_| collective_err(peer(i + 1), GONE))?;
                    check_len(&peer(i + 1), other.len(), values.len())?;
                    add(values, &other);
                }
                for (i, tx) in down.iter().enumerate() {
                    tx.send(values.to_vec()).map_err(|_| collective_err(peer(i + 1), GONE))?;
                }
            }
            ThreadLink::Leaf { up, down } => {
                up.send(values.to_vec()).map_err(|_| collective_err(peer(0), GONE))?;
                let sum = down.recv().map_err(|_| collective_err(peer(0), GONE))?;
                check_len(&peer(0), sum.len(), values.len())?;
                values.copy_from_slice(&sum);
            }
        }
        Ok(())
    }
}

fn add(acc: &mut [f32], other: &[f32]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a += *b;
    }
}

fn check_len(peer: &str, theirs: usize, ours: usize) -> Result<(), TrainError> {
    if theirs != ours {
        return Err(collective_err(
            peer.to_owned(),
            &format!(
                "sent {theirs} values where this rank has {ours}: every rank must build the same model with the \
                 same training config"
            ),
        ));
    }
    Ok(())
}

fn collective_err(peer: String, message: &str) -> TrainError {
    TrainError::Collective { peer, message: message.to_owned() }
}

/// One rank of a TCP group ([`Collective::connect`]).
pub struct TcpRank {
    rank: usize,
    world_size: usize,
    /// Rank 0: ranks 1.. in order; the others: rank 0 alone.
    peers: Vec<Peer>,
    /// Bytes in flight (at most one chunk), kept from step to step.
    scratch: Vec<u8>,
}

/// A peer's rank before its handshake told it.
const UNKNOWN: usize = usize::MAX;

struct Peer {
    rank: usize,
    addr: SocketAddr,
    stream: TcpStream,
}

impl Peer {
    fn name(&self) -> String {
        match self.rank {
            UNKNOWN => format!("a client at {}", self.addr),
            rank => format!("rank {rank} at {}", self.addr),
        }
    }

    fn err(&self, what: &str, e: std::io::Error, timeout: Duration) -> TrainError {
        let message = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
                "no progress {what} for {} s: the rank hangs or is far slower than this one (raise the I/O timeout \
                 if its steps or rank 0's checkpoints take that long)",
                timeout.as_secs()
            ),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
                format!("connection closed {what}: {GONE}")
            }
            _ => format!("{what}: {e}"),
        };
        TrainError::Collective { peer: self.name(), message }
    }
}

/// The handshake: magic, rank, world size.
const MAGIC: &[u8; 8] = b"LATTEDP1";
/// Values per read or write: bounds the scratch buffer whatever the model size.
const CHUNK: usize = 1 << 18;

impl TcpRank {
    fn connect(rank: usize, world_size: usize, master: &Master, options: &TcpOptions) -> Result<Self, TrainError> {
        let deadline = Instant::now() + options.connect_timeout;
        let master_name = format!("rank 0 at {}:{}", master.addr, master.port);
        let mut peers = Vec::new();
        if rank == 0 {
            let listener = bind(master, &master_name)?;
            let mut slots: Vec<Option<Peer>> = (1..world_size).map(|_| None).collect();
            while slots.iter().any(Option::is_none) {
                let (stream, addr) = accept_until(&listener, deadline, &slots, options)?;
                let mut peer = Peer { rank: UNKNOWN, addr, stream };
                let who = || format!("a client at {addr}");
                prepare(&peer.stream, options.connect_timeout)
                    .map_err(|e| peer.err("setting up the socket", e, options.connect_timeout))?;
                let mut hello = [0u8; 16];
                peer.stream.read_exact(&mut hello).map_err(|e| peer.err("during the handshake", e, options.connect_timeout))?;
                let (their_rank, their_world) = parse_hello(&hello).ok_or_else(|| {
                    collective_err(who(), "is not a latte-train rank (wrong handshake); is MASTER_PORT used by another program?")
                })?;
                if their_world != world_size {
                    return Err(collective_err(
                        who(),
                        &format!("says WORLD_SIZE = {their_world}, rank 0 has {world_size}: launch every rank with the same WORLD_SIZE"),
                    ));
                }
                if their_rank == 0 || their_rank >= world_size {
                    return Err(collective_err(who(), &format!("says RANK = {their_rank}, which is not in 1..{world_size}")));
                }
                if slots[their_rank - 1].is_some() {
                    return Err(collective_err(
                        who(),
                        &format!("says RANK = {their_rank}, which another process already has: give every rank its own RANK"),
                    ));
                }
                peer.rank = their_rank;
                slots[their_rank - 1] = Some(peer);
            }
            for peer in slots.iter_mut().flatten() {
                let ack = hello(0, world_size);
                peer.stream.write_all(&ack).map_err(|e| peer.err("during the handshake", e, options.connect_timeout))?;
            }
            peers = slots.into_iter().flatten().collect();
        } else {
            let mut peer = connect_until(master, &master_name, deadline)?;
            prepare(&peer.stream, options.connect_timeout).map_err(|e| peer.err("setting up the socket", e, options.connect_timeout))?;
            peer.stream.write_all(&hello(rank, world_size)).map_err(|e| peer.err("during the handshake", e, options.connect_timeout))?;
            let mut ack = [0u8; 16];
            peer.stream
                .read_exact(&mut ack)
                .map_err(|e| peer.err("during the handshake (rank 0 refused this rank: see its error)", e, options.connect_timeout))?;
            if parse_hello(&ack) != Some((0, world_size)) {
                return Err(collective_err(peer.name(), "answered with a wrong handshake; is MASTER_PORT used by another program?"));
            }
            peers.push(peer);
        }
        for peer in &peers {
            prepare(&peer.stream, options.io_timeout).map_err(|e| peer.err("setting up the socket", e, options.io_timeout))?;
        }
        Ok(Self { rank, world_size, peers, scratch: Vec::new() })
    }

    fn all_reduce_sum(&mut self, values: &mut [f32]) -> Result<(), TrainError> {
        let Self { rank, peers, scratch, .. } = self;
        let n = values.len();
        if *rank == 0 {
            for peer in peers.iter_mut() {
                let len = read_len(peer)?;
                check_len(&peer.name(), len, n)?;
                read_values(peer, scratch, n, |at, chunk| add(&mut values[at..at + chunk.len()], chunk))?;
            }
            for peer in peers.iter_mut() {
                write_values(peer, scratch, values)?;
            }
        } else {
            let peer = &mut peers[0];
            write_values(peer, scratch, values)?;
            let len = read_len(peer)?;
            check_len(&peer.name(), len, n)?;
            read_values(peer, scratch, n, |at, chunk| values[at..at + chunk.len()].copy_from_slice(chunk))?;
        }
        Ok(())
    }
}

fn hello(rank: usize, world_size: usize) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&(rank as u32).to_le_bytes());
    h[12..].copy_from_slice(&(world_size as u32).to_le_bytes());
    h
}

fn parse_hello(h: &[u8; 16]) -> Option<(usize, usize)> {
    if &h[..8] != MAGIC {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as usize;
    Some((word(8), word(12)))
}

fn prepare(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    let timeout = Some(timeout.max(Duration::from_millis(1)));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)
}

/// Rank 0's listening socket. A loopback master address binds loopback only; any other binds
/// every interface on the port, as torchrun's store does, since a host name often resolves to
/// an address other than the one the other machines reach.
fn bind(master: &Master, name: &str) -> Result<TcpListener, TrainError> {
    let resolved = resolve(master).map_err(|e| collective_err(name.to_owned(), &format!("cannot resolve MASTER_ADDR: {e}")))?;
    let ip = match resolved.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let listener = TcpListener::bind((ip, master.port))
        .map_err(|e| collective_err(name.to_owned(), &format!("cannot listen on {ip}:{}: {e} (pick a free MASTER_PORT)", master.port)))?;
    listener.set_nonblocking(true).map_err(|e| collective_err(name.to_owned(), &format!("cannot poll the listening socket: {e}")))?;
    Ok(listener)
}

fn resolve(master: &Master) -> std::io::Result<SocketAddr> {
    (master.addr.as_str(), master.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "the name has no address"))
}

fn accept_until(
    listener: &TcpListener,
    deadline: Instant,
    slots: &[Option<Peer>],
    options: &TcpOptions,
) -> Result<(TcpStream, SocketAddr), TrainError> {
    loop {
        match listener.accept() {
            Ok(conn) => return Ok(conn),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(collective_err("rank 0 (listening)".into(), &format!("accepting a connection: {e}"))),
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = slots.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| (i + 1).to_string()).collect();
            return Err(collective_err(
                format!("rank(s) {}", missing.join(", ")),
                &format!(
                    "did not connect to rank 0 within {} s: start every rank with the same MASTER_ADDR/MASTER_PORT, \
                     and check that the port is reachable from their machines",
                    options.connect_timeout.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect_until(master: &Master, name: &str, deadline: Instant) -> Result<Peer, TrainError> {
    let mut last: String;
    loop {
        match resolve(master) {
            Ok(addr) => {
                let left = deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(10), Duration::from_secs(5));
                match TcpStream::connect_timeout(&addr, left) {
                    Ok(stream) => return Ok(Peer { rank: 0, addr, stream }),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = format!("cannot resolve MASTER_ADDR: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(collective_err(
                name.to_owned(),
                &format!(
                    "could not connect before the timeout ({last}): start rank 0, and check MASTER_ADDR/MASTER_PORT \
                     name its machine and a port reachable from here"
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_len(peer: &mut Peer) -> Result<usize, TrainError> {
    let mut len = [0u8; 8];
    let timeout = peer.stream.read_timeout().ok().flatten().unwrap_or_default();
    peer.stream.read_exact(&mut len).map_err(|e| peer.err("waiting for the values", e, timeout))?;
    Ok(u64::from_le_bytes(len) as usize)
}

/// Reads `total` values of the peer chunk by chunk, handing each with its offset to `take`.
fn read_values(peer: &mut Peer, scratch: &mut Vec<u8>, total: usize, mut take: impl FnMut(usize, &[f32])) -> Result<(), TrainError> {
    let timeout = peer.stream.read_timeout().ok().flatten().unwrap_or_default();
    let mut floats = Vec::with_capacity(CHUNK.min(total));
    let mut at = 0;
    while at < total {
        let n = CHUNK.min(total - at);
        scratch.resize(n * 4, 0);
        peer.stream.read_exact(scratch).map_err(|e| peer.err("receiving the values", e, timeout))?;
        floats.clear();
        floats.extend(scratch.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        take(at, &floats);
        at += n;
    }
    Ok(())
}

fn write_values(peer: &mut Peer, scratch: &mut Vec<u8>, values: &[f32]) -> Result<(), TrainError> {
    let timeout = peer.stream.write_timeout().ok().flatten().unwrap_or_default();
    peer.stream.write_all(&(values.len() as u64).to_le_bytes()).map_err(|e| peer.err("sending the values", e, timeout))?;
    for chunk in values.chunks(CHUNK) {
        scratch.clear();
        scratch.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
        peer.stream.write_all(scratch).map_err(|e| peer.err("sending the values", e, timeout))?;
    }
    Ok(())
}

/// Runs the ranks of an in-process group side by side: rank 0 as `lead` on the calling thread,
/// ranks 1.. as `other(rank, collective)` (a copy each) on threads of their own; with `threads`, every rank
/// in a rayon pool of that many threads of its own (CPU ranks sharing the cores). Returns
/// rank 0's result unless it succeeded while another rank failed: then `failed(rank, error)`
/// of the first such rank. When the group breaks up under rank 0, its own error says more
/// than the others' lost-peer errors. A rank's panic goes on unwinding here.
pub fn run_ranks<R: Send, E: Send, O: Send>(
    mut collectives: Vec<Collective>,
    threads: Option<usize>,
    lead: impl FnOnce(Collective) -> Result<R, E> + Send,
    other: impl Fn(usize, Collective) -> Result<(), O> + Clone + Send,
    failed: impl Fn(usize, O) -> E,
) -> Result<R, E> {
    if collectives.is_empty() {
        collectives.push(Collective::Single);
    }
    let first = collectives.remove(0);
    std::thread::scope(|scope| {
        let others: Vec<_> = collectives
            .into_iter()
            .enumerate()
            .map(|(i, collective)| {
                let other = other.clone();
                scope.spawn(move || latte_nn::threads::on_threads(threads, move || other(i + 1, collective)))
            })
            .collect();
        let result = latte_nn::threads::on_threads(threads, move || lead(first));
        for (i, handle) in others.into_iter().enumerate() {
            match handle.join() {
                Ok(Err(e)) if result.is_ok() => return Err(failed(i + 1, e)),
                Ok(_) => {}
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        result
    })
}

/// Every float parameter of a module in visiting order: what a flat gradient buffer holds.
struct Layout {
    params: Vec<(ParamId, Shape)>,
}

impl ModuleVisitor for Layout {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // The lazy shape: a parameter that never ran must not be initialised just to be skipped.
        self.params.push((param.id, param.lazy_shape()));
    }
}

fn layout<M: Module>(model: &M) -> Layout {
    let mut l = Layout { params: Vec::new() };
    model.visit(&mut l);
    l
}

struct Gather<'a> {
    grads: &'a GradientsParams,
    /// Per parameter: its gradient, flattened to f32, if it has one.
    parts: Vec<(usize, Option<Tensor<1>>)>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.lazy_shape().num_elements();
        let g = self.grads.get::<D>(param.id).map(|g| g.reshape([n]).cast(FloatDType::F32));
        self.parts.push((n, g));
    }
}

/// `grads` as one host buffer in `model`'s parameter order: each float parameter's gradient
/// (zeros where it has none), then one value per parameter, 1 if it has a gradient and 0 if
/// not. Summed over ranks, the counts tell which parameters got a gradient on any rank, so a
/// parameter frozen everywhere stays without one (no weight decay, no moment update).
/// One device-to-host copy.
pub fn grads_to_host<M: Module>(model: &M, grads: &GradientsParams) -> Vec<f32> {
    let g = gather(model, grads);
    let present: Vec<Tensor<1>> = g.parts.iter().filter_map(|(_, t)| t.clone()).collect();
    let host: Vec<f32> = if present.is_empty() {
        Vec::new()
    } else {
        Tensor::cat(present, 0).into_data().convert::<f32>().try_into_vec::<f32>().expect("converted to f32")
    };
    let total: usize = g.parts.iter().map(|(n, _)| n).sum();
    let mut flat = Vec::with_capacity(total + g.parts.len());
    let mut at = 0;
    for (n, t) in &g.parts {
        if t.is_some() {
            flat.extend_from_slice(&host[at..at + n]);
            at += n;
        } else {
            flat.resize(flat.len() + n, 0.0);
        }
    }
    flat.extend(g.parts.iter().map(|(_, t)| if t.is_some() { 1.0 } else { 0.0 }));
    flat
}

/// The [`grads_to_host`] tail alone: per parameter, 1 if `grads` has its gradient, else 0.
pub fn presence_flags<M: Module>(model: &M, grads: &GradientsParams) -> Vec<f32> {
    struct Flags<'a> {
        grads: &'a GradientsParams,
        flags: Vec<f32>,
    }
    impl ModuleVisitor for Flags<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.flags.push(if self.grads.get::<D>(param.id).is_some() { 1.0 } else { 0.0 });
        }
    }
    let mut f = Flags { grads, flags: Vec::new() };
    model.visit(&mut f);
    f.flags
}

fn gather<'a, M: Module>(model: &M, grads: &'a GradientsParams) -> Gather<'a> {
    let mut g = Gather { grads, parts: Vec::new() };
    model.visit(&mut g);
    g
}

/// `grads` summed over the ranks of a [`Collective::Devices`] group on the devices, by one
/// all-reduce of burn's collectives (NCCL on CUDA): [`sum_grads_with`] with that reduction.
/// Every rank calls it at the same point of each step.
pub fn all_reduce_grads_on_devices<M: Module>(
    model: &M,
    grads: &GradientsParams,
    counts: &[f32],
    devices: &[Device],
    device: &Device,
) -> Result<GradientsParams, TrainError> {
    use burn::tensor::distributed::{all_reduce, ReduceOperation};
    sum_grads_with(model, grads, counts, device, |flat| all_reduce(flat, ReduceOperation::Sum, devices.to_vec()).resolve())
}

/// `grads` put through `reduce` as one f32 tensor on `device`: every gradient flattened and
/// concatenated in `model`'s parameter order, zeros where this rank has none, then split back
/// into gradients of each parameter's dtype. `counts` is the [`presence_flags`] summed over
/// the ranks: a parameter no rank has a gradient for stays without one (no weight decay, no
/// moment update), as in [`grads_from_host`].
pub fn sum_grads_with<M: Module>(
    model: &M,
    grads: &GradientsParams,
    counts: &[f32],
    device: &Device,
    reduce: impl FnOnce(Tensor<1>) -> Tensor<1>,
) -> Result<GradientsParams, TrainError> {
    let g = gather(model, grads);
    if counts.len() != g.parts.len() {
        return Err(layout_mismatch(counts.len(), g.parts.len()));
    }
    let parts: Vec<Tensor<1>> = g.parts.into_iter().map(|(n, t)| t.unwrap_or_else(|| Tensor::zeros([n], device))).collect();
    let summed = reduce(Tensor::cat(parts, 0));
    let mut out = Place { all: summed, counts, like: grads, out: GradientsParams::new(), at: 0, index: 0 };
    model.visit(&mut out);
    Ok(out.out)
}

fn layout_mismatch(got: usize, params: usize) -> TrainError {
    TrainError::Collective {
        peer: "this rank".into(),
        message: format!("{got} gradient flags for a model of {params} parameters: every rank must build the same model"),
    }
}

/// The gradients in a [`grads_to_host`] buffer (summed over ranks or not), as tensors on
/// `device` (the gradients' device: the model's without autodiff), `dtype` per parameter as
/// `like` has them (f32 where `like` has none). One host-to-device copy.
pub fn grads_from_host<M: Module>(model: &M, flat: &[f32], like: &GradientsParams, device: &Device) -> Result<GradientsParams, TrainError> {
    let l = layout(model);
    let total: usize = l.params.iter().map(|(_, s)| s.num_elements()).sum();
    if flat.len() != total + l.params.len() {
        return Err(TrainError::Collective {
            peer: "this rank".into(),
            message: format!(
                "a gradient buffer of {} values does not fit the model's {} parameters ({total} values): \
                 every rank must build the same model",
                flat.len(),
                l.params.len()
            ),
        });
    }
    let all = Tensor::<1>::from_data(TensorData::new(flat[..total].to_vec(), [total]), device);
    let mut out = Place { all, counts: &flat[total..], like, out: GradientsParams::new(), at: 0, index: 0 };
    model.visit(&mut out);
    Ok(out.out)
}

struct Place<'a> {
    all: Tensor<1>,
    counts: &'a [f32],
    like: &'a GradientsParams,
    out: GradientsParams,
    at: usize,
    index: usize,
}

impl ModuleVisitor for Place<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.lazy_shape();
        let n = shape.num_elements();
        let (at, index) = (self.at, self.index);
        self.at += n;
        self.index += 1;
        if self.counts[index] > 0.0 {
            let g: Tensor<D> = self.all.clone().slice(at..at + n).reshape(shape);
            let dtype: DType = self.like.get::<D>(param.id).map_or(DType::F32, |t| t.dtype());
            self.out.register(param.id, g.cast(dtype));
        }
    }
}

/// Every rank's `value`, in rank order (a sum where each rank fills only its own slots, in
/// 16-bit pieces that f32 holds exactly).
pub(crate) fn all_gather_u64(c: &mut Collective, value: u64) -> Result<Vec<u64>, TrainError> {
    let (rank, n) = (c.rank(), c.world_size());
    let mut slots = vec![0f32; 4 * n];
    for k in 0..4 {
        slots[4 * rank + k] = ((value >> (16 * k)) & 0xffff) as f32;
    }
    c.all_reduce_sum(&mut slots)?;
    Ok((0..n).map(|r| (0..4).map(|k| (slots[4 * r + k] as u64) << (16 * k)).sum()).collect())
}

/// FNV-1a over the bits of `model`'s float parameters: equal weights, equal fingerprints.
pub(crate) fn fingerprint<M: Module>(model: &M) -> u64 {
    struct Hash(u64);
    impl ModuleVisitor for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v = param.val();
            let v = if v.is_autodiff() { v.inner() } else { v };
            for byte in v.into_data().into_bytes().iter() {
                self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Hash(0xcbf2_9ce4_8422_2325);
    model.visit(&mut h);
    h.0
}
