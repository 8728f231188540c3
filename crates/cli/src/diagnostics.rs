//! `underpass selftest`: runs the helper's leak tests and shows their evidence.
//!
//! The tests run in the helper (only it can capture and probe); this prints the progress it
//! pushes and the report it returns, as text or as the report JSON itself (`--json`).

use anyhow::{bail, Result};
use underpass_proto::client::Client;
use underpass_proto::{
    Event, Request, Response, SelfTestKind, SelfTestOptions, SelfTestReport, Verdict,
};

use crate::cli::SelfTestChoice;
use crate::commands::{emit, Ctx, CLIENT_NAME};

pub async fn selftest(ctx: &Ctx, choice: SelfTestChoice, options: SelfTestOptions) -> Result<()> {
    let tests = match choice {
        SelfTestChoice::Dns => vec![SelfTestKind::Dns],
        SelfTestChoice::Killswitch => vec![SelfTestKind::KillSwitch],
        SelfTestChoice::All => vec![SelfTestKind::Dns, SelfTestKind::KillSwitch],
    };
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    // Progress comes on a second, subscribed connection, so it shows while the test runs.
    let progress = if ctx.json {
        None
    } else {
        let mut events = Client::connect(&ctx.socket, CLIENT_NAME).await?;
        events.request(Request::Subscribe).await?;
        Some(tokio::spawn(async move {
            while let Ok(event) = events.next_event().await {
                if let Event::SelfTestProgress { test, step } = event {
                    eprintln!("  [{}] {step}", title(test));
                }
            }
        }))
    };
    let mut reports = Vec::new();
    for test in tests {
        let request = Request::SelfTest {
            test,
            options: options.clone(),
        };
        match client.request(request).await? {
            Response::SelfTest { report } => {
                if !ctx.json {
                    emit(&render(&report))?;
                }
                reports.push(*report);
            }
            other => bail!("the helper answered {other:?} to a self-test"),
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    if ctx.json {
        ctx.print_json(&reports)?;
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| title(r.test))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} failed: traffic left outside the tunnel (see above)",
            failed.join(" and ")
        );
    }
    Ok(())
}

fn title(test: SelfTestKind) -> &'static str {
    match test {
        SelfTestKind::Dns => "DNS-leak test",
        SelfTestKind::KillSwitch => "Kill-switch test",
    }
}

/// The report in plain words: the verdict first, then the evidence it rests on.
pub fn render(r: &SelfTestReport) -> String {
    let verdict = match r.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "INCONCLUSIVE",
    };
    let mut out = format!(
        "{}: {verdict} ({:.1} s)\n  Listened on: {}\n",
        title(r.test),
        r.duration_ms as f64 / 1000.0,
        if r.captured_on.is_empty() {
            "(no interface)".to_string()
        } else {
            r.captured_on.join(", ")
        }
    );
    for resolver in &r.resolvers {
        out.push_str(&format!(
            "  Resolver {}: via {}{}\n",
            resolver.server,
            resolver.interface.as_deref().unwrap_or("no route"),
            if resolver.through_tunnel {
                " (through the tunnel)"
            } else {
                " (NOT through the tunnel)"
            }
        ));
    }
    out.push_str(&format!("  Sent ({}):\n", r.sent.len()));
    for line in &r.sent {
        out.push_str(&format!("    {line}\n"));
    }
    if r.leaks.is_empty() {
        out.push_str("  Seen outside the tunnel: nothing\n");
    } else {
        out.push_str(&format!("  Seen outside the tunnel ({}):\n", r.leaks.len()));
        for l in &r.leaks {
            out.push_str(&format!(
                "    on {}: {} {} -> {}{}\n",
                l.interface,
                l.protocol,
                l.source,
                l.destination,
                l.detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
    }
    for note in &r.notes {
        out.push_str(&format!("  Note: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_proto::{LeakedPacket, ResolverRoute};

    #[test]
    fn a_failed_report_shows_each_leak_with_interface_and_query() {
        let r = SelfTestReport {
            test: SelfTestKind::Dns,
            verdict: Verdict::Fail,
            duration_ms: 1500,
            captured_on: vec!["eth0".into()],
            sent: vec!["resolved a.example through the system resolver: no answer".into()],
            leaks: vec![LeakedPacket {
                interface: "eth0".into(),
                protocol: "udp".into(),
                source: "198.51.100.2:40000".into(),
                destination: "198.51.100.1:53".into(),
                detail: Some("a.example.".into()),
            }],
            resolvers: vec![ResolverRoute {
                server: "198.51.100.1".parse().unwrap(),
                interface: Some("eth0".into()),
                through_tunnel: false,
            }],
            notes: vec![],
        };
        let text = render(&r);
        assert!(text.starts_with("DNS-leak test: FAIL (1.5 s)\n"), "{text}");
        assert!(text.contains("Resolver 198.51.100.1: via eth0 (NOT through the tunnel)"));
        assert!(text.contains("on eth0: udp 198.51.100.2:40000 -> 198.51.100.1:53 (a.example.)"));
    }
}
