//! Progress display: a bar per running stage (with ETA) and an overall line on a terminal;
//! plain, greppable log lines when stdout is not a terminal (CI, pipes).

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use latte_engine::{JobInfo, Observer, Progress};

pub struct Bars {
    /// `None` when stdout is not a terminal.
    multi: Option<MultiProgress>,
    overall: ProgressBar,
}

impl Bars {
    pub fn new() -> Self {
        let multi = std::io::stdout().is_terminal().then(MultiProgress::new);
        let overall = match &multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new(0));
                bar.set_style(style("{prefix:.bold} [{elapsed_precise}] {pos}/{len} stages {msg}"));
                bar.set_prefix("overall");
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
            None => ProgressBar::hidden(),
        };
        Bars { multi, overall }
    }

    pub fn clear(&self) {
        self.overall.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

impl Observer for Bars {
    fn begin(&self, total: usize) {
        self.overall.set_length(total as u64);
        if self.multi.is_none() && total > 0 {
            println!("{total} stage(s) to run");
        }
    }

    fn start(&self, job: &JobInfo) -> Box<dyn Progress> {
        let prefix = format!("{} ({}, {} thr)", job.name, job.kind, job.threads);
        match &self.multi {
            Some(m) => {
                let bar = m.insert_before(&self.overall, ProgressBar::new(0));
                bar.set_style(style("{prefix:>24} {spinner} {elapsed:>5} {msg}"));
                bar.set_prefix(prefix);
                bar.enable_steady_tick(Duration::from_millis(200));
                Box::new(Bar { bar, multi: m.clone(), name: job.name.clone() })
            }
            None => {
                println!("[{}] started: kind {}, {} thread(s), key {}", job.name, job.kind, job.threads, &job.key[..12]);
                Box::new(Plain {
                    name: job.name.clone(),
                    state: Mutex::new(PlainState { len: 0, pos: 0, last: Instant::now(), reported: 0 }),
                })
            }
        }
    }

    fn finish(&self, job: &JobInfo, result: &Result<f64, String>) {
        self.overall.inc(1);
        let line = match result {
            Ok(s) => format!("[{}] done in {s:.2} s", job.name),
            Err(e) => format!("[{}] FAILED: {e}", job.name),
        };
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => println!("{line}"),
        }
    }
}

struct Bar {
    bar: ProgressBar,
    multi: MultiProgress,
    name: String,
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        self.multi.remove(&self.bar);
    }
}

impl Progress for Bar {
    fn set_length(&self, len: u64) {
        self.bar.set_style(style("{prefix:>24} [{bar:30}] {pos}/{len} ETA {eta:>4} {msg}"));
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.reset_eta();
    }
    fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }
    fn set_message(&self, msg: &str) {
        self.bar.set_message(msg.to_owned());
    }
    fn log(&self, line: &str) {
        let _ = self.multi.println(format!("[{}] {line}", self.name));
    }
}

struct PlainState {
    len: u64,
    pos: u64,
    last: Instant,
    /// Last reported tenth of the work.
    reported: u64,
}

/// Log lines instead of a bar: a line per tenth of the work, at most one message per 10 s.
struct Plain {
    name: String,
    state: Mutex<PlainState>,
}

impl Progress for Plain {
    fn set_length(&self, len: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.len = len;
            s.pos = 0;
            s.reported = 0;
        }
    }
    fn inc(&self, delta: u64) {
        let Ok(mut s) = self.state.lock() else { return };
        s.pos += delta;
        if let Some(tenth) = (s.pos * 10).checked_div(s.len) {
            if tenth > s.reported {
                s.reported = tenth;
                println!("[{}] {}/{} ({}%)", self.name, s.pos, s.len, tenth * 10);
            }
        }
    }
    fn set_message(&self, msg: &str) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.last.elapsed() >= Duration::from_secs(10) {
            s.last = Instant::now();
            println!("[{}] {msg}", self.name);
        }
    }
    fn log(&self, line: &str) {
        println!("[{}] {line}", self.name);
    }
}
