//! Stage timings from pi-gen's real `build.log`.
//!
//! pi-gen writes `log(){ date +"[%T] $*" | tee -a "${LOG_FILE}"; }`, so lines look like
//! `[10:00:01] Begin /tmp/x/pi-gen/stage0` — local time, no date, absolute paths
//! (`/pi-gen/...` in Docker). Names are made relative to the pi-gen root (the first
//! `Begin` path, which is `BASE_DIR`), midnight wraps are handled, repeated spans of one
//! name are summed, and a `Begin` without `End` is reported as incomplete.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// The name given to the span of the whole build (`Begin <BASE_DIR>`).
pub const WHOLE_BUILD: &str = "build";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Span {
    pub name: String,
    pub start_offset_seconds: u64,
    pub end_offset_seconds: u64,
    pub duration_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Incomplete {
    pub name: String,
    pub start_offset_seconds: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StageTimings {
    /// Every closed span, in start order.
    pub spans: Vec<Span>,
    /// Total seconds per name (repeated spans summed).
    pub durations: BTreeMap<String, u64>,
    /// Begun but never ended, in start order.
    pub incomplete: Vec<Incomplete>,
    /// Last minus first timestamp seen.
    pub observed_elapsed_seconds: u64,
    /// `finished` or `failed` when pi-gen logged its EXIT trap line.
    pub result: Option<String>,
}

impl StageTimings {
    /// Top-level stages (`stage0`, `export-image`, …), in start order, first span each.
    pub fn stages(&self) -> Vec<&Span> {
        let mut seen = std::collections::BTreeSet::new();
        self.spans
            .iter()
            .filter(|s| depth(&s.name) == 1 && s.name != WHOLE_BUILD && !s.name.ends_with(".sh"))
            .filter(|s| seen.insert(s.name.clone()))
            .collect()
    }

    /// Rows for a timing table: stages and their sub-stages (no per-script spans).
    pub fn table_rows(&self) -> Vec<(String, u64)> {
        let mut order: Vec<&str> = Vec::new();
        for s in &self.spans {
            if s.name != WHOLE_BUILD && depth(&s.name) <= 2 && !order.contains(&s.name.as_str()) {
                order.push(&s.name);
            }
        }
        order
            .into_iter()
            .map(|n| (n.to_owned(), self.durations.get(n).copied().unwrap_or(0)))
            .collect()
    }
}

fn depth(name: &str) -> usize {
    name.split('/').count()
}

static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[(\d{1,2}):(\d{2}):(\d{2})\]\s+(Begin|End)\s+(.+?)\s*$").expect("valid regex")
});
static RESULT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[\d{1,2}:\d{2}:\d{2}\]\s+Build (finished|failed)\s*$").expect("valid regex")
});

struct Event {
    secs: u64,
    begin: bool,
    path: String,
}

/// Parses a build.log. Unrelated lines are ignored; nothing here can fail.
pub fn parse(text: &str) -> StageTimings {
    let mut events = Vec::new();
    let mut result = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = RESULT.captures(line) {
            result = Some(c[1].to_owned());
            continue;
        }
        let Some(c) = LINE.captures(line) else {
            continue;
        };
        let num = |i: usize| c[i].parse::<u64>().unwrap_or(0);
        events.push(Event {
            secs: num(1) * 3600 + num(2) * 60 + num(3),
            begin: &c[4] == "Begin",
            path: c[5].to_owned(),
        });
    }
    let names = Namer::new(&events);

    let mut timings = StageTimings {
        result,
        ..StageTimings::default()
    };
    let Some(first) = events.first() else {
        return timings;
    };
    let base = first.secs;
    let (mut wrap, mut last) = (0u64, base);
    // Start time and the position of the `Begin` line, so spans that start in the same
    // second keep the log's order (a stage before the next one, a parent before a child).
    let mut open: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    let mut order: Vec<(usize, Span)> = Vec::new();
    for (seq, ev) in events.iter().enumerate() {
        if ev.secs + wrap < last {
            wrap += 86_400;
        }
        let t = ev.secs + wrap;
        last = t;
        let name = names.name(&ev.path);
        if ev.begin {
            open.insert(name, (t, seq));
        } else if let Some((start, begun)) = open.remove(&name) {
            let span = Span {
                name: name.clone(),
                start_offset_seconds: start - base,
                end_offset_seconds: t - base,
                duration_seconds: t - start,
            };
            *timings.durations.entry(name).or_default() += span.duration_seconds;
            order.push((begun, span));
        }
    }
    timings.observed_elapsed_seconds = last - base;
    order.sort_by_key(|(begun, _)| *begun);
    timings.spans = order.into_iter().map(|(_, s)| s).collect();
    let mut incomplete: Vec<Incomplete> = open
        .into_iter()
        .map(|(name, (start, _))| Incomplete {
            name,
            start_offset_seconds: start - base,
        })
        .collect();
    incomplete.sort_by_key(|i| i.start_offset_seconds);
    timings.incomplete = incomplete;
    timings
}

