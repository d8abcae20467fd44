//! The command-line tools beside the operator: `ce-operator can-i` and the kubectl plugin
//! `kubectl ce` (src/bin/kubectl-ce.rs). They read the tenancy objects with the caller's
//! kubeconfig and reuse the operator's types and pure model; none of them shows a secret.

pub mod can_i;
pub mod secret;
pub mod tree;

use std::path::PathBuf;

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// What went wrong, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
    },
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Usage(String),
    #[error("timed out after {0:?}: {1}")]
    Timeout(std::time::Duration, String),
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("writing the output: {0}")]
    Output(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A failed request on object `name` of `kind`, with 404 and 403 said plainly.
    pub fn of_request(kind: &'static str, name: &str, namespace: &str, error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) if status.code == 404 => Error::NotFound {
                kind,
                name: name.to_owned(),
                namespace: namespace.to_owned(),
            },
            kube::Error::Api(status) if status.code == 403 => Error::Forbidden(status.message.clone()),
            _ => Error::Api(error),
        }
    }
}

/// Every object of kind `K` in `ns`.
pub async fn list<K>(client: &Client, ns: &str) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), ns);
    match api.list(&kube::api::ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(Error::Forbidden(status.message)),

        Err(e) => Err(Error::Api(e)),
    }
}

/// The usual kubectl connection flags (kubectl passes them on to a plugin as given).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KubeFlags {
    /// Path to the kubeconfig file (default: the files of $KUBECONFIG, merged as kubectl
    /// merges them, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

impl KubeFlags {
    /// A client for the chosen kubeconfig and context, and the namespace to work in.
    pub async fn connect(&self) -> Result<(Client, String)> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Config(e.to_string()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None if self.context.is_some() => Config::from_kubeconfig(&options).await,
            None => return Self::infer(self.namespace.clone()).await,
        }
        .map_err(|e| Error::Config(e.to_string()))?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)?;
        Ok((client, namespace))
    }

    async fn infer(namespace: Option<String>) -> Result<(Client, String)> {
        let config = Config::infer().await.map_err(|e| Error::Config(e.to_string()))?;
        let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
        Ok((Client::try_from(config)?, namespace))
    }
}

/// `-o`: data for programs instead of text for people.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Prints `data` as JSON or YAML.
pub fn print_data<T: serde::Serialize>(data: &T, format: Format) -> Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(data)
            .map(|t| t + "\n")
            .map_err(|e| Error::Output(e.to_string()))?,
        Format::Yaml => serde_saphyr::to_string(data).map_err(|e| Error::Output(e.to_string()))?,
    };
    print!("{text}");
    Ok(())
}

/// Colours for a terminal; nothing when the output is piped.
#[derive(Clone, Copy, Debug)]
pub struct Paint {
    pub enabled: bool,
}

impl Paint {
    pub fn for_stdout() -> Self {
        let enabled = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
        Self { enabled }
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn problem(self, text: &str) -> String {
        self.wrap("1;31", text)
    }

    pub fn pending(self, text: &str) -> String {
        self.wrap("33", text)
    }

    pub fn good(self, text: &str) -> String {
        self.wrap("32", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
}
