//! The doctor's report as plain text, for a person: what `underpass doctor` prints and what
//! the app's "Copy for support" and diagnostics report carry. One renderer, here beside the
//! types, so the CLI and the app cannot drift apart.

use crate::{DoctorReport, LayerVerdict};

fn label(v: LayerVerdict) -> &'static str {
    match v {
        LayerVerdict::Ok => "ok",
        LayerVerdict::Warn => "WARN",
        LayerVerdict::Fail => "FAIL",
        LayerVerdict::Skipped => "skipped",
    }
}

impl DoctorReport {
    /// One block per layer, the first failure marked `>>` and repeated at the end with its fix.
    pub fn to_text(&self) -> String {
        let first = self.first_failure().map(|l| l.id);
        let mut s = String::new();
        for (n, l) in self.layers.iter().enumerate() {
            let marker = if Some(l.id) == first { ">>" } else { "  " };
            s.push_str(&format!(
                "{marker} {}. {:<14} {:<8} {}\n",
                n + 1,
                l.id.as_str(),
                label(l.verdict),
                l.id.question()
            ));
            if let Some(on) = l.depends_on {
                s.push_str(&format!("         (depends on {on})\n"));
            }
            for e in &l.evidence {
                s.push_str(&format!("         - {e}\n"));
            }
            if l.verdict != LayerVerdict::Skipped {
                s.push_str(&format!("         {}\n", l.explanation));
            }
            if let Some(fix) = &l.fix {
                s.push_str(&format!("         Fix: {fix}\n"));
            }
        }
        match self.layers.iter().find(|l| Some(l.id) == first) {
            Some(l) => s.push_str(&format!(
                "\nFirst failing layer: {} — {}\n",
                l.id,
                l.fix.as_deref().unwrap_or(&l.explanation)
            )),
            None => s.push_str("\nAll layers pass.\n"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::{DoctorReport, Layer, LayerId, LayerVerdict};

    fn layer(id: LayerId, verdict: LayerVerdict) -> Layer {
        Layer {
            id,
            verdict,
            depends_on: (verdict == LayerVerdict::Skipped).then_some(LayerId::Routes),
            evidence: vec![format!("{id} evidence")],
            explanation: format!("{id} explained"),
            fix: (verdict == LayerVerdict::Fail).then(|| format!("fix {id}")),
        }
    }

    #[test]
    fn the_first_failing_layer_is_marked_and_named_with_its_fix() {
        let report = DoctorReport {
            layers: vec![
                layer(LayerId::ControlPlane, LayerVerdict::Ok),
                layer(LayerId::Routes, LayerVerdict::Fail),
                layer(LayerId::Firewall, LayerVerdict::Skipped),
            ],
            mtu: None,
        };
        let text = report.to_text();
        assert!(text.contains(">> 2. routes"), "{text}");
        assert!(text.contains("(depends on routes)"));
        assert!(text.contains("First failing layer: routes — fix routes"));
        assert!(
            !text.contains("firewall explained"),
            "skipped layers explain nothing"
        );
    }

    #[test]
    fn a_healthy_report_says_all_layers_pass() {
        let report = DoctorReport {
            layers: LayerId::ALL
                .iter()
                .map(|&id| layer(id, LayerVerdict::Ok))
                .collect(),
            mtu: None,
        };
        let text = report.to_text();
        assert!(!text.contains(">>"), "{text}");
        assert!(text.ends_with("\nAll layers pass.\n"), "{text}");
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let report = DoctorReport {
            layers: vec![layer(LayerId::ControlPlane, LayerVerdict::Ok)],
            mtu: None,
        };
        let v = serde_json::to_value(&report).unwrap();
        let l = &v["layers"][0];
        assert_eq!(l["id"], "control-plane");
        assert_eq!(l["verdict"], "ok");
        for field in ["evidence", "explanation", "fix"] {
            assert!(l.get(field).is_some(), "missing {field}");
        }
    }
}
