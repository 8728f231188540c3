//! What `pfctl -v -s rules` prints, taken apart for the doctor's firewall layer (macOS), without
//! I/O so that it is tested on every OS.

/// From the sections `## anchor` (our anchor) and `## main` (PF's main ruleset): our anchor's
/// rules with their counters (None when it holds none: no kill switch), and every block rule of
/// the main ruleset.
pub fn split_ruleset(text: &str) -> (Option<Vec<String>>, Vec<String>) {
    let mut ours: Vec<String> = Vec::new();
    let mut foreign = Vec::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("## ") {
            section = if s == "anchor" { "anchor" } else { "main" };
            continue;
        }
        let l = line.trim();
        let is_rule = l.starts_with("pass") || l.starts_with("block");
        match section {
            "anchor" if is_rule => ours.push(l.to_string()),
            // `-v` puts a rule's counters on the next line: they belong to it.
            "anchor" if l.starts_with('[') => {
                if let Some(last) = ours.last_mut() {
                    last.push(' ');
                    last.push_str(l);
                }
            }
            "main" if l.starts_with("block") => foreign.push(format!("PF main ruleset: {l}")),
            _ => {}
        }
    }
    ((!ours.is_empty()).then_some(ours), foreign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pf_listing_splits_into_our_anchor_with_counters_and_other_block_rules() {
        let text = "## anchor\n\
            pass out quick on lo0 all flags S/SA keep state\n  \
            [ Evaluations: 10  Packets: 4  Bytes: 320  States: 1 ]\n\
            block return out quick all\n  \
            [ Evaluations: 6  Packets: 6  Bytes: 504  States: 0 ]\n\
            ## main\n\
            scrub-anchor \"com.apple/*\" all fragment reassemble\n\
            anchor \"underpass\" all\n\
            block drop out quick proto udp from any to any port = 51820\n";
        let (ours, foreign) = split_ruleset(text);
        let ours = ours.expect("our anchor");
        assert_eq!(ours.len(), 2);
        assert!(
            ours[1].ends_with("Packets: 6  Bytes: 504  States: 0 ]"),
            "{ours:?}"
        );
        assert_eq!(
            foreign,
            vec!["PF main ruleset: block drop out quick proto udp from any to any port = 51820"]
        );
        assert_eq!(split_ruleset("## anchor\n## main\n").0, None);
    }
}
