//! What a report shows of the packets a self-test caught (issue 9): the test's own probes in
//! full, anyone else's traffic only as counts per interface, protocol and destination (no
//! query names: another user's lookups are not the caller's business), and never so many
//! entries that the report outgrows one IPC frame. The total is always stated.

use std::collections::BTreeMap;

use underpass_proto::LeakedPacket;

/// Entries listed of each kind; a report with twice this many stays far below a frame.
pub const MAX_LISTED: usize = 100;

/// Splits `caught` into the listed leaks and the notes that say what was left out.
pub fn shape(
    caught: Vec<LeakedPacket>,
    own: impl Fn(&LeakedPacket) -> bool,
) -> (Vec<LeakedPacket>, Vec<String>) {
    let total = caught.len();
    let (mine, others): (Vec<_>, Vec<_>) = caught.into_iter().partition(|l| own(l));
    let own_total = mine.len();
    let mut listed: Vec<LeakedPacket> = mine.into_iter().take(MAX_LISTED).collect();
    let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for l in others {
        *counts
            .entry((l.interface, l.protocol, l.destination))
            .or_default() += 1;
    }
    let groups = counts.len();
    listed.extend(counts.into_iter().take(MAX_LISTED).map(
        |((interface, protocol, destination), n)| LeakedPacket {
            interface,
            protocol,
            source: "other traffic".into(),
            destination,
            detail: Some(format!("{n} packet(s) not sent by this test")),
        },
    ));
    let mut notes = Vec::new();
    if total > 0 {
        notes.push(format!(
            "{total} packet(s) caught in total: {own_total} of this test's own probes, {} \
             other(s) counted per interface, protocol and destination",
            total - own_total
        ));
    }
    if own_total > MAX_LISTED || groups > MAX_LISTED {
        notes.push(format!(
            "only the first {MAX_LISTED} of this test's packets and {MAX_LISTED} groups of \
             other traffic are listed"
        ));
    }
    (listed, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(destination: &str, detail: Option<&str>) -> LeakedPacket {
        LeakedPacket {
            interface: "eth0".into(),
            protocol: "udp".into(),
            source: "198.51.100.2:40000".into(),
            destination: destination.into(),
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn own_probes_are_shown_in_full_and_other_traffic_only_counted_without_names() {
        let caught = vec![
            leak("198.51.100.1:53", Some("abc.example.test")),
            leak("198.51.100.1:53", Some("secret-intranet.corp")),
            leak("198.51.100.1:53", Some("bank.example")),
        ];
        let (listed, notes) = shape(caught, |l| l.detail.as_deref() == Some("abc.example.test"));
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].detail.as_deref(), Some("abc.example.test"));
        assert_eq!(
            listed[1].detail.as_deref(),
            Some("2 packet(s) not sent by this test")
        );
        let json = serde_json::to_string(&listed).unwrap();
        assert!(!json.contains("secret-intranet") && !json.contains("bank.example"));
        assert!(
            notes[0].contains("3 packet(s) caught in total"),
            "{notes:?}"
        );
    }

    #[test]
    fn thousands_of_leaks_still_fit_one_frame_and_the_total_is_told() {
        let caught: Vec<LeakedPacket> = (0..5000u32)
            .map(|i| {
                leak(
                    &format!("203.0.113.{}:{}", i % 250, i),
                    Some("x.example.test"),
                )
            })
            .collect();
        let (listed, notes) = shape(caught, |l| l.destination.ends_with('7'));
        assert!(listed.len() <= 2 * MAX_LISTED);
        let frame = serde_json::to_vec(&listed).unwrap().len() + notes.concat().len();
        assert!(frame < underpass_proto::MAX_FRAME_LEN / 4, "{frame} bytes");
        assert!(notes[0].contains("5000 packet(s)"), "{notes:?}");
        assert!(notes[1].contains("only the first"), "{notes:?}");
    }
}
