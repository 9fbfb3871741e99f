//! Domain states and reasons, with libvirt's names and numbers (virsh prints the names, `domstats`
//! the numbers).

/// libvirt's `virDomainState` values that ironvirt domains can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    ShutOff,
}

impl State {
    /// As `list` and `domstate` print it.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::ShutOff => "shut off",
        }
    }

    /// `virDomainState` number (`domstats` `state.state`).
    pub fn number(&self) -> u32 {
        match self {
            State::Running => 1,
            State::Paused => 3,
            State::ShutOff => 5,
        }
    }

    pub fn is_active(&self) -> bool {
        !matches!(self, State::ShutOff)
    }

    pub(crate) fn parse(s: &str) -> Option<State> {
        match s {
            "running" => Some(State::Running),
            "paused" => Some(State::Paused),
            "shutoff" | "shut off" => Some(State::ShutOff),
            _ => None,
        }
    }

    /// The spelling in status files (no space).
    pub(crate) fn file_name(&self) -> &'static str {
        match self {
            State::ShutOff => "shutoff",
            other => other.as_str(),
        }
    }
}

/// Why a domain is in its state (`domstate --reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unknown,
    /// running: started normally.
    Booted,
    /// running: resumed after a pause.
    Unpaused,
    /// paused: by `suspend` or `start --paused`.
    User,
    /// shut off: the guest powered off.
    Shutdown,
    /// shut off: `destroy`.
    Destroyed,
    /// shut off: the guest crashed, or the VMM process died.
    Crashed,
    /// shut off: the VMM failed.
    Failed,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Unknown => "unknown",
            Reason::Booted => "booted",
            Reason::Unpaused => "unpaused",
            Reason::User => "user",
            Reason::Shutdown => "shutdown",
            Reason::Destroyed => "destroyed",
            Reason::Crashed => "crashed",
            Reason::Failed => "failed",
        }
    }

    /// The reason's number within its state's enum (`domstats` `state.reason`).
    pub fn number(&self) -> u32 {
        match self {
            Reason::Unknown => 0,
            Reason::Booted => 1,
            Reason::Unpaused => 5,
            Reason::User => 1,
            Reason::Shutdown => 1,
            Reason::Destroyed => 2,
            Reason::Crashed => 3,
            Reason::Failed => 6,
        }
    }

    pub(crate) fn parse(s: &str) -> Reason {
        match s.trim() {
            "booted" => Reason::Booted,
            "unpaused" => Reason::Unpaused,
            "user" => Reason::User,
            "shutdown" => Reason::Shutdown,
            "destroyed" => Reason::Destroyed,
            "crashed" => Reason::Crashed,
            "failed" => Reason::Failed,
            _ => Reason::Unknown,
        }
    }
}
