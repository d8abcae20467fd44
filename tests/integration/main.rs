//! The integration tests: one test crate (one link of the operator's crate, not one per
//! file), a module per area, all against a real control plane (`support::kubeconfig_path`).
//!
//! Most modules run side by side on the shared test cluster: each test works in namespaces
//! of its own, with an operator watching only those. The modules `hack/test.sh` names cannot
//! share a cluster with anything else (an operator over all namespaces, the API server's
//! global counters, faults done to the control plane, an etcd restore): it runs them with a
//! name filter, one module at a time (the faults on a second cluster, beside the rest).

mod support;

mod authz;
mod chart;
mod cluster;
mod crd_drift;
mod crds;
mod etcd_restore;
mod faults;
mod gitops;
mod observability;
mod operator;
mod plugin;
mod quiet;
mod roles;
mod runtime;
mod safelist;
mod tenant_api;
mod tenants;
mod webhook;
