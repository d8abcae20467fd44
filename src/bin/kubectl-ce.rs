//! `kubectl ce`: the kubectl plugin of ce-operator (kubectl runs `kubectl-ce` from the PATH).

use std::process::ExitCode;

use ce_operator::cli::{self, can_i, secret, tree};
use clap::{Parser, Subcommand};

/// Tenancy at a glance: organizations, accounts and users as the operator sees them; who
/// may do what; secrets rotated and described, never shown.
#[derive(Parser)]
#[command(name = "kubectl ce", bin_name = "kubectl ce", version)]
struct Cli {
    #[command(flatten)]
    kube: cli::KubeFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The organization → accounts → users tree, with Ready, reasons, roles, the default
    /// account, the super-organization's denylist and the effective safelist.
    Tree(tree::Args),
    /// Whether a user may do something, and why (the authorization endpoint's decision).
    /// Exits 0 for yes, 1 for no.
    CanI(can_i::Args),
    /// Rotate the secret of an organization or a user, and wait for the new fingerprint.
    Rotate(secret::RotateArgs),
    /// The state of the secret of an organization or a user (never its value).
    DescribeSecret(secret::Args),
}

async fn run(kube: &cli::KubeFlags, command: Command) -> cli::Result<ExitCode> {
    match command {
        Command::Tree(args) => tree::run(kube, &args).await.map(|()| ExitCode::SUCCESS),
        Command::CanI(args) => {
            let allowed = can_i::run(kube, &args).await?;
            Ok(if allowed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Rotate(args) => secret::rotate(kube, &args).await.map(|()| ExitCode::SUCCESS),
        Command::DescribeSecret(args) => secret::describe(kube, &args).await.map(|()| ExitCode::SUCCESS),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&cli.kube, cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            // 2, as for a usage error: distinct from can-i's "no" (1).
            ExitCode::from(2)
        }
    }
}
