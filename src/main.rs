use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ce-operator: the Cloud Elements tenancy model as Kubernetes custom resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the CustomResourceDefinitions generated from the Rust types.
    Crdgen {
        /// Directory to write one file per kind into; prints all of them to stdout if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crdgen { out: Some(dir) } => {
            for name in ce_operator::crdgen::write_all(&dir)? {
                eprintln!("wrote {}", dir.join(name).display());
            }
        }
        Command::Crdgen { out: None } => {
            let docs: Vec<String> = ce_operator::crdgen::rendered()?
                .into_iter()
                .map(|(_, content)| content)
                .collect();
            print!("{}", docs.join("---\n"));
        }
    }
    Ok(())
}
