//! `underpass doctor`: the helper walks the tunnel's seven layers; this prints its report for
//! a person (the first failing layer highlighted) or as JSON, and can apply the MTU the
//! path-MTU probe measured. The exit status is non-zero when any layer fails.

use anyhow::{bail, Result};
use underpass_proto::client::Client;
use underpass_proto::{DoctorOptions, DoctorReport, LayerVerdict, Request, Response};

use crate::commands::{emit, Ctx, CLIENT_NAME};

pub async fn doctor(ctx: &Ctx, options: DoctorOptions, apply_mtu: bool) -> Result<()> {
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    let mut report = examine(&mut client, &options).await?;
    if apply_mtu {
        match report.mtu.as_ref().and_then(|m| m.suggested) {
            Some(mtu) => {
                match client.request(Request::SetMtu { mtu }).await? {
                    Response::Accepted => {}
                    other => bail!("the helper answered {other:?} to setting the MTU"),
                }
                eprintln!("Tunnel MTU set to {mtu}; checking again.");
                report = examine(&mut client, &options).await?;
            }
            None => eprintln!("The MTU needs no change (or the profile sets it)."),
        }
    }
    if ctx.json {
        ctx.print_json(&report)?;
    } else {
        emit(&render(&report))?;
    }
    match report.first_failure() {
        Some(l) => bail!("the {} layer fails", l.id),
        None => Ok(()),
    }
}

async fn examine<S>(client: &mut Client<S>, options: &DoctorOptions) -> Result<DoctorReport>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = Request::Doctor {
        options: options.clone(),
    };
    match client.request(request).await? {
        Response::Doctor { report } => Ok(*report),
        other => bail!("the helper answered {other:?} to the doctor"),
    }
}

fn label(v: LayerVerdict) -> &'static str {
    match v {
        LayerVerdict::Ok => "ok",
        LayerVerdict::Warn => "WARN",
        LayerVerdict::Fail => "FAIL",
        LayerVerdict::Skipped => "skipped",
    }
}

/// The report for a person: one block per layer, the first failure marked and in full.
pub fn render(report: &DoctorReport) -> String {
    let first = report.first_failure().map(|l| l.id);
    let mut s = String::new();
    for (n, l) in report.layers.iter().enumerate() {
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
    match report.layers.iter().find(|l| Some(l.id) == first) {
        Some(l) => s.push_str(&format!(
            "\nFirst failing layer: {} — {}\n",
            l.id,
            l.fix.as_deref().unwrap_or(&l.explanation)
        )),
        None => s.push_str("\nAll layers pass.\n"),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_proto::{Layer, LayerId};

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
        let text = render(&report);
        assert!(text.contains(">> 2. routes"), "{text}");
        assert!(text.contains("(depends on routes)"));
        assert!(text.contains("First failing layer: routes — fix routes"));
        assert!(
            !text.contains("firewall explained"),
            "skipped layers explain nothing"
        );
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
