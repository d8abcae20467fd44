use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kube::{
    Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use tracing_subscriber::{EnvFilter, fmt};

/// jemalloc: with glibc's malloc the operator's RSS stayed at the high-water mark of its
/// initial lists and bursts (freed memory spread over per-thread arenas); see the README's
/// benchmark section for the figures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: a background thread hands pages freed for a
/// second back to the system, so that RSS follows the live heap.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

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
    Run(Box<RunArgs>),
    /// Whether a user may do something, and why: the authorization endpoint's decision, on
    /// the tenancy objects read with your kubeconfig (no secret needed or shown).
    CanI {
        #[command(flatten)]
        kube: ce_operator::cli::KubeFlags,
        #[command(flatten)]
        args: Box<ce_operator::cli::can_i::Args>,
    },
    /// Write the CustomResourceDefinitions generated from the Rust types.
    Crdgen {
        /// Directory to write one file per kind into; prints all of them to stdout if absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the API reference (Markdown, from the same types) to this file.
        #[arg(long)]
        docs: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig to use. When absent: the files of $KUBECONFIG (merged as kubectl merges
    /// them), ~/.kube/config, or in a pod the in-cluster configuration.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CE_NAMESPACE")]
    namespace: Option<String>,
    /// Concurrent reconciles per controller.
    #[arg(long, env = "CE_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Every object is reconciled again this often (0s: never), whatever woke it or not: a
    /// safety net, as controller-runtime's SyncPeriod. A reconcile with nothing to do reads
    /// the caches and writes nothing.
    #[arg(long = "resync-period", env = "CE_RESYNC_PERIOD", default_value = "1h", value_parser = go_duration)]
    resync: std::time::Duration,
    /// How the watches read the objects that exist when they start: `stream` (as watch
    /// events; Kubernetes 1.32+) or `list` (one LIST per kind, for older API servers).
    #[arg(long = "initial-list", env = "CE_INITIAL_LIST", value_enum, default_value_t)]
    initial_list: ce_operator::cache::InitialList,
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
    /// Secret holding the issuance key, which tells the secrets this operator issued from
    /// planted or changed ones; made at first start. Back it up with the tenants' Secrets.
    #[arg(
        long = "issuance-key-secret",
        env = "CE_ISSUANCE_KEY_SECRET",
        default_value = "ce-operator-issuance-key"
    )]
    issuance_key_secret: String,
    /// Namespace of that Secret (in a pod: its own namespace).
    #[arg(long = "issuance-key-namespace", env = "POD_NAMESPACE", default_value = "default")]
    issuance_key_namespace: String,
    #[command(flatten)]
    webhook: WebhookArgs,
    /// Serve the authorization endpoint (on every replica).
    #[arg(long = "authz", env = "CE_AUTHZ", default_value_t = true, action = clap::ArgAction::Set)]
    authz: bool,
    /// Address of the authorization endpoint (/authz/check, /v1/decisions; HTTP/1.1 and h2c).
    #[arg(long = "authz-addr", env = "CE_AUTHZ_ADDR", default_value = "0.0.0.0:8082")]
    authz_addr: std::net::SocketAddr,
    /// Serve the tenant API (the seeds' REST routes for CE users: /users, /accounts,
    /// /organizations/{id}/elements-safelist, /openapi.json) on this address; over TLS with
    /// --authz-tls-cert-file's certificate when given (without client certificates).
    #[arg(long = "tenant-api-addr", env = "CE_TENANT_API_ADDR")]
    tenant_api_addr: Option<std::net::SocketAddr>,
    /// Also serve Envoy's gRPC ext_authz (envoy.service.auth.v3.Authorization/Check) on this
    /// address (not served unless set).
    #[arg(long = "authz-grpc-addr", env = "CE_AUTHZ_GRPC_ADDR")]
    authz_grpc_addr: Option<std::net::SocketAddr>,
    /// Serve the authorization endpoints over TLS with this certificate (PEM; read again
    /// when it changes).
    #[arg(
        long = "authz-tls-cert-file",
        env = "CE_AUTHZ_TLS_CERT_FILE",
        requires = "authz_tls_key"
    )]
    authz_tls_cert: Option<std::path::PathBuf>,
    /// The private key of --authz-tls-cert-file (PEM).
    #[arg(
        long = "authz-tls-key-file",
        env = "CE_AUTHZ_TLS_KEY_FILE",
        requires = "authz_tls_cert"
    )]
    authz_tls_key: Option<std::path::PathBuf>,
    /// Require clients (the gateway) to present a certificate signed by one of these CAs
    /// (PEM): mutual TLS.
    #[arg(
        long = "authz-tls-client-ca-file",
        env = "CE_AUTHZ_TLS_CLIENT_CA_FILE",
        requires = "authz_tls_cert"
    )]
    authz_tls_client_ca: Option<std::path::PathBuf>,
}

