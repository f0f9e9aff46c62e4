//! Integration tests of the `pwt` binary on real temporary repositories.

mod common;

mod concurrency;
mod config;
mod contract;
mod docker;
mod frameworks;
mod kills;
mod lifecycle;
mod mcp;
mod names;
mod oidc;
mod ownership;
mod people;
mod promises;
mod proxy;
mod readers;
mod recipes;
mod services;
mod snapshots;
mod trust;
