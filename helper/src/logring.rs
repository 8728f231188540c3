//! The helper's recent log, kept in memory so that a client can fetch it
//! ([`underpass_proto::Request::RecentLogs`]) for the app's diagnostics export. stderr (the
//! journal under systemd) keeps the whole log; this keeps the newest lines, at most
//! [`MAX_LOG_BYTES`] of them as JSON, so the answer always fits in one IPC frame.

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
    /// Each line with what it costs in the JSON answer.
    lines: VecDeque<(String, usize)>,
    bytes: usize,
}

impl LogRing {
    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .lines
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    /// Keeps one event's text as one line: a newline or other control character inside it
    /// (a client's bytes quoted in an error, say) is escaped, so nobody can forge lines.
    fn push(&self, text: &str) {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return;
        }
        let mut line = String::with_capacity(text.len());
        for c in text.chars() {
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
        if line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        // What the line costs in the JSON answer: quoted and escaped, plus a comma.
        let cost = serde_json::to_string(&line).map_or(line.len() * 6, |j| j.len()) + 1;
        let mut ring = self.0.lock().unwrap();
        ring.bytes += cost;
        ring.lines.push_back((line, cost));
        while ring.bytes > MAX_LOG_BYTES {
            let Some((_, old)) = ring.lines.pop_front() else {
                break;
            };
            ring.bytes -= old;
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
    fn keeps_the_newest_lines_and_the_answer_always_fits_in_a_frame() {
        let ring = LogRing::default();
        log(&ring, "first\n");
        // The worst case: every byte escapes in JSON (quotes and backslashes double; control
        // characters are already written out as \u{1}, whose backslash doubles too).
        let nasty = "\"\\\u{1}".repeat(MAX_LINE_BYTES);
        for i in 0..2000 {
            log(&ring, &format!("{i} {nasty}\n"));
        }
        let lines = ring.lines();
        assert_ne!(lines[0], "first", "the oldest line went first");
        assert!(lines.last().unwrap().starts_with("1999 "));
        let answer = serde_json::to_vec(&underpass_proto::Response::Logs { lines }).unwrap();
        assert!(
            answer.len() < underpass_proto::MAX_FRAME_LEN,
            "{} bytes do not fit in one frame",
            answer.len()
        );
    }

    #[test]
    fn a_newline_inside_an_event_cannot_forge_a_line() {
        let ring = LogRing::default();
        log(
            &ring,
            "WARN closing IPC connection: unknown variant `x\nINFO all is well`\n",
        );
        let lines = ring.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("`x\\nINFO all is well`"), "{lines:?}");
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