/// The validating admission webhook.
#[derive(clap::Args)]
struct WebhookArgs {
    /// Serve the admission webhook (on every replica).
    #[arg(long = "webhook", env = "CE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set)]
    enabled: bool,
    /// Address of the webhook's HTTPS endpoint (/validate).
    #[arg(long = "webhook-addr", env = "CE_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    addr: std::net::SocketAddr,
    /// Secret holding the webhook's CA and serving certificate, in the operator's namespace.
    #[arg(
        long = "webhook-secret",
        env = "CE_WEBHOOK_SECRET",
        default_value = "ce-operator-webhook-tls"
    )]
    secret: String,
    /// Namespace of that Secret (in a pod: its own namespace).
    #[arg(long = "webhook-secret-namespace", env = "POD_NAMESPACE", default_value = "default")]
    secret_namespace: String,
    /// The ValidatingWebhookConfiguration whose caBundle the operator keeps.
    #[arg(
        long = "webhook-config-name",
        env = "CE_WEBHOOK_CONFIG_NAME",
        default_value = "ce-operator"
    )]
    config_name: String,
    /// Names (DNS names or IP addresses) of the serving certificate, e.g. the Service's
    /// <name>.<namespace>.svc. Repeat, or separate with commas.
    #[arg(
        long = "webhook-dns-name",
        env = "CE_WEBHOOK_DNS_NAMES",
        value_delimiter = ',',
        default_value = "localhost"
    )]
    names: Vec<String>,
    /// Validity of the generated CA and serving certificate (renewed with a third left).
    #[arg(long = "webhook-cert-validity", env = "CE_WEBHOOK_CERT_VALIDITY", default_value = "8760h", value_parser = go_duration)]
    validity: std::time::Duration,
    /// Who writes the certificates and the caBundle: the operator (operator), or someone
    /// else such as cert-manager (external: the operator only serves what the Secret holds).
    #[arg(long = "webhook-certs", env = "CE_WEBHOOK_CERTS", value_enum, default_value_t = CertManagement::Operator)]
    certs: CertManagement,
    /// Answer only clients with a certificate of this CA bundle (PEM): the API server, as its
    /// admission configuration presents one. Unset: any client that reaches the port.
    #[arg(long = "webhook-client-ca-file", env = "CE_WEBHOOK_CLIENT_CA_FILE")]
    client_ca: Option<std::path::PathBuf>,
    /// With --webhook-client-ca-file: the names (common name or DNS name) a client
    /// certificate must carry, e.g. the API server's webhook client. Repeat, or separate with
    /// commas; unset: any certificate of the CA.
    #[arg(
        long = "webhook-client-name",
        env = "CE_WEBHOOK_CLIENT_NAMES",
        value_delimiter = ',',
        requires = "client_ca"
    )]
    client_names: Vec<String>,
    /// Usernames outside the CE rules of who may act (RBAC alone decides for them), besides
    /// cluster administrators (system:masters) and the control plane's controllers: e.g. a
    /// GitOps controller's ServiceAccount. Repeat, or separate with commas.
    #[arg(long = "platform-user", env = "CE_PLATFORM_USERS", value_delimiter = ',')]
    platform_users: Vec<String>,
    /// Groups outside the CE rules of who may act, besides system:masters.
    #[arg(long = "platform-group", env = "CE_PLATFORM_GROUPS", value_delimiter = ',')]
    platform_groups: Vec<String>,
    /// A Kubernetes identity names its CE user by e-mail: its username without this prefix
    /// (the API server's --oidc-username-prefix, e.g. `oidc:`).
    #[arg(
        long = "tenant-username-prefix",
        env = "CE_TENANT_USERNAME_PREFIX",
        default_value = ""
    )]
    tenant_username_prefix: String,
    /// Instead of the username, the first value of this key of the request's userInfo.extra
    /// (a claim the authenticator copies there, e.g. `email`).
    #[arg(long = "tenant-email-extra", env = "CE_TENANT_EMAIL_EXTRA")]
    tenant_email_extra: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CertManagement {
    Operator,
    External,
}

