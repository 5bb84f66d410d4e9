//! A live balance as the rate limiter keeps it (a Redis hash, or memory), and
//! the one rule both backends apply to it. The Lua script in
//! [`crate::ratelimit::redis`] is this file, line for line.

/// `granted − spent` in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub epoch: i64,
    pub granted: i64,
    pub spent: i64,
}

/// What a request asks of its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The epoch and grant as this gateway sees the account now.
    pub epoch: i64,
    pub granted: i64,
    /// Debited on admission: the route's `cost`.
    pub reserve: i64,
}

impl Ask {
    /// The balance a request needs to be admitted: its cost, and more than
    /// nothing (a post-paid route may reserve 0).
    pub fn need(&self) -> i64 {
        self.reserve.max(1)
    }
}

impl Cell {
    pub fn remaining(&self) -> i64 {
        self.granted.saturating_sub(self.spent)
    }
}

/// The cell a request is decided on: the stored one (`None`: missing) brought
/// to the request's epoch. A newer epoch (a refill, a set) starts at zero
/// spent; the same epoch keeps the larger grant (adds only grow it); an older
/// one (a gateway that has not seen a set yet) uses what is stored. A missing
/// cell needs `seed` (the spending recorded in the ledger); `None` without one.
pub fn current(stored: Option<Cell>, ask: &Ask, seed: Option<i64>) -> Option<Cell> {
    match stored {
        None => seed.map(|spent| Cell {
            epoch: ask.epoch,
            granted: ask.granted,
            spent,
        }),
        Some(c) if ask.epoch > c.epoch => Some(Cell {
            epoch: ask.epoch,
            granted: ask.granted,
            spent: 0,
        }),
        Some(c) if ask.epoch == c.epoch => Some(Cell {
            granted: c.granted.max(ask.granted),
            ..c
        }),
        Some(c) => Some(c),
    }
}

/// A post-paid correction: `delta` more spent (negative: a refund), only in
/// the epoch it was charged in.
pub fn settle(stored: Option<Cell>, epoch: i64, delta: i64) -> Option<Cell> {
    stored.filter(|c| c.epoch == epoch).map(|c| Cell {
        spent: c.spent.saturating_add(delta),
        ..c
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASK: Ask = Ask {
        epoch: 10,
        granted: 9,
        reserve: 3,
    };

    #[test]
    fn missing_cells_need_a_seed() {
        assert_eq!(current(None, &ASK, None), None);
        let c = current(None, &ASK, Some(4)).expect("seeded");
        assert_eq!(c.remaining(), 5);
    }

    #[test]
    fn epochs_only_move_forward() {
        let stored = Some(Cell {
            epoch: 10,
            granted: 12,
            spent: 6,
        });
        assert_eq!(current(stored, &ASK, None).map(|c| c.remaining()), Some(6));
        let newer = Ask { epoch: 11, ..ASK };
        assert_eq!(current(stored, &newer, None).map(|c| c.spent), Some(0));
        let older = Ask { epoch: 9, ..ASK };
        assert_eq!(current(stored, &older, None), stored);
        assert_eq!(settle(stored, 10, 5).map(|c| c.spent), Some(11));
        assert_eq!(settle(stored, 9, 5), None);
        assert_eq!(Ask { reserve: 0, ..ASK }.need(), 1);
    }
}
