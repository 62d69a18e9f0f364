//! Progress for long work: a bar on an interactive terminal, a log line every 10 %
//! (or every GiB when the total is unknown) in CI logs.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: Option<u64>,
    done: u64,
    next_log: u64,
}

const GIB: u64 = 1 << 30;

impl Progress {
    pub fn new(actions: bool, label: &str, total: Option<u64>) -> Self {
        let bar = (!actions && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{msg} {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_owned());
            bar
        });
        let mut p = Self {
            bar,
            label: label.to_owned(),
            total,
            done: 0,
            next_log: 0,
        };
        p.next_log = p.step();
        p
    }

    fn step(&self) -> u64 {
        match self.total {
            Some(t) if t > 0 => (t / 10).max(1),
            _ => GIB,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.done >= self.next_log {
            let mib = self.done / (1 << 20);
            match self.total {
                Some(t) if t > 0 => {
                    tracing::info!("{}: {mib} MiB ({}%)", self.label, self.done * 100 / t);
                }
                _ => tracing::info!("{}: {mib} MiB", self.label),
            }
            self.next_log = self.done + self.step();
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
