//! Writes the CLI's shell completions and man page, generated from its own grammar, for the
//! Linux packages (installers/linux/package.sh):
//!   cargo run -p underpass-cli --example gen-docs -- OUT_DIR
//! gives OUT_DIR/underpass.bash, underpass.fish, _underpass (zsh) and underpass.1.

#[allow(dead_code)] // the grammar's helpers that only commands.rs calls
#[path = "../src/cli.rs"]
mod cli;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .context("usage: gen-docs OUT_DIR")?,
    );
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut command = cli::Cli::command();
    for shell in [Shell::Bash, Shell::Fish, Shell::Zsh] {
        let path = clap_complete::generate_to(shell, &mut command, "underpass", &out)
            .with_context(|| format!("writing {shell} completions to {}", out.display()))?;
        println!("{}", path.display());
    }
    let page = out.join("underpass.1");
    let mut roff = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut roff)
        .context("rendering the man page")?;
    std::fs::write(&page, roff).with_context(|| format!("writing {}", page.display()))?;
    println!("{}", page.display());
    Ok(())
}
