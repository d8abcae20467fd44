//! Errors of the controller layer: one variant per step, naming the object and the step.
//! A reconcile that fails is retried with per-object backoff; invariant violations are not
//! errors (they are conditions).

/// An object, as errors and logs name it: "CEUser tenants/jane".
#[derive(Clone, Debug)]
pub struct ObjectName {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{object}: adding the finalizer failed: {source}")]
    AddFinalizer { object: ObjectName, source: kube::Error },
    #[error("{object}: removing the finalizer failed: {source}")]
    RemoveFinalizer { object: ObjectName, source: kube::Error },
    #[error("{object}: creating the default account {account} failed: {source}")]
    CreateDefaultAccount {
        object: ObjectName,
        account: String,
        source: kube::Error,
    },
    #[error("{object}: creating the owner {user} failed: {source}")]
    CreateOwner {
        object: ObjectName,
        user: String,
        source: kube::Error,
    },
    #[error("{object}: creating the owner's binding {binding} failed: {source}")]
    CreateOwnerBinding {
        object: ObjectName,
        binding: String,
        source: kube::Error,
    },
    #[error("{object}: pinning the binding to its user failed: {source}")]
    PinToUser { object: ObjectName, source: kube::Error },
    #[error("{object}: deleting {child} failed: {source}")]
    DeleteChild {
        object: ObjectName,
        child: String,
        source: kube::Error,
    },
    #[error("{object}: reading Secret {secret} failed: {source}")]
    ReadSecret {
        object: ObjectName,
        secret: String,
        source: kube::Error,
    },
    #[error("{object}: issuing Secret {secret} failed: {source}")]
    IssueSecret {
        object: ObjectName,
        secret: String,
        source: kube::Error,
    },
    #[error("{object}: rotating Secret {secret} failed: {source}")]
    RotateSecret {
        object: ObjectName,
        secret: String,
        source: kube::Error,
    },
    #[error("{object}: removing the previous value from Secret {secret} failed: {source}")]
    DropPreviousSecret {
        object: ObjectName,
        secret: String,
        source: kube::Error,
    },
    #[error("{object}: adopting the restored Secret {secret} failed: {source}")]
    AdoptSecret {
        object: ObjectName,
        secret: String,
        source: kube::Error,
    },
    #[error("{object}: putting the labels of Secret {secret} back failed: {source}")]
    RelabelSecret {
        object: ObjectName,
        secret: String,
        source: kube::Error,
    },
    #[error("{object}: writing status failed: {source}")]
    WriteStatus { object: ObjectName, source: kube::Error },
    #[error("{object}: the OS random generator failed: {source}")]
    Random {
        object: ObjectName,
        source: rand::rand_core::OsError,
    },
}

impl Error {
    /// The failed step, as a metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::AddFinalizer { .. } => "add_finalizer",
            Error::RemoveFinalizer { .. } => "remove_finalizer",
            Error::CreateDefaultAccount { .. } => "create_default_account",
            Error::CreateOwner { .. } => "create_owner",
            Error::CreateOwnerBinding { .. } => "create_owner_binding",
            Error::PinToUser { .. } => "pin_to_user",
            Error::DeleteChild { .. } => "delete_child",
            Error::ReadSecret { .. } => "read_secret",
            Error::IssueSecret { .. } => "issue_secret",
            Error::RotateSecret { .. } => "rotate_secret",
            Error::DropPreviousSecret { .. } => "drop_previous_secret",
            Error::AdoptSecret { .. } => "adopt_secret",
            Error::RelabelSecret { .. } => "relabel_secret",
            Error::WriteStatus { .. } => "write_status",
            Error::Random { .. } => "random",
        }
    }

    /// Whether the step failed because what it wrote to is gone: the object itself (its
    /// finalizer or its status), or the namespace it created something in.
    pub fn object_gone(&self) -> bool {
        match self {
            Error::AddFinalizer { source, .. } | Error::WriteStatus { source, .. } => not_found(source),
            _ => self.api_error().is_some_and(namespace_not_found),
        }
    }

    /// The API server's error, if the step failed there.
    pub fn api_error(&self) -> Option<&kube::Error> {
        match self {
            Error::AddFinalizer { source, .. }
            | Error::RemoveFinalizer { source, .. }
            | Error::CreateDefaultAccount { source, .. }
            | Error::CreateOwner { source, .. }
            | Error::CreateOwnerBinding { source, .. }
            | Error::PinToUser { source, .. }
            | Error::DeleteChild { source, .. }
            | Error::ReadSecret { source, .. }
            | Error::IssueSecret { source, .. }
            | Error::RotateSecret { source, .. }
            | Error::DropPreviousSecret { source, .. }
            | Error::AdoptSecret { source, .. }
            | Error::RelabelSecret { source, .. }
            | Error::WriteStatus { source, .. } => Some(source),
            Error::Random { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the API server refused a create because the namespace is being deleted.
pub fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

/// Whether the API server said the object does not exist.
pub fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

/// Whether the API server refused a create because the namespace does not exist.
pub fn namespace_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces"))
}

/// Whether the API server said the object exists already.
pub fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}
