//! How much one page of a listing holds, for every backend: a count (a default, at most a
//! maximum) and a byte budget (F-3), so that a page of large records ends early with a token
//! for the rest. A page always holds at least one entry.

const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;
/// Stored bytes one page holds at most besides its count.
pub const PAGE_BYTE_BUDGET: usize = 1024 * 1024;

/// What is left of one page: entries and bytes.
pub(crate) struct PageBudget {
    entries: usize,
    taken: usize,
    bytes: usize,
}

impl PageBudget {
    /// A page of `page_size` entries (0: the default; at most the maximum).
    pub(crate) fn new(page_size: usize) -> PageBudget {
        PageBudget {
            entries: PageBudget::entries(page_size),
            taken: 0,
            bytes: 0,
        }
    }

    /// How many entries a page of `page_size` holds at most.
    pub(crate) fn entries(page_size: usize) -> usize {
        match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        }
    }

    /// Takes an entry of `bytes` stored bytes if it still fits; `false` ends the page.
    pub(crate) fn take(&mut self, bytes: usize) -> bool {
        let fits = self.taken < self.entries
            && (self.taken == 0 || self.bytes.saturating_add(bytes) <= PAGE_BYTE_BUDGET);
        if fits {
            self.taken += 1;
            self.bytes = self.bytes.saturating_add(bytes);
        }
        fits
    }
}