/// The part of an appended build.log that the last `build.sh` run wrote. pi-gen's log
/// appends (`tee -a`) across runs, and each run's first line is `Begin <BASE_DIR>`; the
/// timings, the timeline and the released log cover that run only.
pub fn current_run(text: &str) -> &str {
    let mut start = 0;
    let mut base: Option<String> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some(c) = LINE.captures(line.trim())
            && &c[4] == "Begin"
        {
            let path = c[5].trim_end_matches('/');
            // The root is the first absolute path that later paths live under; a run
            // starts where the root begins again.
            match &base {
                Some(b) if b == path => start = offset,
                Some(_) => {}
                None if path.starts_with('/') => {
                    let prefix = format!("{path}/");
                    if text.contains(&prefix) {
                        base = Some(path.to_owned());
                        start = offset;
                    }
                }
                None => {}
            }
        }
        offset += line.len();
    }
    &text[start..]
}

/// The last `n` lines of a text file (lossy UTF-8), or "" when it cannot be read.
pub fn tail_lines(path: &std::path::Path, n: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Maps logged paths to stable names relative to the pi-gen root.
struct Namer {
    base: Option<String>,
}

impl Namer {
    fn new(events: &[Event]) -> Self {
        // build.sh logs `Begin ${BASE_DIR}` first; accept it as the root only if later
        // paths really live under it.
        let base = events
            .iter()
            .find(|e| e.begin && e.path.starts_with('/'))
            .map(|e| e.path.trim_end_matches('/').to_owned())
            .filter(|b| {
                let prefix = format!("{b}/");
                events.iter().any(|e| e.path.starts_with(&prefix))
            });
        Self { base }
    }

    fn name(&self, path: &str) -> String {
        let path = path.trim_end_matches('/');
        if let Some(base) = &self.base {
            if path == base {
                return WHOLE_BUILD.to_owned();
            }
            if let Some(rel) = path
                .strip_prefix(base.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                return rel.to_owned();
            }
        }
        if path.starts_with('/') {
            // A stage outside the pi-gen tree (STAGE_LIST may name any directory): keep
            // its last component so it still reads like a stage name.
            return path.rsplit('/').next().unwrap_or(path).to_owned();
        }
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_vectors_with_bare_names() {
        let log = "[10:00:00] Begin stage0\n[10:00:05] End stage0\n[10:00:05] Begin stage1\n\
                   [10:01:05] End stage1\n[10:01:06] Begin export-image\n[10:01:36] End export-image\n";
        let t = parse(log);
        assert_eq!(t.durations["stage0"], 5);
        assert_eq!(t.durations["stage1"], 60);
        assert_eq!(t.durations["export-image"], 30);
        assert_eq!(t.observed_elapsed_seconds, 96);
        let offsets: Vec<_> = t
            .spans
            .iter()
            .map(|s| (s.start_offset_seconds, s.end_offset_seconds))
            .collect();
        assert_eq!(offsets, vec![(0, 5), (5, 65), (66, 96)]);
    }

    #[test]
    fn spans_in_the_same_second_keep_log_order() {
        let t = parse(
            "[10:00:00] Begin /p\n[10:00:00] Begin /p/stage1\n[10:00:00] End /p/stage1\n[10:00:00] Begin /p/stage2\n[10:00:01] End /p/stage2\n[10:00:01] End /p\n",
        );
        let names: Vec<_> = t.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "stage1", "stage2"]);
    }

    #[test]
    fn only_the_last_run_of_an_appended_log_counts() {
        let first = "[09:00:00] Begin /p\n[09:00:01] Begin /p/stage0\n[09:10:00] End /p/stage0\n[09:10:00] Begin /p/stage1\n[09:10:05] Build failed\n";
        let second = "[10:00:00] Begin /p\n[10:00:00] Begin /p/stage0\n[10:00:00] End /p/stage0\n[10:00:00] Begin /p/stage1\n[10:01:00] End /p/stage1\n[10:01:00] End /p\n[10:01:00] Build finished\n";
        let both = format!("{first}{second}");
        assert_eq!(current_run(&both), second);
        assert_eq!(current_run(first), first);
        assert_eq!(current_run(""), "");
        let t = parse(current_run(&both));
        assert_eq!(
            t.durations["stage0"], 0,
            "the first run's 10 minutes are not summed in"
        );
        assert_eq!(t.durations["build"], 60);
        assert_eq!(t.result.as_deref(), Some("finished"));
    }

    #[test]
    fn a_stage_across_midnight_has_its_real_duration() {
        let t = parse("[23:59:59] Begin stage0\n[00:00:10] End stage0\n");
        assert_eq!(t.durations["stage0"], 11);
    }

    #[test]
    fn a_stage_that_never_ended_is_reported_incomplete() {
        let t = parse("[10:00:00] Begin stage0\n[10:00:05] End stage0\n[10:00:05] Begin stage1\n");
        assert_eq!(t.spans.len(), 1);
        assert_eq!(t.observed_elapsed_seconds, 5);
        assert_eq!(
            t.incomplete,
            vec![Incomplete {
                name: "stage1".into(),
                start_offset_seconds: 5
            }]
        );
    }

    #[test]
    fn real_pi_gen_log_with_absolute_paths() {
        let log = "\
[10:00:00] Begin /tmp/tmp.x/pi-gen
[10:00:01] Begin /tmp/tmp.x/pi-gen/stage0
[10:00:01] Begin /tmp/tmp.x/pi-gen/stage0/prerun.sh
[10:00:40] End /tmp/tmp.x/pi-gen/stage0/prerun.sh
[10:00:40] Begin /tmp/tmp.x/pi-gen/stage0/00-configure-apt
[10:00:41] Begin /tmp/tmp.x/pi-gen/stage0/00-configure-apt/00-run.sh
[10:00:50] End /tmp/tmp.x/pi-gen/stage0/00-configure-apt/00-run.sh
[10:00:50] End /tmp/tmp.x/pi-gen/stage0/00-configure-apt
[10:01:00] End /tmp/tmp.x/pi-gen/stage0
[10:01:00] Skip /tmp/tmp.x/pi-gen/stage1/00-boot-files/00-run.sh (not executable)
[10:01:00] Begin /tmp/tmp.x/pi-gen/stage2
[10:03:00] End /tmp/tmp.x/pi-gen/stage2
[10:03:00] Begin /tmp/tmp.x/pi-gen/export-image
[10:04:00] End /tmp/tmp.x/pi-gen/export-image
[10:04:00] Begin /tmp/tmp.x/pi-gen/export-image
[10:04:30] End /tmp/tmp.x/pi-gen/export-image
[10:04:30] Begin postrun.sh
[10:04:31] End postrun.sh
[10:04:31] End /tmp/tmp.x/pi-gen
[10:04:31] Build finished
";
        let t = parse(log);
        assert_eq!(t.durations["build"], 271);
        assert_eq!(t.durations["stage0"], 59);
        assert_eq!(t.durations["stage0/prerun.sh"], 39);
        assert_eq!(t.durations["stage0/00-configure-apt"], 10);
        assert_eq!(t.durations["stage0/00-configure-apt/00-run.sh"], 9);
        assert_eq!(t.durations["stage2"], 120);
        assert_eq!(t.durations["export-image"], 90, "repeated spans are summed");
        assert_eq!(t.durations["postrun.sh"], 1);
        assert_eq!(t.result.as_deref(), Some("finished"));
        let stages: Vec<_> = t.stages().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(stages, vec!["stage0", "stage2", "export-image"]);
        let rows: Vec<_> = t.table_rows().into_iter().map(|r| r.0).collect();
        assert_eq!(
            rows,
            vec![
                "stage0",
                "stage0/prerun.sh",
                "stage0/00-configure-apt",
                "stage2",
                "export-image",
                "postrun.sh"
            ]
        );
    }

    #[test]
    fn docker_paths_and_crlf() {
        let t = parse(
            "[01:00:00] Begin /pi-gen\r\n[01:00:00] Begin /pi-gen/stage0\r\n[01:00:09] End /pi-gen/stage0\r\n",
        );
        assert_eq!(t.durations["stage0"], 9);
        assert_eq!(
            t.incomplete,
            vec![Incomplete {
                name: "build".into(),
                start_offset_seconds: 0
            }]
        );
    }

    #[test]
    fn end_without_begin_is_ignored_and_garbage_skipped() {
        let t = parse("noise\n[10:00:00] End stage9\n[xx:00:00] Begin y\n");
        assert!(t.spans.is_empty() && t.incomplete.is_empty());
    }
}
