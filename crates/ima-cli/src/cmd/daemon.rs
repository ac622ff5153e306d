//! `imactl daemon status|reload|explain`: the client of imad's control socket
//! (`STATE/imad.sock`, `ima_daemon::control`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(subcommand)]
    what: DaemonCommand,
    /// The state directory imad runs with (its --state). Default: /run/ima for root.
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// Print imad's answer as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum DaemonCommand {
    /// The running daemon: mode, policy (source, rules, version), counts, list length.
    Status,
    /// Load a policy file as the kernel's `echo PATH > policy` (all or nothing: a bad line,
    /// a required signature that does not verify or an older policy_version changes nothing
    /// and says why); without PATH, the file the active policy came from.
    Reload {
        /// The policy file (absolute or relative to here).
        policy: Option<PathBuf>,
    },
    /// The last decision imad made for PATH: the rules that decided it, the verdict, and
    /// what would make a failure pass.
    Explain {
        /// The file, by the name imad saw it opened under.
        path: PathBuf,
    },
}

/// Exit 0 when imad did what was asked, 1 when it refused (a policy not loaded, no decision
/// for the path), 2 when it could not be asked.
pub fn run(a: DaemonArgs) -> anyhow::Result<ExitCode> {
    let dir = a.state.clone().unwrap_or_else(ima_engine::default_dir);
    let request = match &a.what {
        DaemonCommand::Status => json!({ "op": "status" }),
        DaemonCommand::Reload { policy } => {
            let policy = match policy {
                Some(p) => {
                    Some(std::path::absolute(p).with_context(|| format!("{}", p.display()))?)
                }
                None => None,
            };
            json!({ "op": "reload", "policy": policy })
        }
        DaemonCommand::Explain { path } => {
            let path = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
            json!({ "op": "explain", "path": path })
        }
    };
    let answer = ima_daemon::control::call(&dir, &request)
        .context("is imad running with this --state? (imactl daemon needs root)")?;
    if a.json {
        println!("{answer}");
    }
    if answer["ok"] != Value::Bool(true) {
        eprintln!(
            "imactl: imad refused: {}",
            answer["error"].as_str().unwrap_or("(no reason given)")
        );
        return Ok(ExitCode::from(1));
    }
    if a.json {
        return Ok(ExitCode::SUCCESS);
    }
    match &a.what {
        DaemonCommand::Status | DaemonCommand::Reload { .. } => {
            let s = &answer["status"];
            if matches!(a.what, DaemonCommand::Reload { .. }) {
                println!("policy loaded from {}", text(&s["policy_source"]));
            }
            println!(
                "imad pid {}: appraise {}, template {}, hash {}",
                s["pid"],
                text(&s["appraise"]),
                text(&s["template"]),
                text(&s["hash"])
            );
            println!(
                "policy: {} ({} rules, version {}, loaded {} times since start)",
                text(&s["policy_source"]),
                s["policy_rules"],
                if s["policy_version"].is_null() {
                    "none".to_owned()
                } else {
                    s["policy_version"].to_string()
                },
                s["policy_loads"]
            );
            println!(
                "decisions: {} ({} measured, {} denied); list: {} entries",
                s["decided"], s["measured"], s["denied"], s["list_entries"]
            );
        }
        DaemonCommand::Explain { path } => {
            let e = &answer["explain"];
            if e.is_null() {
                eprintln!(
                    "imactl: imad has no decision for {} (not opened since imad started, \
                     cached in the kernel, or forgotten)",
                    path.display()
                );
                return Ok(ExitCode::from(1));
            }
            println!(
                "{}: {} by pid {} (uid {}): {}",
                text(&e["path"]),
                text(&e["func"]),
                e["pid"],
                e["uid"],
                if e["allowed"] == Value::Bool(true) {
                    "allowed"
                } else {
                    "denied"
                }
            );
            for k in ["measure", "appraise", "audit"] {
                println!("  {k}: {}", e[k].as_str().unwrap_or("no rule (not done)"));
            }
            if let Some(c) = e["cause"].as_str() {
                println!(
                    "  appraisal: {} ({c}){}",
                    text(&e["status"]),
                    if e["fixed"] == Value::Bool(true) {
                        ", fixed"
                    } else {
                        ""
                    }
                );
            }
            if let Some(r) = e["remedy"].as_str() {
                println!("  to pass: {r}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
