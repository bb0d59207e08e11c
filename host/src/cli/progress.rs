//! Progress of a long run on stderr: a live line in a terminal (indicatif),
//! a plain line every few seconds otherwise, so a redirected log stays
//! readable.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use crate::capabilities::records::Progress;
use crate::store::BatchOutcome;

/// How often a line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Reports a run's totals as it stores batches.
pub struct RunProgress {
    label: String,
    bar: Option<ProgressBar>,
}

impl RunProgress {
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})").expect("a valid template"),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        RunProgress { label: label.to_owned(), bar }
    }

    /// The callback to hand to a run.
    pub fn callback(&self) -> Progress {
        let label = self.label.clone();
        match &self.bar {
            Some(bar) => {
                let bar = bar.clone();
                Box::new(move |o: &BatchOutcome| bar.set_message(counts(o)))
            }
            None => {
                let mut last = Instant::now();
                Box::new(move |o: &BatchOutcome| {
                    if last.elapsed() >= PLAIN_EVERY {
                        last = Instant::now();
                        eprintln!("{label}: {}", counts(o));
                    }
                })
            }
        }
    }

    /// Clears the live line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn counts(o: &BatchOutcome) -> String {
    format!("{} added, {} updated, {} deleted, {} unchanged", o.added, o.updated, o.deleted, o.unchanged)
}
