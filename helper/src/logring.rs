//! The helper's recent log, kept in memory so that a client can fetch it
//! ([`underpass_proto::Request::RecentLogs`]) for the app's diagnostics export. stderr (the
//! journal under systemd) keeps the whole log; this keeps the newest lines, at most
//! [`MAX_LOG_BYTES`] of them, so the answer always fits in one IPC frame.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use underpass_proto::MAX_LOG_BYTES;

/// A longer line is cut here (a log line is a sentence, not a payload).
pub const MAX_LINE_BYTES: usize = 512;

#[derive(Clone, Default)]
pub struct LogRing(Arc<Mutex<Ring>>);

#[derive(Default)]
struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
}

impl LogRing {
    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().lines.iter().cloned().collect()
    }

    fn push(&self, text: &str) {
        let mut ring = self.0.lock().unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut line = line.to_string();
            if line.len() > MAX_LINE_BYTES {
                let mut cut = MAX_LINE_BYTES;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push('…');
            }
            ring.bytes += line.len();
            ring.lines.push_back(line);
            while ring.bytes > MAX_LOG_BYTES {
                let Some(old) = ring.lines.pop_front() else {
                    break;
                };
                ring.bytes -= old.len();
            }
        }
    }
}

/// One event's text: tracing's fmt layer writes an event, then drops its writer.
pub struct EventWriter {
    ring: LogRing,
    buf: Vec<u8>,
}

impl io::Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.ring.push(&String::from_utf8_lossy(&self.buf));
    }
}

impl<'a> MakeWriter<'a> for LogRing {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            ring: self.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn log(ring: &LogRing, text: &str) {
        let mut w = ring.make_writer();
        w.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn keeps_the_newest_lines_within_the_byte_budget() {
        let ring = LogRing::default();
        log(&ring, "first\n");
        let line = "x".repeat(MAX_LINE_BYTES);
        for i in 0..(MAX_LOG_BYTES / MAX_LINE_BYTES + 10) {
            log(&ring, &format!("{i:>5}{}\n", &line[5..]));
        }
        let lines = ring.lines();
        assert!(lines.iter().map(String::len).sum::<usize>() <= MAX_LOG_BYTES);
        assert_ne!(lines[0], "first", "the oldest line went first");
        assert!(lines
            .last()
            .unwrap()
            .trim_start()
            .starts_with(&(MAX_LOG_BYTES / MAX_LINE_BYTES + 9).to_string()));
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let ring = LogRing::default();
        log(&ring, &"é".repeat(MAX_LINE_BYTES));
        let lines = ring.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].len() <= MAX_LINE_BYTES + '…'.len_utf8());
        assert!(lines[0].ends_with('…'));
    }
}
