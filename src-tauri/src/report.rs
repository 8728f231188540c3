//! The diagnostics report ("Export the logs"): one text file a user can attach to a bug
//! report. It holds what the helper reports (status, routes, DNS, firewall), the last
//! self-test reports, the last troubleshooter report (as `underpass doctor` prints it), the
//! app's log and the helper's recent log. It holds no keys: statuses
//! and logs never contain them.

use std::fs;
use std::path::{Path, PathBuf};

use underpass_proto::{DoctorReport, SelfTestReport, Status};

/// The app's log files: `gui.log.YYYY-MM-DD` in the log dir, one per day, three kept.
pub const LOG_PREFIX: &str = "gui.log";
pub const LOG_FILES_KEPT: usize = 3;
/// The report carries at most this many of the app's newest log lines.
pub const APP_LOG_LINES: usize = 2000;

/// What goes into a report.
pub struct Parts<'a> {
    pub generated_at: &'a str,
    pub app_version: &'a str,
    pub os: String,
    pub helper_version: Option<&'a str>,
    /// The helper's status, or why it could not be had.
    pub status: Result<&'a Status, &'a str>,
    pub self_tests: &'a [SelfTestReport],
    /// The last troubleshooter run of this session.
    pub doctor: Option<&'a DoctorReport>,
    pub app_log: Vec<String>,
    /// The helper's recent log, or why it could not be had.
    pub helper_log: Result<Vec<String>, String>,
}

pub fn render(p: &Parts<'_>) -> String {
    let mut out = format!(
        "Underpass diagnostics report\nGenerated: {}\nApp: underpass-gui {}\nHelper: {}\nSystem: {}\n",
        p.generated_at,
        p.app_version,
        p.helper_version.unwrap_or("not reachable"),
        p.os
    );
    let section = |out: &mut String, title: &str, body: &str| {
        out.push_str(&format!("\n== {title} ==\n{}\n", body.trim_end()));
    };
    match p.status {
        Ok(s) => section(&mut out, "Helper status (routes, DNS, firewall)", &json(s)),
        Err(why) => section(&mut out, "Helper status", why),
    }
    if p.self_tests.is_empty() {
        section(&mut out, "Self-tests", "none run in this session");
    }
    for r in p.self_tests {
        section(&mut out, &format!("Self-test: {:?}", r.test), &json(r));
    }
    match p.doctor {
        Some(d) => section(&mut out, "Troubleshooter (underpass doctor)", &d.to_text()),
        None => section(&mut out, "Troubleshooter", "not run in this session"),
    }
    section(
        &mut out,
        &format!("App log (newest {} lines)", p.app_log.len()),
        &p.app_log.join("\n"),
    );
    match &p.helper_log {
        Ok(lines) => section(
            &mut out,
            &format!("Helper log (newest {} lines)", lines.len()),
            &lines.join("\n"),
        ),
        Err(why) => section(&mut out, "Helper log", why),
    }
    out
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("(unprintable: {e})"))
}

/// The newest `max` lines of the app's log files in `dir`, oldest first.
pub fn app_log_tail(dir: &Path, max: usize) -> Vec<String> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LOG_PREFIX))
        })
        .collect();
    files.sort();
    let mut lines: Vec<String> = Vec::new();
    for f in files.iter().rev() {
        let text = fs::read_to_string(f).unwrap_or_default();
        let mut these: Vec<String> = text.lines().map(str::to_string).collect();
        these.append(&mut lines);
        lines = these;
        if lines.len() >= max {
            break;
        }
    }
    let skip = lines.len().saturating_sub(max);
    lines.split_off(skip)
}

/// The operating system in one line (`PRETTY_NAME` of os-release, and the kernel).
pub fn os_line() -> String {
    let pretty = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{pretty}, kernel {}, {}",
        kernel.trim(),
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_spans_files_in_order_and_keeps_the_newest_lines() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("gui.log.2026-11-20"), "a1\na2\n").unwrap();
        fs::write(dir.path().join("gui.log.2026-11-21"), "b1\nb2\nb3\n").unwrap();
        fs::write(dir.path().join("other.txt"), "x\n").unwrap();
        assert_eq!(app_log_tail(dir.path(), 4), ["a2", "b1", "b2", "b3"]);
        assert_eq!(app_log_tail(dir.path(), 100).len(), 5);
        assert!(app_log_tail(&dir.path().join("missing"), 10).is_empty());
    }

    #[test]
    fn a_report_says_what_it_could_not_get() {
        let status = Status::disconnected();
        let text = render(&Parts {
            generated_at: "2026-11-22T08:00:00Z",
            app_version: "0.1.0",
            os: "Debian".into(),
            helper_version: None,
            status: Ok(&status),
            self_tests: &[],
            doctor: None,
            app_log: vec!["line".into()],
            helper_log: Err("the helper is not running".into()),
        });
        assert!(text.contains("Helper: not reachable"), "{text}");
        assert!(text.contains("\"state\": \"disconnected\""), "{text}");
        assert!(
            text.contains("== Self-tests ==\nnone run in this session"),
            "{text}"
        );
        assert!(
            text.contains("== Troubleshooter ==\nnot run in this session"),
            "{text}"
        );
        assert!(
            text.contains("== App log (newest 1 lines) ==\nline"),
            "{text}"
        );
        assert!(
            text.contains("== Helper log ==\nthe helper is not running"),
            "{text}"
        );
    }

    /// A troubleshooter report whose routes fail, so what follows is skipped.
    fn doctor_report() -> underpass_proto::DoctorReport {
        use underpass_proto::{Layer, LayerId, LayerVerdict};
        let layer = |id: LayerId, verdict: LayerVerdict| Layer {
            id,
            verdict,
            depends_on: (verdict == LayerVerdict::Skipped).then_some(LayerId::Routes),
            evidence: vec![format!("{id}: what was seen")],
            explanation: format!("{id}: what it means"),
            fix: (verdict == LayerVerdict::Fail).then(|| format!("{id}: what to do")),
        };
        underpass_proto::DoctorReport {
            layers: vec![
                layer(LayerId::ControlPlane, LayerVerdict::Ok),
                layer(LayerId::OuterPath, LayerVerdict::Ok),
                layer(LayerId::Interface, LayerVerdict::Ok),
                layer(LayerId::Routes, LayerVerdict::Fail),
                layer(LayerId::Firewall, LayerVerdict::Skipped),
                layer(LayerId::Dns, LayerVerdict::Skipped),
                layer(LayerId::Mtu, LayerVerdict::Skipped),
            ],
            mtu: None,
        }
    }

    #[test]
    fn a_report_carries_the_troubleshooter_as_the_cli_prints_it() {
        let status = Status::disconnected();
        let doctor = doctor_report();
        let text = render(&Parts {
            generated_at: "2026-11-22T08:00:00Z",
            app_version: "0.1.0",
            os: "Debian".into(),
            helper_version: Some("0.1.0"),
            status: Ok(&status),
            self_tests: &[],
            doctor: Some(&doctor),
            app_log: vec![],
            helper_log: Ok(vec![]),
        });
        let expected = format!(
            "== Troubleshooter (underpass doctor) ==\n{}",
            doctor.to_text()
        );
        assert!(text.contains(expected.trim_end()), "{text}");
        assert!(text.contains(">> 4. routes"), "{text}");
    }
}
