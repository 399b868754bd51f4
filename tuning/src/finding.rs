//! What a tuner found about one item.

/// How an item compares with its recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// As recommended.
    Ok,
    /// Differs: `aurigraph tune check` exits non-zero.
    Differs,
    /// Worth knowing, for a dedicated host; does not fail a check.
    Advice,
    /// Could not be read (absent in a VM or container, or not permitted).
    Unknown,
}

/// A runtime fix: write `value` to `path` (relative to the root).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Write {
    pub path: String,
    pub value: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// The tuner (`cpu_governor`, `sysctl`, `disk_scheduler`, ...).
    pub tuner: &'static str,
    /// What it is about (`cpu0-3`, `vm.swappiness`, `nvme0n1`, `irq 24`).
    pub item: String,
    pub current: String,
    pub recommended: String,
    pub why: &'static str,
    pub state: State,
    /// What `aurigraph tune apply` writes when the item differs (empty: not changeable at
    /// runtime).
    pub writes: Vec<Write>,
    /// How to make it last across reboots (a sysctl.d line, a udev rule, a kernel parameter,
    /// a systemd setting), for the operator to install.
    pub persistent: Option<String>,
}

impl Finding {
    /// A finding that compares `current` with `recommended` by `ok`.
    pub(crate) fn compare(
        tuner: &'static str,
        item: impl Into<String>,
        current: Option<String>,
        recommended: impl Into<String>,
        why: &'static str,
        ok: impl FnOnce(&str) -> bool,
    ) -> Finding {
        let (current, state) = match current {
            Some(value) => {
                let state = if ok(&value) {
                    State::Ok
                } else {
                    State::Differs
                };
                (value, state)
            }
            None => ("(unreadable)".to_string(), State::Unknown),
        };
        Finding {
            tuner,
            item: item.into(),
            current,
            recommended: recommended.into(),
            why,
            state,
            writes: Vec::new(),
            persistent: None,
        }
    }

    pub(crate) fn writing(mut self, path: impl Into<String>, value: impl Into<String>) -> Finding {
        self.writes.push(Write {
            path: path.into(),
            value: value.into(),
        });
        self
    }

    pub(crate) fn lasting(mut self, persistent: impl Into<String>) -> Finding {
        self.persistent = Some(persistent.into());
        self
    }
}
