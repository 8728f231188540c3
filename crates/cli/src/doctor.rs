//! `underpass doctor`: the helper walks the tunnel's seven layers; this prints its report for
//! a person (the first failing layer highlighted; `DoctorReport::to_text` in the contract
//! crate, which the app's "Copy for support" uses too) or as JSON, and can apply the MTU the
//! path-MTU probe measured. The exit status is non-zero when any layer fails.

use anyhow::{bail, Result};
use underpass_proto::client::Client;
use underpass_proto::{DoctorOptions, DoctorReport, Request, Response};

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
        emit(&report.to_text())?;
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
