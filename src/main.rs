use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use tracing_subscriber::{EnvFilter, fmt};

/// ce-operator: the Cloud Elements tenancy model as Kubernetes custom resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers.
    Run(RunArgs),
    /// Write the CustomResourceDefinitions generated from the Rust types.
    Crdgen {
        /// Directory to write one file per kind into; prints all of them to stdout if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig to use; in a pod the in-cluster configuration is used when absent.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CE_NAMESPACE")]
    namespace: Option<String>,
    /// Concurrent reconciles per controller.
    #[arg(long, env = "CE_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Log format. The level comes from RUST_LOG (default: info).
    #[arg(long, env = "CE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "CE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Elect a leader on a coordination.k8s.io Lease, so that several replicas can run and
    /// only the leader reconciles and writes.
    #[arg(long, env = "CE_LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Namespace of the leader Lease (in a pod: its own namespace, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "CE_LEASE_NAME", default_value = "ce-operator")]
    lease_name: String,
    /// Seconds a lease lasts without renewal: a standby takes over within about this.
    #[arg(long, env = "CE_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        // Colours only on a terminal, so that captured logs stay plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutdown requested; finishing in-flight reconciles");
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let client = client(args.kubeconfig.as_ref()).await?;
    let instance = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).ok();
    let identity = format!(
        "{}-{:08x}",
        instance.clone().unwrap_or_else(|| "ce-operator".into()),
        rand::random::<u32>()
    );
    let options = ce_operator::runtime::Options {
        namespace: args.namespace,
        controllers: ce_operator::controller::Options {
            concurrency: args.concurrency,
            instance,
        },
        http_addr: args.http_addr,
        leader_election: args.leader_election.then(|| ce_operator::runtime::LeaderElection {
            namespace: args.lease_namespace,
            lease_name: args.lease_name,
            identity,
            lease_duration: std::time::Duration::from_secs(args.lease_duration),
        }),
    };
    ce_operator::runtime::run(client, options, shutdown_signal()).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(args)),
        Command::Crdgen { out: Some(dir) } => {
            for name in ce_operator::crdgen::write_all(&dir)? {
                eprintln!("wrote {}", dir.join(name).display());
            }
            Ok(())
        }
        Command::Crdgen { out: None } => {
            let docs: Vec<String> = ce_operator::crdgen::rendered()?
                .into_iter()
                .map(|(_, content)| content)
                .collect();
            print!("{}", docs.join("---\n"));
            Ok(())
        }
    }
}
