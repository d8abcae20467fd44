//! The pure model: everything the operator decides, as functions of their inputs, with no
//! I/O. Controllers gather the inputs from the cluster, call these, and write the results.

pub mod conditions;
pub mod names;
pub mod privileges;
pub mod safelist;
pub mod secrets;
pub mod tenancy;