/// A duration as Kubernetes (and Go) write them: 30s, 24h, 1h30m.
fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<kube::core::Duration>()
        .map(std::time::Duration::from)
        .map_err(|e| format!("{text}: {e}"))
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

async fn config(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    })
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
    let config = config(args.kubeconfig.as_ref()).await?;
    let instance = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).ok();
    let identity = format!(
        "{}-{:08x}",
        instance.clone().unwrap_or_else(|| "ce-operator".into()),
        rand::random::<u32>()
    );
    let authz_tls = args
        .authz_tls_cert
        .zip(args.authz_tls_key)
        .map(|(cert, key)| ce_operator::authz::tls::Files {
            cert,
            key,
            client_ca: args.authz_tls_client_ca,
        });
    let options = ce_operator::runtime::Options {
        namespace: args.namespace,
        initial_list: args.initial_list,
        controllers: ce_operator::controller::Options {
            concurrency: args.concurrency,
            resync: (!args.resync.is_zero()).then_some(args.resync),
            instance,
        },
        http_addr: args.http_addr,
        webhook: args.webhook.enabled.then_some(ce_operator::runtime::Webhook {
            addr: args.webhook.addr,
            tls: ce_operator::webhook::tls::Options {
                namespace: args.webhook.secret_namespace,
                secret: args.webhook.secret,
                config: args.webhook.config_name,
                names: args.webhook.names,
                validity: args.webhook.validity,
                managed: matches!(args.webhook.certs, CertManagement::Operator),
            },
            client_auth: args.webhook.client_ca.map(|ca_file| ce_operator::webhook::ClientAuth {
                ca_file,
                names: args.webhook.client_names,
            }),
            tenancy: ce_operator::webhook::actor::Tenancy {
                platform_users: args.webhook.platform_users,
                platform_groups: args.webhook.platform_groups,
                username_prefix: args.webhook.tenant_username_prefix,
                email_extra: args.webhook.tenant_email_extra,
            },
        }),
        tenant_api: args.tenant_api_addr.map(|addr| ce_operator::tenant_api::Options {
            addr,
            tls: authz_tls.clone().map(|files| ce_operator::authz::tls::Files {
                client_ca: None,
                ..files
            }),
        }),
        authz: args.authz.then_some(ce_operator::authz::Options {
            addr: args.authz_addr,
            grpc_addr: args.authz_grpc_addr,
            tls: authz_tls,
        }),
        issuance_key: ce_operator::runtime::IssuanceKeySecret {
            namespace: args.issuance_key_namespace,
            name: args.issuance_key_secret,
        },
        leader_election: args.leader_election.then(|| ce_operator::runtime::LeaderElection {
            namespace: args.lease_namespace,
            lease_name: args.lease_name,
            identity,
            lease_duration: std::time::Duration::from_secs(args.lease_duration),
        }),
    };
    ce_operator::runtime::run(config, options, shutdown_signal()).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(*args)),
        Command::CanI { kube, args } => {
            let allowed = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(ce_operator::cli::can_i::run(&kube, &args))?;
            std::process::exit(if allowed { 0 } else { 1 })
        }
        Command::Crdgen { out, docs: Some(file) } => {
            if let Some(dir) = out {
                for name in ce_operator::crdgen::write_all(&dir)? {
                    eprintln!("wrote {}", dir.join(name).display());
                }
            }
            std::fs::write(&file, ce_operator::crdgen::api_reference())?;
            eprintln!("wrote {}", file.display());
            Ok(())
        }
        Command::Crdgen {
            out: Some(dir),
            docs: None,
        } => {
            for name in ce_operator::crdgen::write_all(&dir)? {
                eprintln!("wrote {}", dir.join(name).display());
            }
            Ok(())
        }
        Command::Crdgen { out: None, docs: None } => {
            let docs: Vec<String> = ce_operator::crdgen::rendered()?
                .into_iter()
                .map(|(_, content)| content)
                .collect();
            print!("{}", docs.join("---\n"));
            Ok(())
        }
    }
}
