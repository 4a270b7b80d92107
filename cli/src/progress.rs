//! Progress bars of `sync` on a terminal: one per collection and phase, for long pulls and
//! pushes, drawn by `indicatif` from the engine's [`Progress`](deltasync::Progress) notices.
//!
//! Owns when a bar appears (a phase of at least [`LONG`] rows) and its look. It must not
//! print anything when stdout is not a terminal; the caller decides that.

use std::collections::HashMap;

use deltasync::{Deltasync, Progress, ProgressPhase};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::broadcast::error::RecvError;

/// A phase with fewer rows than this ends too soon for a bar to help.
pub const LONG: u64 = 2_000;

/// Bars for the syncs of `engine` until the returned guard is dropped or finished.
#[derive(Debug)]
pub struct Bars {
    task: tokio::task::JoinHandle<()>,
    done: deltasync::CancellationToken,
}

impl Bars {
    /// Starts drawing on stdout; totals are counted from now on.
    pub fn show(engine: &Deltasync) -> Bars {
        engine.count_totals(true);
        let mut notices = engine.progress();
        let done = deltasync::CancellationToken::new();
        let finished = done.clone();
        let task = tokio::spawn(async move {
            let all = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let mut bars: HashMap<(String, ProgressPhase), ProgressBar> = HashMap::new();
            loop {
                let notice = tokio::select! {
                    () = finished.cancelled() => break,
                    notice = notices.recv() => notice,
                };
                match notice {
                    Ok(progress) => draw(&all, &mut bars, &progress),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
            let _ = all.clear();
        });
        Bars { task, done }
    }

    /// Removes the bars, before the summary is printed.
    pub async fn finish(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

fn draw(
    all: &MultiProgress,
    bars: &mut HashMap<(String, ProgressPhase), ProgressBar>,
    progress: &Progress,
) {
    let size = progress.total.unwrap_or(progress.done);
    let id = (progress.collection.clone(), progress.phase);
    if !bars.contains_key(&id) && size < LONG {
        return;
    }
    let bar = bars.entry(id).or_insert_with(|| {
        let verb = match progress.phase {
            ProgressPhase::Push => "push",
            ProgressPhase::Pull => "pull",
        };
        let bar = all.add(ProgressBar::new(progress.total.unwrap_or(0)));
        let style = ProgressStyle::with_template(
            "{prefix:>24} {bar:30} {human_pos}/{human_len} rows, {elapsed} elapsed, {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{} {verb}", progress.collection));
        bar
    });
    if let Some(total) = progress.total {
        bar.set_length(total.max(progress.done));
    }
    bar.set_position(progress.done);
    if progress.total.is_some_and(|t| progress.done >= t) {
        bar.finish();
    }
}
