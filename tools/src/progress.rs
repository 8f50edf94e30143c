//! Progress bars on stderr (drawn by `indicatif`, with the rate and the time left) when stderr
//! is a terminal and the command was not given `--no-progress`; nothing otherwise.
//!
//! [`Progress`] counts the steps of a run (training iterations) and shows the latest loss;
//! [`bytes`] makes the bar of a download.

use std::fmt::Write;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState,
    ProgressStyle,
};

/// The shortest time between two updates of a bar's figures: a training step can take a few
/// microseconds, and a new message costs a lock and a string.
const UPDATE_EVERY: Duration = Duration::from_millis(50);

/// Whether bars are drawn: wanted, and stderr is a terminal.
fn shown(wanted: bool) -> bool {
    wanted && std::io::stderr().is_terminal()
}

/// The bar of a run of steps: position, rate, time left and the latest loss.
pub struct Progress {
    /// The bar, inside a [`MultiProgress`] (whose `clear` erases it until the next tick);
    /// `None` when nothing is drawn.
    bar: Option<(MultiProgress, ProgressBar)>,
    total: usize,
    last: Option<Instant>,
}

impl Progress {
    /// A bar for `total` steps, shown only if `wanted` and stderr is a terminal.
    pub fn new(total: usize, wanted: bool) -> Self {
        let bar = shown(wanted).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("[{bar:30}] {pos}/{len} loss {msg} {rate} ETA {eta}")
                    .expect("a valid template")
                    .progress_chars("#>.")
                    .with_key("rate", |s: &ProgressState, w: &mut dyn Write| {
                        let _ = write!(w, "{:.0} it/s", s.per_sec());
                    });
            let bar = multi.add(
                ProgressBar::new(total as u64)
                    .with_style(style)
                    .with_finish(ProgressFinish::AndClear),
            );
            (multi, bar)
        });
        Progress {
            bar,
            total,
            last: None,
        }
    }

    /// Reports that `done` steps are complete, with the latest loss.
    pub fn tick(&mut self, done: usize, loss: f32) {
        let Some((_, bar)) = &self.bar else {
            return;
        };
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < UPDATE_EVERY) && done < self.total {
            return;
        }
        self.last = Some(now);
        bar.set_message(format!("{loss:.4}"));
        bar.set_position(done as u64);
    }

    /// Erases the bar so a line can be printed; the next [`Progress::tick`] draws it again.
    pub fn clear(&mut self) {
        if let Some((multi, _)) = &self.bar {
            let _ = multi.clear();
            // The next tick redraws at once, below the line printed meanwhile.
            self.last = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((multi, bar)) = self.bar.take() {
            bar.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

/// The bar of a download of `name`: bytes so far, total (when the server tells it), rate and
/// time left. `start` bytes were already there (a resumed download): they count in the
/// figures shown but not in the rate. Hidden unless `wanted` and stderr is a terminal; finish
/// it with [`ProgressBar::finish_and_clear`].
pub fn bytes(name: &str, total: Option<u64>, start: u64, wanted: bool) -> ProgressBar {
    if !shown(wanted) {
        return ProgressBar::hidden();
    }
    let done = move |s: &ProgressState, w: &mut dyn Write| {
        let _ = write!(w, "{}", HumanBytes(start + s.pos()));
    };
    let all = move |s: &ProgressState, w: &mut dyn Write| {
        let _ = match s.len() {
            Some(len) => write!(w, "{}", HumanBytes(start + len)),
            None => write!(w, "?"),
        };
    };
    let template = if total.is_some() {
        "{prefix} [{bar:30}] {done}/{all} {bytes_per_sec} ETA {eta}"
    } else {
        "{prefix} {spinner} {done} {bytes_per_sec}"
    };
    let style = ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("#>.")
        .with_key("done", done)
        .with_key("all", all);
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(
            Some(t.saturating_sub(start)),
            ProgressDrawTarget::stderr(),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    bar.with_style(style)
        .with_prefix(name.to_string())
        .with_finish(ProgressFinish::AndClear)
}
