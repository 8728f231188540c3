//! The harness the CLI's integration tests share: a temp dir per test, and the real
//! `underpass` binary pointed at it (config, keys in files, trusted keys, a helper socket that
//! a test may or may not serve). Each test binary uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The binary, run in the temp dir. These tests have no session bus, so keys go to files;
    /// tests/keyring.rs covers the OS keyring.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_underpass"));
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("UNDERPASS_SOCKET")
            .env("UNDERPASS_CONFIG_DIR", self.path("config"))
            .env("UNDERPASS_KEYSTORE", "file")
            .env("UNDERPASS_TRUSTED_KEYS_DIR", self.path("system-keys"))
            .arg("--socket")
            .arg(self.path("helper.sock"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "{args:?} succeeded: {}", stdout(&o));
        stderr(&o)
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
