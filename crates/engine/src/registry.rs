//! The set of stage kinds a pipeline may use, looked up by `kind = "..."`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::stage::Stage;

/// Stage kinds by name. The real registry is `latte_stages::registry()`; tests build their own.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind. Registering two kinds under one name is a programming error in the
    /// registry's source, not a user error, hence the panic.
    pub fn register<S: Stage + 'static>(&mut self, stage: S) -> &mut Self {
        let kind = stage.kind();
        let previous = self.kinds.insert(kind, Arc::new(stage));
        assert!(previous.is_none(), "stage kind `{kind}` is registered twice");
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Stage>> {
        self.kinds.get(kind)
    }

    /// Kind names in alphabetical order (for "allowed: ..." messages).
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}
