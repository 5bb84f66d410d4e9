//! The bounded label values of keygate's metrics: one enum per label, so a
//! series can only be one of the values listed here.

/// How a configuration reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Ok,
    Invalid,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 2] = [ReloadResult::Ok, ReloadResult::Invalid];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Invalid => "invalid",
        }
    }
}

/// What happened to a usage record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageResult {
    Written,
    Spooled,
    Dropped,
}

impl UsageResult {
    pub const ALL: [UsageResult; 3] = [
        UsageResult::Written,
        UsageResult::Spooled,
        UsageResult::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageResult::Written => "written",
            UsageResult::Spooled => "spooled",
            UsageResult::Dropped => "dropped",
        }
    }

    /// Position in [`UsageResult::ALL`] (and in the counters built from it).
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// How a webhook delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Failed; tried again later.
    Failed,
    /// Failed for the last time (dead-lettered).
    Dead,
}

impl DeliveryResult {
    pub const ALL: [DeliveryResult; 3] = [
        DeliveryResult::Delivered,
        DeliveryResult::Failed,
        DeliveryResult::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Failed => "failed",
            DeliveryResult::Dead => "dead",
        }
    }
}

/// How a report to the secret-scanning endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanResult {
    /// Verified and handled: GitHub got its feedback.
    Answered,
    /// Unsigned, mis-signed or signed with an unknown key (401).
    Unauthorized,
    /// Malformed, too large, unreadable or not a POST.
    Refused,
    /// The keys or the store were unavailable: GitHub is told to retry (503).
    Unavailable,
}

impl ScanResult {
    pub const ALL: [ScanResult; 4] = [
        ScanResult::Answered,
        ScanResult::Unauthorized,
        ScanResult::Refused,
        ScanResult::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScanResult::Answered => "answered",
            ScanResult::Unauthorized => "unauthorized",
            ScanResult::Refused => "refused",
            ScanResult::Unavailable => "unavailable",
        }
    }

    /// The result an answer's HTTP status stands for.
    pub fn of_status(status: u16) -> ScanResult {
        match status {
            200 => ScanResult::Answered,
            401 => ScanResult::Unauthorized,
            503 => ScanResult::Unavailable,
            _ => ScanResult::Refused,
        }
    }
}
