//! ce-operator: runs the Cloud Elements tenancy model (organizations, accounts, users, roles,
//! element safelists) as Kubernetes custom resources.

pub mod api;
pub mod authz;
pub mod cache;
pub mod cli;
pub mod client;
pub mod client_auth;
pub mod clock;
pub mod controller;
pub mod crdgen;
pub mod kinds;
pub mod metrics;
pub mod model;
pub mod runtime;
pub mod serve;
pub mod tenant_api;
pub mod webhook;
