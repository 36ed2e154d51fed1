//! The engine's errors. Every error about a pipeline or grid file names the file, the line and
//! the key, says what is wrong and, where it can, what is allowed.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a pipeline or grid file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line of the offending key (or of the table that lacks it).
    pub line: usize,
    /// Dotted key path, e.g. `stages.train.lr`.
    pub key: String,
    pub message: String,
    /// What is allowed or what to do instead.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: `{}`: {}", self.file.display(), self.line, self.key, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n    help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found while loading one file (loading reports them all at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in the pipeline:", if n == 1 { "" } else { "s" })?;
        for d in &self.0 {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pipeline or grid file is invalid; nothing ran.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// `--stage NAME` names no stage of the pipeline.
    #[error("{file}: no stage named `{name}`{}", suggestion_suffix(.suggestion))]
    UnknownStage { file: PathBuf, name: String, suggestion: Option<String> },
    /// A stage's `run` returned an error or panicked; its partial output was deleted.
    #[error("stage `{stage}` (kind `{kind}`) failed: {message}\n    log: {}", log.display())]
    StageFailed { stage: String, kind: String, message: String, log: PathBuf },
    /// The run was cancelled (`RunOptions::cancel`): no stage started after that, the stages
    /// that stopped early were not installed (their work directories are kept, so the next run
    /// resumes them), and whatever completed is cached.
    #[error("{}", interrupted_message(.stopped, .not_run))]
    Interrupted {
        /// Stages that were running and stopped at a safe point.
        stopped: Vec<String>,
        /// Stages of the run that never started.
        not_run: Vec<String>,
    },
    /// A figure (a grid's curves) could not be drawn.
    #[error("drawing {}: {message}", path.display())]
    Figure { path: PathBuf, message: String },
    /// Another process holds the store exclusively (e.g. `clean` while a run is going on).
    #[error("the store {} is in use by another latte process; retry when it has finished", .0.display())]
    StoreBusy(PathBuf),
}

fn suggestion_suffix(s: &Option<String>) -> String {
    s.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
}

fn interrupted_message(stopped: &[String], not_run: &[String]) -> String {
    let names = |v: &[String]| v.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let mut msg = "interrupted".to_owned();
    if !stopped.is_empty() {
        msg.push_str(&format!(": stopped {}", names(stopped)));
    }
    if !not_run.is_empty() {
        msg.push_str(&format!("{} not started: {}", if stopped.is_empty() { ":" } else { ";" }, names(not_run)));
    }
    msg.push_str("; nothing partial was cached, the next run resumes");
    msg
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
