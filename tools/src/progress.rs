//! A one-line progress bar on stderr when it is a terminal; nothing otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraws at most every 100 ms.
pub struct Progress {
    total: usize,
    enabled: bool,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// A bar for `total` steps, shown only if `wanted` and stderr is a terminal.
    pub fn new(total: usize, wanted: bool) -> Self {
        Progress {
            total,
            enabled: wanted && std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: None,
        }
    }

    /// Reports that `done` steps are complete, with the latest loss.
    pub fn tick(&mut self, done: usize, loss: f32) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now - t < Duration::from_millis(100))
            && done < self.total
        {
            return;
        }
        self.last = Some(now);
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width);
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {done}/{} loss {loss:.4} {rate:.0} it/s ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.total
        );
        let _ = std::io::stderr().flush();
    }

    /// Erases the bar so a line can be printed.
    pub fn clear(&mut self) {
        if self.enabled && self.last.is_some() {
            eprint!("\r{:79}\r", "");
            let _ = std::io::stderr().flush();
        }
    }
}
